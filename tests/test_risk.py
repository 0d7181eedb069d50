"""Risk as its own signal: assessed with every message, stored with its version, an urgent alert opened at once
(no rule window), the reviewed safe message instead of generation, shown first on the Overview. Texts here are
written for these tests, not taken from any evaluation file."""

from __future__ import annotations

import dataclasses
import json

import pytest
from sqlalchemy import select

from aio_core.library import load_library
from aio_core.measure.evaluate import evaluate
from aio_core.reply import safe_reply
from aio_core.risk import RiskPhrasesError, assess_risk, load_phrases
from aio_core.workflows.conversation import history, start_turn
from db.alerts import list_alerts
from db.models import Message
from db.reports import overview_report, rank_people
from db.session import reading, writing
from db.store import NewMessage, add_messages


@pytest.mark.parametrize("text, level, category", [
    ("honestly i want to kill myself tonight", "urgent", "self-harm"),
    ("我真的不想活了", "urgent", "self-harm"),
    ("this physics homework is killing me lol", "none", None),
    ("笑死我了，这个视频太搞笑", "none", None),
    ("I could murder a burger right now", "none", None),
])
def test_the_phrase_list_decides_the_unambiguous_and_leaves_idioms_alone(engine, text, level, category):
    (risk,) = assess_risk([text], engine=engine)
    assert (risk.level, risk.category) == (level, category)
    assert risk.version == load_phrases().version == "phrases-3"  # AIO_RISK=phrases in the tests' settings


def test_without_a_risk_head_the_floor_reads_alone_and_off_assesses_nothing(engine, with_model_risk):
    texts = ["the bus was late again", "I hurt myself on purpose again last night"]
    found = assess_risk(texts, engine=with_model_risk)  # AIO_RISK=auto, but no head is fitted for the tiny model
    assert [(r.level, r.head_id) for r in found] == [("none", None), ("urgent", None)]
    assert "no risk head fitted" in with_model_risk.risk_reader or "phrase list only" in with_model_risk.risk_reader
    off = dataclasses.replace(engine, settings=engine.settings.replace(risk="off"))
    assert assess_risk(texts, engine=off) == [None, None]


def test_an_urgent_chat_message_gets_the_safe_message_and_an_urgent_alert_at_once(engine, db, rule):
    turn = start_turn("i want to kill myself", person="amy", engine=engine, db=db, rule=rule)
    shown = "".join(turn.reply)
    assert turn.reply_kind == "safe" and "trust" in shown and "kill" not in shown
    with reading(db) as session:
        message = session.get(Message, turn.message_id)
        assert (message.risk, message.risk_category, message.reply_kind) == ("urgent", "self-harm", "safe")
        assert message.reply == shown and message.risk_version
        assert message.reply_version == safe_reply("urgent", "en", engine.settings)[1]  # which reviewed words
        (alert,) = list_alerts(session)  # one message: no sentiment window could have fired
        assert (alert.kind, alert.severity, alert.status, alert.message_id) == ("risk", "urgent", "open", message.id)
        report = overview_report(session)
        assert report.totals.urgent_alerts == 1 and report.urgent[0].message.text == "i want to kill myself"
    # The safe message is not fed back to the model as its own words.
    assert history(db, "amy") == [{"role": "user", "content": "i want to kill myself"}]


def test_the_safe_message_speaks_the_users_language_and_the_configured_helpline(engine, db, rule):
    configured = dataclasses.replace(engine, settings=engine.settings.replace(helpline="Call 0800 TEST."))
    turn = start_turn("我不想活了", person="bo", engine=configured, db=db, rule=rule)
    shown = "".join(turn.reply)
    assert "信任" in shown and "Call 0800 TEST." in shown


def test_urgent_people_come_first_and_risk_is_not_negativity(db, rule):
    rows = [NewMessage(f"gloomy {i}", "chat", person="neg", label="negative", confidence=0.99, p_negative=0.99,
                       uncertain=False, risk="none") for i in range(3)]
    rows.append(NewMessage("calm words, bad plan", "chat", person="risk", label="positive", confidence=0.8,
                           p_negative=0.2, uncertain=False, risk="urgent", risk_category="self-harm"))
    with writing(db) as session:
        add_messages(session, rows, rule=rule)
    with reading(db) as session:
        ranked = rank_people(session)
        assert [p.handle for p in ranked][0] == "risk" and ranked[0].urgent
        assert [m.risk for m in session.scalars(select(Message).where(Message.text.like("gloomy%")))] == ["none"] * 3


def test_a_broken_phrase_list_is_one_sentence(tmp_path):
    broken = tmp_path / "phrases.json"
    broken.write_text(json.dumps({"version": "x", "rules": [{"category": "self-harm", "level": "urgent",
                                                              "patterns": ["(unclosed"]}]}))
    with pytest.raises(RiskPhrasesError, match="not valid.*copy of risk_phrases.json"):
        load_phrases(str(broken))
    with pytest.raises(RiskPhrasesError, match="cannot be read"):
        load_phrases(str(tmp_path / "missing.json"))


def test_eval_reports_risk_recall_and_false_alarms(tmp_path, engine):
    data = tmp_path / "risk.csv"
    data.write_text("text,label,risk\n"
                    "i want to kill myself,negative,urgent\n"
                    "i gave away my things because i won't need them soon,negative,urgent\n"
                    "this exam is killing me,negative,none\n"
                    "lovely walk in the park,positive,none\n", encoding="utf-8")
    risk = evaluate(data, engine=engine)["risk"]
    assert (risk["n"], risk["risk"], risk["urgent"]) == (4, 2, 2)
    # The phrase list catches the first; the second has no listed phrase, so it is the one miss shown.
    assert (risk["urgent_recall"], risk["risk_recall"], risk["precision"], risk["false_alarm"]) == (0.5, 0.5, 1.0, 0.0)
    assert [m["text"][:8] for m in risk["mistakes"]] == ["i gave a"]


def test_a_concern_message_opens_a_review_alert_and_keeps_a_normal_reply(engine, db, rule):
    turn = start_turn("honestly everything feels hopeless lately", person="cam", engine=engine, db=db, rule=rule)
    shown = "".join(turn.reply)
    # Not the crisis message: the ordinary reply, with the library's gentle line pointing to a trusted adult.
    assert turn.risk.level == "concern" and turn.reply_kind == "library"
    assert any(shown.endswith(line) for line in load_library().concern["en"])
    with reading(db) as session:
        message = session.get(Message, turn.message_id)
        assert (message.reply, message.reply_kind) == (shown, "library")
        (alert,) = list_alerts(session)
        assert (alert.kind, alert.severity, alert.status, alert.message_id) == ("risk", "concern", "open", message.id)
