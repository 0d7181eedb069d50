"""The holes an attacker found (issue 24), each closed and kept closed: every chat turn scoped and signed, the alert
rule an audited admin setting, uploaded commenters kept apart from students, unrouted alerts shown, sign-in that
resists guessing without locking anyone out, search and the audit log that keep to what may be read, bounded input,
and the smaller defects beside them. Store tests on real SQLite files, AppTest for what a page does; what a browser
must see is in test_browser_attacks.py."""
# ruff: noqa: F811 - `school` is test_access's fixture, imported here and taken as an argument

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import PASSWORD, everything_shown, frame, free_port, screened, signed_in
from sqlalchemy import func, select

from aio_core.csvfile import inspect_csv
from aio_core.errors import UserError
from db.access import scope_for
from db.models import Alert, AuditEvent, Job, Message, Person, User
from db.reports import Filters, rank_people
from db.rules import AlertRule
from db.session import make_db, reading, writing
from db.signin import HASHER
from db.store import NewMessage, add_messages
from db.users import add_user, set_disabled

ROOT = Path(__file__).resolve().parent.parent
SAME = "That user name and password do not match; check both and try again."


def messages_of(db, handle: str) -> list[Message]:
    with reading(db) as session:
        return list(session.scalars(select(Message).join(Person).where(Person.handle == handle)
                                    .order_by(Message.id)))


def audit_rows(db) -> list[tuple[str, str, str | None, str | None]]:
    with reading(db) as session:
        return [(e.actor, e.action, e.target, e.detail) for e in session.scalars(select(AuditEvent))]


# ---- 1. every chat turn is scoped, and says who wrote it ------------------------------------------------------------

def test_a_counsellor_cannot_chat_as_a_student_of_another_class(school):
    before = [m.text for m in messages_of(school, "ben")]
    at = signed_in("cara")  # counsellor of Class A; ben is in Class B
    at.switch_page("app_pages/chat.py").run()
    at.selectbox(key="person").set_value("\x00new").run()
    at.text_input(key="new_handle").set_value("ben").run()
    at.chat_input(key="chat_input").set_value("I want to kill myself").run()
    assert not at.exception
    assert [m.text for m in messages_of(school, "ben")] == before  # nothing stored under ben, no false alert
    shown = everything_shown(at)
    assert "ben secret" not in shown and at.error  # his history is never shown; the refusal is said
    with reading(school) as session:
        assert session.scalar(select(func.count(Alert.id)).join(Person).where(
            Person.handle == "ben", Alert.kind == "risk")) == 1  # only the one his own message raised


def test_every_chat_turn_records_who_wrote_it_and_reads_only_what_the_writer_may(school, engine):
    from aio_core.workflows.conversation import start_turn

    at = signed_in("cara")
    at.switch_page("app_pages/chat.py").run()
    at.selectbox(key="person").set_value("ann").run()
    at.chat_input(key="chat_input").set_value("how was your week?").run()
    assert not at.exception
    newest = messages_of(school, "ann")[-1]
    assert (newest.text, newest.author) == ("how was your week?", "cara")
    counsellor = scope_for("counsellor", frozenset({"Class A"}))
    for handle, group in (("ben", None), ("zed", "Class B"), ("zed", None)):  # another class's, or outside them
        with pytest.raises(UserError):
            start_turn("hello", person=handle, engine=engine, db=school, rule=AlertRule(), group=group,
                       scope=counsellor, author="cara")
    assert messages_of(school, "zed") == [] and len(messages_of(school, "ben")) == 6
    turn = start_turn("hello", person="newcomer", engine=engine, db=school, rule=AlertRule(), group="Class A",
                      scope=counsellor, author="cara")
    "".join(turn.reply)
    assert [m.author for m in messages_of(school, "newcomer")] == ["cara"]


# ---- 2. the alert rule is an admin's audited setting; re-checking never crosses a viewer's groups --------------------

def open_alerts(db) -> dict[str, int]:
    with reading(db) as session:
        return dict(session.execute(select(Person.handle, func.count(Alert.id)).join(Alert)
                                    .where(Alert.status.in_(("open", "acknowledged"))).group_by(Person.handle)).all())


def strict_rule(at) -> None:
    """A rule nobody's messages meet (N = K = 50, at least 100 messages in D days): applied, it withdraws every
    sentiment alert nobody has acted on yet."""
    for key, value in (("rule_n", 50), ("rule_k", 50), ("rule_min", 100)):
        at.number_input(key=key).set_value(value).run()


def test_a_teacher_cannot_change_the_rule_or_withdraw_other_classes_alerts(school):
    before = open_alerts(school)
    assert before["ben"] == 2  # a sentiment and a risk alert
    at = signed_in("lee")
    at.switch_page("app_pages/trends.py").run()
    strict_rule(at)
    offered = "apply_rule" in [b.key for b in at.button]
    if offered:  # as the attacker did
        at.button(key="apply_rule").click().run()
    assert not at.exception and open_alerts(school) == before
    assert not offered  # a teacher previews a rule on the chart only
    assert not [a for a in audit_rows(school) if a[1] == "setting.change"]


def test_an_admin_rule_change_is_audited_and_kept(school):
    from db.alerts import refresh_all_alerts

    at = signed_in("admin")
    at.switch_page("app_pages/trends.py").run()
    strict_rule(at)
    at.button(key="apply_rule").click().run()
    assert not at.exception
    assert ("admin", "setting.change", "alert_rule") in [a[:3] for a in audit_rows(school)]
    assert open_alerts(school) == {"ann": 1, "ben": 1}  # the sentiment alerts withdrawn; risk alerts stay
    later = signed_in("admin")  # the rule now in force is the one saved, for every session
    later.switch_page("app_pages/trends.py").run()
    assert (later.number_input(key="rule_n").value, later.number_input(key="rule_min").value) == (50, 100)
    with writing(school) as session:  # a re-check scoped to Class A leaves Class B alone
        refresh_all_alerts(session, AlertRule(), scope=scope_for("counsellor", frozenset({"Class A"})))
    assert open_alerts(school) == {"ann": 2, "ben": 1}


# ---- 3. uploaded comments live apart from students -------------------------------------------------------------------

def test_uploaded_comments_never_touch_a_students_record_or_report_on_students(school):
    ann_before = [(m.id, m.text) for m in messages_of(school, "ann")]
    alerts_before = open_alerts(school)
    at = signed_in("mod")
    content = "author,comment,posted\nann,so happy today,2099-01-01 10:00\nben,great day,2099-01-01 11:00\n"
    at.file_uploader(key="upload").upload("export.csv", content.encode(), "text/csv").run()
    at = screened(at, school)
    assert not at.exception
    summary = " ".join(s.value for s in at.success)
    assert "Screened 2 rows" in summary
    assert not re.search(r"\b[1-9]\d* (people|commenters) with an open alert", summary), summary
    assert [(m.id, m.text) for m in messages_of(school, "ann")] == ann_before  # nothing under the student
    assert open_alerts(school) == alerts_before
    with reading(school) as session:
        uploaded = session.scalars(select(Person).join(Message).where(Message.source == "csv")).unique().all()
        assert {p.kind for p in uploaded} == {"commenter"} and {p.handle for p in uploaded}.isdisjoint({"ann",
                                                                                                         "ben"})
    teacher = signed_in("lee")
    teacher.switch_page("app_pages/trends.py").run()
    assert "so happy today" not in everything_shown(teacher) and "2099" not in everything_shown(teacher)


def test_a_version_3_file_moves_uploaded_rows_out_of_students_records(tmp_path):
    """Files written before commenters existed hold uploaded rows under students' handles: the migration moves them
    (with the risk alerts they raised) to that handle's commenter, and a person known only from uploads becomes one."""
    from db.batches import create_batch

    path = tmp_path / "v3.db"
    db = make_db(f"sqlite:///{path}")
    with writing(db) as session:
        batch = create_batch(session, file_name="old.csv", sha256="1" * 64, options="{}", row_count=2, model="m",
                             prompt_version="v", header=["author", "comment"])
        said, uploaded, kid = add_messages(session, [
            NewMessage("i said this in chat", "chat", person="ann", group="Class A"),
            NewMessage("i want to kill myself (a row of an upload)", "csv", person="ann", risk="urgent",
                       risk_category="self-harm"),
            NewMessage("a row of an upload", "csv", person="kid")], rule=AlertRule())
        batch_id = batch.id
    db.dispose()
    with sqlite3.connect(path) as connection:  # as version 3 stored them
        connection.execute("UPDATE messages SET batch_id = ? WHERE id IN (?, ?)", (batch_id, uploaded, kid))
        for table, column in (("people", "kind"), ("messages", "author"), ("users", "oidc_issuer"),
                              ("users", "oidc_subject")):
            connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        connection.execute("DROP TABLE signin_throttle")
        connection.execute("DELETE FROM schema_version WHERE version > 3")
    db = make_db(f"sqlite:///{path}")
    with reading(db) as session:
        owner = dict(session.execute(select(Message.id, Person.handle).join(Person)).all())
        kinds = dict(session.execute(select(Person.handle, Person.kind)).all())
        alerted = session.scalars(select(Person.handle).join(Alert).where(Alert.kind == "risk")).all()
    db.dispose()
    assert owner == {said: "ann", uploaded: "comment:ann", kid: "comment:kid"}
    assert kinds == {"ann": "person", "comment:ann": "commenter", "comment:kid": "commenter"}
    assert alerted == ["comment:ann"]


# ---- 4. an alert outside every group still reaches someone -----------------------------------------------------------

def test_a_student_first_seen_in_an_upload_is_still_routed_to_their_teacher(school):
    at = signed_in("mod")
    at.file_uploader(key="upload").upload("c.csv", b"author,comment\nnewkid,hi\n", "text/csv").run()
    screened(at, school)
    with writing(school) as session:
        add_user(session, "newkid", PASSWORD, role="student", by="test", groups=("Class A",), person="newkid")
    student = signed_in("newkid")
    student.chat_input(key="chat_input").set_value("I want to kill myself").run()
    assert not student.exception
    teacher = signed_in("lee")
    assert "newkid" in frame(teacher, "risk", "handle")["handle"].tolist()


def test_an_alert_on_a_person_in_no_group_is_shown_to_admins_as_unrouted(school):
    with writing(school) as session:
        add_messages(session, [NewMessage("i want to kill myself", "cli", person="drifter", label="negative",
                                          confidence=0.9, p_negative=0.9, uncertain=False, risk="urgent",
                                          risk_category="self-harm")], rule=AlertRule())
    at = signed_in("admin")
    assert any("unrouted" in s.value.lower() for s in at.subheader)
    unrouted = frame(at, "handle", "group", "rule")
    assert set(unrouted["handle"]) == {"drifter", "ben"}  # and Class B, which no teacher or counsellor has here
    for name in ("lee", "cara"):  # nobody else sees them (they are not theirs to see)
        assert "drifter" not in everything_shown(signed_in(name))


# ---- 5 and 6. sign-in resists guessing, locks nobody out, and says the same for every early failure -----------------

def test_guessing_from_one_browser_never_locks_the_account_hard(school):
    at = signed_in("admin", "wrong guess 1")
    for n in range(2, 6):
        at.text_input(key="signin_password").set_value(f"wrong guess {n}")
        at.button[0].click().run()
    at.text_input(key="signin_password").set_value(PASSWORD)
    at.button[0].click().run()
    waiting = " ".join(e.value for e in at.error)
    seconds = int(re.search(r"(\d+) second", waiting).group(1))  # this browser waits, a few seconds at first
    assert seconds <= 2, waiting
    time.sleep(seconds + 0.2)
    at.button[0].click().run()
    assert any("Signed in as admin" in c.value for c in at.sidebar.caption), [e.value for e in at.error]


def test_sign_in_backs_off_per_client_and_per_name_and_never_renews_on_refused_tries(db):
    from aio_core.workflows.accounts import sign_in

    with writing(db) as session:
        for name in ("admin", "lee", "cara", "mo"):
            add_user(session, name, PASSWORD, role="teacher", by="test")
    now = datetime(2026, 6, 1, 12)
    tries = [sign_in(db, name, "guess", client="10.0.0.9", now=now) for name in ("admin", "lee", "cara", "mo") * 5]
    refused = [problem for token, problem in tries if problem != SAME]
    assert len(tries) - len(refused) == 5 and all("wait" in p for p in refused)  # one client: 5 tries, then waits
    for name in ("admin", "lee", "cara", "mo"):  # nobody else is locked out by that client's guesses
        token, problem = sign_in(db, name, PASSWORD, client="10.0.0.1", now=now)
        assert token and problem is None
    # The client's wait doubles with each guess it is allowed, and refused tries do not extend it.
    first = sign_in(db, "lee", "guess", client="10.0.0.9", now=now + timedelta(seconds=1))
    assert first[1] == SAME
    again = sign_in(db, "lee", "guess", client="10.0.0.9", now=now + timedelta(seconds=2))
    later = sign_in(db, "lee", "guess", client="10.0.0.9", now=now + timedelta(seconds=2.5))
    assert "wait 1 second" in again[1] and "wait 1 second" in later[1]
    assert sign_in(db, "lee", "guess", client="10.0.0.9", now=now + timedelta(seconds=3.01))[1] == SAME
    # Guesses at one name from many clients slow that name down, and its owner waits half a minute at most.
    base = now + timedelta(minutes=1)
    spread = [sign_in(db, "cara", "guess", client=f"10.1.0.{n}", now=base + timedelta(seconds=n)) for n in range(60)]
    assert 10 <= sum(problem == SAME for _, problem in spread) < 30
    token, problem = sign_in(db, "cara", PASSWORD, client="10.2.0.1", now=base + timedelta(seconds=60))
    wait = int(re.search(r"wait (\d+) second", problem).group(1))
    assert token is None and wait <= 30
    token, problem = sign_in(db, "cara", PASSWORD, client="10.2.0.1", now=base + timedelta(seconds=61 + wait))
    assert token and problem is None


def test_every_failure_before_the_password_is_checked_reads_the_same(school):
    with writing(school) as session:
        add_user(session, "old", PASSWORD, role="teacher", by="test", groups=("Class A",))
        set_disabled(session, "old", True, by="test")
        add_user(session, "sso", None, role="teacher", by="test", email="sso@school.example")
    for name, password in (("nobody", "whatever it is"), ("old", "not the password"), ("sso", "any password")):
        at = signed_in(name, password)
        assert [e.value for e in at.error] == [SAME], name
    at = signed_in("old")  # with the right password, the account may say it is disabled
    assert [e.value for e in at.error] == ["This account is disabled; ask an administrator to enable it."]


class Hasher:
    """argon2's own hasher with `verify` seen by the test (the hasher's attributes are read-only)."""

    def __init__(self, verify):
        self.verify = verify

    def __getattr__(self, name):
        return getattr(HASHER, name)


def test_an_unknown_name_costs_what_a_wrong_password_costs(db, monkeypatch):
    """Answering an unknown name without hashing would tell a guesser which names exist: every kind of failed
    sign-in must run argon2's verify exactly once, as a wrong password does (counted, not timed)."""
    import db.signin as signin
    from aio_core.workflows.accounts import sign_in

    with writing(db) as session:
        add_user(session, "real", PASSWORD, role="teacher", by="test")
    calls: list[str] = []

    def counted(stored: str, password: str) -> bool:
        calls.append(stored)
        return HASHER.verify(stored, password)

    monkeypatch.setattr(signin, "HASHER", Hasher(counted))
    for n, name in enumerate(("real", "not-a-user", "x" * 5000)):
        calls.clear()
        token, problem = sign_in(db, name, "wrong password", client=f"10.9.0.{n}")
        assert (token, problem) == (None, SAME)
        assert len(calls) == 1 and calls[0].startswith("$argon2id$"), name
    calls.clear()
    assert sign_in(db, "real", "y" * 100_000, client="10.9.1.1") == (None, SAME) and len(calls) == 1


def test_passwords_are_checked_outside_the_write_lock(db, monkeypatch):
    """While argon2 checks a password, another writer gets SQLite's write lock at once (a connection of its own,
    BEGIN IMMEDIATE with no waiting): guesses cannot hold the database up."""
    import sqlite3

    import db.signin as signin
    from aio_core.workflows.accounts import sign_in

    if db.dialect.name != "sqlite":
        pytest.skip("this checks SQLite's single write lock; a server database locks rows, not the file")
    with writing(db) as session:
        add_user(session, "real", PASSWORD, role="teacher", by="test")
    path = db.url.database
    others: list[str] = []

    def verify_while_another_writes(stored: str, password: str) -> bool:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # raises 'database is locked' if sign-in held the lock
            other.execute("ROLLBACK")
            others.append("wrote")
        finally:
            other.close()
        return HASHER.verify(stored, password)

    monkeypatch.setattr(signin, "HASHER", Hasher(verify_while_another_writes))
    assert sign_in(db, "real", "wrong password", client="10.3.0.1") == (None, SAME)
    assert sign_in(db, "real", PASSWORD, client="10.3.0.2")[0]
    assert others == ["wrote", "wrote"]


# ---- 7. a school sign-in needs a verified address and keeps to its first subject ------------------------------------

def test_a_school_sign_in_needs_a_verified_address_and_stays_with_its_first_subject(db):
    from db.users import sign_in_oidc

    with writing(db) as session:
        add_user(session, "lee", None, role="teacher", by="test", email="lee@school.example")
        assert sign_in_oidc(session, "lee@school.example", issuer="https://idp", subject="a1")[0] is None
        token, problem = sign_in_oidc(session, "lee@school.example", issuer="https://idp", subject="a1",
                                      verified=True)
        assert token and problem is None
        token, problem = sign_in_oidc(session, "lee@school.example", issuer="https://idp", subject="b2",
                                      verified=True)
        assert token is None and "another" in problem
        assert sign_in_oidc(session, "lee@school.example", issuer="https://other", subject="a1",
                            verified=True)[0] is None
        assert sign_in_oidc(session, "lee@school.example", issuer="https://idp", subject="a1", verified=True)[0]


# ---- 8. search reads only what the viewer may read ------------------------------------------------------------------

def test_search_matches_only_what_the_viewer_may_read(db):
    start = datetime(2026, 4, 1, 9)
    with writing(db) as session:
        add_messages(session, [NewMessage("my uncle hurts me", "chat", person="ann", group="Class A",
                                          created_at=start)], rule=AlertRule())
    phrase = Filters(search="uncle hurts")
    with reading(db) as session:
        teacher = scope_for("teacher", frozenset({"Class A"}))  # may not read texts
        counsellor = scope_for("counsellor", frozenset({"Class A"}))
        assert rank_people(session, scope=teacher, filters=phrase) == []
        assert [p.handle for p in rank_people(session, scope=counsellor, filters=phrase)] == ["ann"]
        assert [p.handle for p in rank_people(session, scope=teacher, filters=Filters(search="an"))] == ["ann"]


# ---- 10. sign-in off only on a loopback address ---------------------------------------------------------------------

def test_sign_in_off_refuses_to_start_on_a_network_address(tmp_path):
    env = {**os.environ, "AIO_AUTH": "off", "AIO_MODEL": "tiny-random", "AIO_DB_URL": f"sqlite:///{tmp_path}/a.db",
           "AIO_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port",
                              str(free_port()), "--server.address", "0.0.0.0", "--server.headless", "true"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = process.stdout + process.stderr
    assert process.returncode != 0 and "AIO_AUTH=off" in output and "loopback" in output, output[-2000:]


def test_erasing_a_person_removes_them_from_the_audit_log(tmp_path):
    from db.alerts import transition_alert
    from db.privacy import audit

    path = tmp_path / "aio.db"
    db = make_db(f"sqlite:///{path}")
    with writing(db) as session:
        add_messages(session, [NewMessage(f"zoe-77 day {i}", "chat", person="zoe-77", display_name="Zoe Quill",
                                          label="negative", confidence=0.9, p_negative=0.9, uncertain=False,
                                          created_at=datetime(2026, 4, 1) + timedelta(days=i)) for i in range(6)],
                     rule=AlertRule())
        alert_id = session.scalar(select(Alert.id))
        transition_alert(session, alert_id, "acknowledged", by="cara", note="rang Zoe Quill's mum about zoe-77")
        audit(session, "cara", "alert.acknowledged", str(alert_id), "rang Zoe Quill's mum about zoe-77")
        audit(session, "cara", "view.person", "zoe-77")
        audit(session, "lee", "export.person_report", "zoe-77", "6 messages")
    db.dispose()
    erased = subprocess.run([sys.executable, "-m", "aio_core", "--db", f"sqlite:///{path}", "erase-person",
                             "zoe-77"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert erased.returncode == 0, erased.stderr
    db = make_db(f"sqlite:///{path}")
    rows = audit_rows(db)
    db.dispose()
    assert {"alert.acknowledged", "view.person", "export.person_report", "erase.person"} <= {r[1] for r in rows}
    assert not [r for r in rows if any("zoe" in (v or "").lower() or "quill" in (v or "").lower() for v in r)], rows
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("aio.db"))
    assert b"zoe-77" not in raw and b"Quill" not in raw


def test_the_audit_log_keeps_no_typed_name_and_caps_its_lengths(school):
    signed_in("MyS3cret-Passw0rd!", "anything at all")
    signed_in("x" * 100_000, "anything at all")
    rows = audit_rows(school)
    assert not [r for r in rows if any("MyS3cret" in (v or "") for v in r)]
    assert max(len(v or "") for r in rows for v in r) <= 2000
    failed = [r for r in rows if r[1] == "signin.failed"]
    assert len(failed) == 2 and all(r[0] == "unknown user" for r in failed)


# ---- 13. CSV cells and columns are bounded, and checked in linear time ----------------------------------------------

def test_csv_cells_and_columns_are_bounded_with_one_sentence(tmp_path):
    fine = tmp_path / "fine.csv"
    fine.write_text("comment\n" + "x" * 100_000 + "\n")  # the longest message the product keeps is a normal cell
    assert inspect_csv(fine).rows == 1
    huge = tmp_path / "huge.csv"
    huge.write_text("comment\n" + "x" * 2_000_000 + "\n")
    with pytest.raises(UserError, match=r"huge\.csv, line 2: a cell is longer than 100,000 characters"):
        inspect_csv(huge)
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(5000)) + "\n" + ",".join("1" * 5000) + "\n")
    with pytest.raises(UserError, match=r"wide\.csv has 5,000 columns; at most 1,000"):
        inspect_csv(wide)
    long_line = tmp_path / "long-header.csv"
    long_line.write_text("c" * 3_000_000 + "\nx\n")
    with pytest.raises(UserError, match="longer than 100,000 characters"):
        inspect_csv(long_line)


# ---- low: retention, stale uploads, chat size, moderators' batches and quota, private files, secrets -----------------

def test_retention_leaves_no_copy_of_the_deleted_text_in_the_files(tmp_path, monkeypatch):
    path = tmp_path / "aio.db"
    url = f"sqlite:///{path}"
    for name, value in {"AIO_MODEL": "tiny-random", "AIO_DB_URL": url, "AIO_AUTH": "local",
                        "AIO_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    db = make_db(url)
    with writing(db) as session:
        add_messages(session, [NewMessage("ancient-secret-text", "chat", person="amy",
                                          created_at=datetime(2020, 1, 1)),
                               NewMessage("recent text", "chat", person="amy")], rule=AlertRule())
        add_user(session, "admin", PASSWORD, role="admin", by="test")
    at = signed_in("admin")
    at.switch_page("app_pages/admin.py").run()
    at.number_input(key="retention_days").set_value(365).run()
    at.button(key="save_settings").click().run()
    assert not at.exception
    assert [m.text for m in messages_of(db, "amy")] == ["recent text"]
    # Read while the server's connections are open, as on a running server (closing the last one checkpoints).
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("aio.db"))
    db.dispose()
    assert b"ancient-secret-text" not in raw and b"recent text" in raw


def test_stale_upload_copies_are_swept_on_start(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    for name, value in {"AIO_MODEL": "tiny-random", "AIO_DB_URL": f"sqlite:///{tmp_path / 'aio.db'}",
                        "AIO_AUTH": "off", "AIO_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    stale = Path(tempfile.gettempdir()) / f"aio-upload-{uuid.uuid4().hex}.csv"
    fresh = Path(tempfile.gettempdir()) / f"aio-upload-{uuid.uuid4().hex}.csv"
    kept_folder = tmp_path / "data" / "uploads"
    kept_folder.mkdir(parents=True)
    stale_kept = kept_folder / "aio-upload-left.csv"
    for file in (stale, fresh, stale_kept):
        file.write_bytes(b"comment\nleft behind by a killed preview\n")
    hours_ago = time.time() - 3 * 3600
    for file in (stale, stale_kept):
        os.utime(file, (hours_ago, hours_ago))
    try:
        at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
        assert not at.exception
        assert not stale.exists() and not stale_kept.exists() and fresh.exists()  # a fresh one may be in use
    finally:
        for file in (stale, fresh):
            file.unlink(missing_ok=True)


def test_a_chat_message_over_the_limit_is_refused_with_a_sentence(tmp_path, monkeypatch, engine, db):
    from streamlit.testing.v1 import AppTest

    from aio_core.workflows.conversation import start_turn

    with pytest.raises(UserError, match=r"at most 100,000 characters, and this one has 1,000,000"):
        start_turn("x" * 1_000_000, person="amy", engine=engine, db=db, rule=AlertRule())  # as a raw client sends
    assert messages_of(db, "amy") == []
    for name, value in {"AIO_MODEL": "tiny-random", "AIO_DB_URL": f"sqlite:///{tmp_path / 'page.db'}",
                        "AIO_AUTH": "off", "AIO_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    at.switch_page("app_pages/chat.py").run()
    assert at.chat_input(key="chat_input").proto.max_chars == 100_000  # and the browser stops typing there


def test_moderators_see_only_their_own_batches_and_jobs_have_a_quota(school, engine, tmp_path):
    from aio_core.workflows.jobs import submit
    from aio_core.workflows.screening import ScreenOptions
    from db.jobs import add_job

    with writing(school) as session:
        add_user(session, "mod2", PASSWORD, role="moderator", by="test")
    first = signed_in("mod")
    first.file_uploader(key="upload").upload("mod-one-file.csv", b"author,comment\nx,hi\n", "text/csv").run()
    screened(first, school)
    assert "mod-one-file.csv" in everything_shown(first) + " ".join(s.value for s in first.subheader)
    second = signed_in("mod2")
    assert "mod-one-file" not in everything_shown(second) + " ".join(s.value for s in second.subheader)
    source = tmp_path / "more.csv"
    source.write_text("author,comment\ny,hello\n")
    with writing(school) as session:  # three of theirs running (in a worker elsewhere, so none ends meanwhile)
        for n in range(3):
            job = add_job(session, batch_id=None, file_path=str(tmp_path / f"q{n}.csv"), file_name=f"q{n}.csv",
                          options="{}", rows=1, owner="mod2")
            job.status, job.worker = "running", "another-host:1"
    settings = engine.settings.replace(data_dir=str(tmp_path / "data"))
    with pytest.raises(UserError, match="3 screenings"):
        submit(source, ScreenOptions("comment", "author"), engine=engine, db=school, settings=settings,
               file_name="more.csv", owner="mod2")
    with reading(school) as session:
        assert session.scalar(select(func.count(Job.id)).where(Job.owner == "mod2")) == 3


def test_the_database_and_its_folder_are_private(tmp_path):
    path = tmp_path / "new" / "data" / "aio.db"
    db = make_db(f"sqlite:///{path}")
    with writing(db) as session:
        add_messages(session, [NewMessage("private", "chat", person="amy")], rule=AlertRule())
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for file in path.parent.iterdir():  # the file, its WAL and shared memory
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    db.dispose()


def test_streamlit_secrets_are_never_committed():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".streamlit/secrets.toml"], cwd=ROOT)
    assert ignored.returncode == 0


# ---- Admin: "Change an account" loads the chosen account and says what will change ---------------------------------

def test_changing_an_account_loads_that_account_and_says_what_will_change(school):
    at = signed_in("admin")
    at.switch_page("app_pages/admin.py").run()
    at.selectbox(key="change_user").set_value("lee").run()
    assert at.selectbox(key="change_role").value == "teacher"
    at.selectbox(key="change_user").set_value("cara").run()
    assert at.selectbox(key="change_role").value == "counsellor"
    assert at.multiselect(key="change_groups").value == ["Class A"]
    at.selectbox(key="change_user").set_value("lee").run()
    assert at.selectbox(key="change_role").value == "teacher"
    assert any("nothing to change" in c.value.lower() for c in at.caption)
    at.selectbox(key="change_role").set_value("counsellor").run()
    assert any("teacher → counsellor" in c.value for c in at.caption), [c.value for c in at.caption]
    at.button(key="save_user").click().run()
    assert not at.exception
    with reading(school) as session:
        roles = dict(session.execute(select(User.username, User.role)).all())
    assert (roles["lee"], roles["cara"], roles["admin"]) == ("counsellor", "counsellor", "admin")
