"""The store on real SQLite files: concurrency, alerts and their history, privacy requests, schema versioning and
the clear errors for a damaged, read-only or foreign database."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from aio_core.workflows.exports import PERSON_COLUMNS, person_rows
from db.access import Scope
from db.alerts import list_alerts, transition_alert
from db.corrections import review_risk
from db.errors import StoreError
from db.models import Message, Notification
from db.privacy import erase_person, export_person
from db.reports import Filters, daily_counts, overview, person_report, rank_people
from db.rules import AlertRule
from db.session import SCHEMA_VERSION, compact, make_db, reading, writing
from db.store import NewMessage, add_messages, list_messages

T0 = datetime(2026, 3, 2, 9)


def store(db, rule, person: str, labels: str, start: datetime = T0) -> None:
    rows = [NewMessage(f"{person} {i}", "cli", person=person, label="negative" if c == "-" else "positive",
                       confidence=0.9, p_negative=0.9 if c == "-" else 0.1, uncertain=False,
                       created_at=start + timedelta(days=i)) for i, c in enumerate(labels)]
    for row in rows:  # one transaction per message, as live chat stores them
        with writing(db) as session:
            add_messages(session, [row], rule=rule)


def test_sqlite_is_set_up_for_concurrent_sessions(db):
    if db.dialect.name != "sqlite":
        pytest.skip("checks SQLite's own settings; this run uses AIO_TEST_DB_URL")
    with db.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_eight_threads_writing_fifty_messages_each_lose_nothing(db, rule):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                with writing(db) as session:
                    add_messages(session, [NewMessage(f"t{n} m{i}", "chat", person=f"p{n % 3}", label="negative",
                                                      confidence=0.9, p_negative=0.9, uncertain=False)], rule=rule)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:1]
    with reading(db) as session:
        assert session.scalar(select(func.count(Message.id))) == 400
        texts = set(session.scalars(select(Message.text)))
        assert texts == {f"t{n} m{i}" for n in range(8) for i in range(50)}
        # Every person's run of negatives is one episode: one alert each, never duplicates.
        alerts = list_alerts(session)
        assert sorted(a.person.handle for a in alerts) == ["p0", "p1", "p2"]


def test_alert_opens_once_per_episode_and_reopens_only_on_new_evidence(db, rule):
    store(db, rule, "amy", "++++-----")
    with reading(db) as session:
        (alert,) = list_alerts(session)
        assert alert.status == "open" and alert.negatives >= 4
    store(db, rule, "amy", "--", start=T0 + timedelta(days=9))  # still the same episode: updated, not duplicated
    with writing(db) as session:
        (alert,) = list_alerts(session)
        transition_alert(session, alert.id, "acknowledged", by="Ms Li", note="spoke with her")
    with writing(db) as session:
        transition_alert(session, alert.id, "resolved", by="Ms Li", note="doing better")
    store(db, rule, "amy", "+", start=T0 + timedelta(days=12))  # old negatives alone do not reopen
    with reading(db) as session:
        assert [a.status for a in list_alerts(session)] == ["resolved"]
    store(db, rule, "amy", "-----", start=T0 + timedelta(days=13))  # a new run: a new alert
    with reading(db) as session:
        alerts = list_alerts(session)
        assert sorted(a.status for a in alerts) == ["open", "resolved"]
        resolved = next(a for a in alerts if a.status == "resolved")
        assert [(e.from_status, e.to_status, e.by, e.note) for e in resolved.events] == [
            (None, "open", "rule", resolved.events[0].note),
            ("open", "acknowledged", "Ms Li", "spoke with her"),
            ("acknowledged", "resolved", "Ms Li", "doing better"),
        ]


def test_a_flapping_alert_stays_one_alert_within_the_hour_and_a_later_run_is_a_new_one(db, rule):
    """Open -> withdrawn -> open within REOPEN_WITHIN is one alert; evidence that comes back later is a new episode,
    not an old alert brought back with its old window (the control case, which must differ)."""
    from db.alerts import REOPEN_WITHIN
    from db.corrections import correct_label, undo_correction
    from db.models import Alert

    store(db, rule, "amy", "-----")
    with reading(db) as session:
        ids = list(session.scalars(select(Message.id).order_by(Message.id)))
    with writing(db) as session:
        fixes = [correct_label(session, i, "positive", by="Ms Lee", rule=rule).id for i in ids[:3]]
    with writing(db) as session:  # back within the hour: the same alert, reopened
        undo_correction(session, fixes[0], by="Ms Lee", rule=rule)
    with reading(db) as session:
        (alert,) = list_alerts(session)
        assert alert.status == "open"
        assert [e.to_status for e in alert.events] == ["open", "resolved", "open"]
    with writing(db) as session:
        fixes.append(correct_label(session, ids[0], "positive", by="Ms Lee", rule=rule).id)
    with writing(db) as session:  # withdrawn longer ago than the window
        withdrawn = session.get(Alert, alert.id)
        assert (withdrawn.status, withdrawn.updated_by) == ("resolved", "rule")
        withdrawn.updated_at -= REOPEN_WITHIN + timedelta(minutes=1)
    with writing(db) as session:
        undo_correction(session, fixes[-1], by="Ms Lee", rule=rule)
    with reading(db) as session:
        alerts = list_alerts(session)
        assert sorted(a.status for a in alerts) == ["open", "resolved"]
        assert next(a for a in alerts if a.status == "open").id != alert.id


def test_transition_needs_a_name_and_a_known_status(db, rule):
    store(db, rule, "bo", "-----")
    with writing(db) as session:
        (alert,) = list_alerts(session)
        with pytest.raises(StoreError, match="who"):
            transition_alert(session, alert.id, "resolved", by="  ")
        with pytest.raises(StoreError, match="Unknown alert status"):
            transition_alert(session, alert.id, "closed", by="x")
        with pytest.raises(StoreError, match="no alert number"):
            transition_alert(session, 999, "resolved", by="x")


def test_queries_for_trends_and_overview(db, rule):
    store(db, rule, "amy", "+--+")
    store(db, rule, "bo", "-----")
    store(db, rule, "cy", "++++")
    with reading(db) as session:
        ranked = rank_people(session, days=30)
        assert [p.handle for p in ranked] == ["bo", "amy", "cy"]  # open alert first, then negative share
        assert ranked[1].negative_share == pytest.approx(0.5)
        summary = overview(session)
        assert (summary.messages, summary.people, summary.open_alerts) == (13, 3, 1)
        assert summary.negative_share == pytest.approx(7 / 13)
        amy = ranked[1].person_id
        assert [m.text for m in list_messages(session, amy, since=T0 + timedelta(days=1),
                                              until=T0 + timedelta(days=2))] == ["amy 1", "amy 2"]
        assert daily_counts(session, person_id=amy)[0] == ("2026-03-02", "positive", 1)


def test_export_and_erase_one_person_leaves_the_others(tmp_path, rule):
    path = tmp_path / "aio.db"
    db = make_db(f"sqlite:///{path}")
    store(db, rule, "amy", "-----")
    store(db, rule, "bo", "++")
    with reading(db) as session:
        exported = export_person(session, "amy")
    assert len(exported["messages"]) == 5 and exported["alerts"][0]["events"][0]["to"] == "open"
    with writing(db) as session:
        assert erase_person(session, "amy") == {"messages": 5, "alerts": 1, "alert_events": 1, "people": 1,
                                                 "corrections": 0, "label_versions": 0, "risk_reviews": 0}
    compact(db)
    with reading(db) as session:
        assert export_person(session, "amy") is None
        assert overview(session).messages == 2
    db.dispose()
    # secure_delete and the WAL checkpoint: the erased text is not left anywhere in the files.
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("aio.db"))
    assert b"amy 3" not in raw and b"bo 1" in raw


def test_schema_version_is_recorded_and_a_newer_file_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'v.db'}"
    make_db(url).dispose()
    with sqlite3.connect(tmp_path / "v.db") as connection:
        assert connection.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        connection.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, '2030-01-01')")
    with pytest.raises(StoreError, match="newer version"):
        make_db(url)


def test_foreign_database_is_refused(tmp_path):
    with sqlite3.connect(tmp_path / "other.db") as connection:
        connection.execute("CREATE TABLE accounts (id INTEGER)")
    with pytest.raises(StoreError, match="not made by this program"):
        make_db(f"sqlite:///{tmp_path / 'other.db'}")


def test_corrupt_database_file_is_named_in_the_error(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(StoreError) as error:
        make_db(f"sqlite:///{path}")
    assert str(path) in str(error.value) and "damaged" in str(error.value)


def test_read_only_database_gives_a_clear_error_and_stores_nothing(tmp_path, rule):
    path = tmp_path / "ro.db"
    db = make_db(f"sqlite:///{path}")
    with writing(db) as session:
        add_messages(session, [NewMessage("kept", "cli")], rule=rule)
    db.dispose()
    # Tests run as root, which ignores file permissions; SQLite's read-only open mode is the same failure.
    readonly = make_db(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(StoreError, match="read-only"):
        with writing(readonly) as session:
            add_messages(session, [NewMessage("lost?", "cli")], rule=rule)
    with reading(readonly) as session:
        assert session.scalars(select(Message.text)).all() == ["kept"]


def test_the_sql_rule_agrees_with_the_pure_rule_on_every_history(db, rule):
    """The store evaluates the rule with SQL aggregates; on histories of every length and rhythm (ties in time
    included) it must find exactly what `rules.evaluate` finds on the whole series."""
    import random

    from db.alerts import _findings
    from db.rules import evaluate

    rng = random.Random(3)
    rows = []
    for person in range(40):
        at = T0
        for i in range(rng.randrange(1, 120)):
            at += timedelta(hours=rng.choice((0, 1, 5, 30, 80, 200)))
            rows.append(NewMessage(f"p{person} m{i}", "csv", person=f"p{person}", created_at=at,
                                   label=rng.choice(("positive", "negative", "negative"))))
    with writing(db) as session:
        add_messages(session, rows, rule=rule)
        people = sorted(set(session.scalars(select(Message.person_id))))
        found = _findings(session, dict.fromkeys(people, 0), rule)
        verdicts = []
        for person_id in people:
            series = session.execute(select(Message.created_at, Message.label).where(Message.person_id == person_id)
                                     .order_by(Message.created_at, Message.id)).all()
            expected = evaluate([tuple(r) for r in series], rule)
            assert found.get(person_id) == expected, person_id
            verdicts.append(expected)
    assert any(verdicts) and not all(verdicts)  # both outcomes were exercised


def test_a_version_2_file_gets_the_job_progress_columns_and_keeps_its_jobs(tmp_path):
    url = f"sqlite:///{tmp_path / 'v2.db'}"
    make_db(url).dispose()
    with sqlite3.connect(tmp_path / "v2.db") as connection:  # as version 2 made it
        connection.execute("ALTER TABLE jobs DROP COLUMN rows_done")
        connection.execute("ALTER TABLE jobs DROP COLUMN rows_at_start")
        connection.execute("UPDATE schema_version SET version = 2")
        connection.execute("INSERT INTO jobs (status, file_name, options, rows, created_at, updated_at) "
                           "VALUES ('complete', 'old.csv', '{}', 7, '2026-01-01', '2026-01-01')")
    make_db(url).dispose()
    with sqlite3.connect(tmp_path / "v2.db") as connection:
        assert connection.execute("SELECT file_name, rows, rows_done, rows_at_start FROM jobs").fetchall() == [
            ("old.csv", 7, 0, 0)]
        assert connection.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 8


def _as_version_4(connection: sqlite3.Connection) -> None:
    """Undo what version 5 added: risk reviews and the risk head's id."""
    for column in ("risk_head_id", "human_risk", "human_risk_category"):
        connection.execute(f"ALTER TABLE messages DROP COLUMN {column}")
    connection.execute("DROP TABLE risk_corrections")
    connection.execute("DELETE FROM schema_version WHERE version > 4")


def test_a_version_4_file_gets_risk_reviews_and_keeps_its_risk_alerts(tmp_path):
    url = f"sqlite:///{tmp_path / 'v4.db'}"
    database = make_db(url)
    with writing(database) as session:
        add_messages(session, [NewMessage("i want to die", "chat", person="amy", label="negative", risk="urgent",
                                          risk_category="self-harm", risk_version="phrases-2")], rule=AlertRule())
    database.dispose()
    with sqlite3.connect(tmp_path / "v4.db") as connection:
        _as_version_4(connection)
    database = make_db(url)
    with writing(database) as session:
        (message,) = session.scalars(select(Message)).all()
        assert (message.effective_risk, message.risk_head_id, message.human_risk) == ("urgent", None, None)
        review_risk(session, message.id, "none", None, by="counsellor")
    with reading(database) as session:
        assert [a.status for a in list_alerts(session)] == ["resolved"]
    database.dispose()


def test_a_version_5_file_gets_the_outbox_and_queues_the_next_alerts_notifications(tmp_path):
    url = f"sqlite:///{tmp_path / 'v5.db'}"
    database = make_db(url)
    with writing(database) as session:
        add_messages(session, [NewMessage("i want to die", "chat", person="amy", group="Class A", label="negative",
                                          risk="urgent", risk_category="self-harm")], rule=AlertRule())
    database.dispose()
    with sqlite3.connect(tmp_path / "v5.db") as connection:  # as version 5 made it
        connection.execute("DROP TABLE notifications")
        connection.execute("DROP TABLE escalation_contacts")
        connection.execute("DROP TABLE batch_reuses")  # version 7's
        connection.execute("ALTER TABLE messages DROP COLUMN reply_version")  # version 8's
        connection.execute("DELETE FROM schema_version WHERE version > 5")
    make_db(url).dispose()  # twice: a step that runs on a file it has already brought up is harmless
    database = make_db(url)
    with writing(database) as session:
        add_messages(session, [NewMessage("i have a plan to end it", "chat", person="bo", group="Class A",
                                          label="negative", risk="urgent", risk_category="self-harm")],
                     rule=AlertRule())
    with reading(database) as session:
        assert [a.status for a in list_alerts(session)] == ["open", "open"]  # the old alert is kept
        queued = set(session.scalars(select(Notification.alert_id)))
        assert queued == {2}  # only the new one: the old alert was never notified, so it does not escalate now
    database.dispose()
    with sqlite3.connect(tmp_path / "v5.db") as connection:
        assert connection.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 8
        assert connection.execute("SELECT count(*) FROM batch_reuses").fetchone()[0] == 0  # version 7 made it
        assert connection.execute("SELECT count(reply_version) FROM messages").fetchone()[0] == 0  # and 8 this


def test_a_persons_report_holds_exactly_the_messages_the_filters_show(db):
    start = datetime(2026, 4, 1, 9)
    with writing(db) as session:
        add_messages(session, [NewMessage(f"note {i}", "chat" if i % 2 else "cli", person="amy", label="negative",
                                          confidence=0.9, p_negative=0.9, uncertain=False,
                                          created_at=start + timedelta(days=i)) for i in range(6)],
                     rule=AlertRule())
    shown = Filters(sources=("chat",), since=start + timedelta(days=2))
    with reading(db) as session:
        header, rows = PERSON_COLUMNS, person_rows(person_report(session, "amy", AlertRule(), filters=shown))
        hidden = person_rows(person_report(session, "amy", AlertRule(), scope=Scope(texts=False)))
    texts = [row[header.index("text")] for row in rows]
    assert texts == ["note 3", "note 5"]  # chat only, from the third day, oldest first
    assert [row[header.index("time")] for row in rows] == ["2026-04-04 09:00:00", "2026-04-06 09:00:00"]
    assert len(hidden) == 6 and {row[header.index("text")] for row in hidden} == {""}  # a teacher's export: no texts
