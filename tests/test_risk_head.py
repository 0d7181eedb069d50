"""The learned risk head and the counsellor's review loop, on the tiny model and real SQLite files: the head is read
from the sentiment pass (no second forward pass), stored with every assessment, never applied to other weights or
another prompt; a reviewer's "not a risk" / "a risk" opens and closes alerts at once and teaches the next fit; every
risk message is its own alert on the Overview; every evasion of the phrase floor reads as the plain phrase. The
texts are written for these tests, not taken from any evaluation or fitting file."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import unicodedata
from pathlib import Path

import pytest
from sqlalchemy import select

from aio_core.assessment import assess
from aio_core.engine import load_engine
from aio_core.errors import UserError
from aio_core.evasion import plain_forms
from aio_core.measure.risk_study import PREVIOUS_PHRASES
from aio_core.risk import assess_risk, load_phrases
from aio_core.risk_fit import read_risk_rows, shipped_files
from aio_core.risk_head import find_risk_head, head_path
from aio_core.workflows.conversation import start_turn
from aio_core.workflows.learning import fit_risk_head_from, reviewed_risk_rows
from db.alerts import list_alerts
from db.corrections import review_risk, undo_risk_review
from db.models import Message
from db.reports import overview_report
from db.session import reading, writing
from db.store import NewMessage, add_messages

RISKS = {  # category -> (urgent, concern) messages of our own
    "self-harm": ("i wrote a note for my mum and put it under my pillow, tonight is the last time",
                  "nothing feels worth getting up for anymore", "我把存的药都放在抽屉里了，今晚就用",
                  "每天都觉得很空，没意思"),
    "harm-to-others": ("i'm bringing the knife from the kitchen tomorrow for him", "i'm so angry at jay i could scream",
                       "明天我要让他们都付出代价，刀已经准备好了", "真想给他点颜色看看"),
    "abuse": ("my stepdad locks me in the cellar when mum is away", "they shout at me every single night",
              "他喝醉了就拿皮带抽我，身上都是伤", "我妈天天骂我是废物"),
    "bullying": ("they said they'll break my arm after school if i tell", "nobody in my class talks to me now",
                 "他们说放学后要在车棚堵我", "班里的人都不理我了"),
}
ORDINARY = ("we won the match on saturday", "the maths homework took ages", "can't wait for the holidays",
            "我今天吃了好吃的面", "周末去看电影了", "数学作业好多啊")
LOOKALIKE = ("this homework is killing me lol", "i died laughing at that video", "we're going to destroy them in "
             "the final", "笑死我了", "作业要了我的命", "这局游戏我被打爆了")


def risk_file(path: Path, source: str) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "risk", "risk_category", "kind", "source"])
        for category, texts in RISKS.items():
            for i, text in enumerate(texts):
                writer.writerow([f"{text} ({source})", "urgent" if i % 2 == 0 else "concern", category, "indirect",
                                 source])
        for text in ORDINARY:
            writer.writerow([f"{text} ({source})", "none", "", "ordinary", source])
        for text in LOOKALIKE:
            writer.writerow([f"{text} ({source})", "none", "", "lookalike", source])
    return path


@pytest.fixture
def fitting_engine(engine, tmp_path):
    """The loaded tiny model reading risk with a head, its heads and cache in this test's own folder."""
    return dataclasses.replace(engine, settings=engine.settings.replace(data_dir=str(tmp_path / "data"), risk="auto"))


@pytest.fixture
def fitted(fitting_engine, tmp_path):
    files = [risk_file(tmp_path / f"{s}.csv", s) for s in ("chat", "diary", "posts")]
    head, path = fit_risk_head_from(files, engine=fitting_engine)
    return fitting_engine.with_risk_head(head), head, path


@pytest.mark.parametrize("typed, missed_before", [
    ("i want to k1ll mys3lf", True),  # leetspeak
    ("i want to k i l l m y s e l f", True),  # spaced letters
    ("i want to kill\u200bmyself", True),  # a zero-width space inside
    ("i want to k\u0456ll mys\u0435lf", True),  # Cyrillic look-alike letters
    ("ｉ ｗａｎｔ ｔｏ ｋｉｌｌ ｍｙｓｅｌｆ", False),  # full-width forms (NFKC read them before too)
    ("i want to unalive myself", True),  # the platforms' word
    ("我真的不想 活了", True),  # a space inside a Chinese phrase
    ("我真的不\u200b想活了", True),  # a zero-width space inside a Chinese phrase
    ("我真的不 想 活 了", True),
])
def test_each_evasion_form_reads_as_the_plain_phrase(engine, typed, missed_before):
    (risk,) = assess_risk([typed], engine=engine)
    assert (risk.level, risk.category) == ("urgent", "self-harm"), typed
    assert risk.version == "phrases-3"
    # The control: phrases-2 as it was matched before (on the text as typed, NFKC only) let these through.
    before = load_phrases(str(PREVIOUS_PHRASES))
    caught_before = any(rule.pattern.search(unicodedata.normalize("NFKC", typed)) for rule in before.rules)
    assert caught_before is not missed_before


def test_the_plain_forms_keep_what_was_typed_and_leave_ordinary_text_alone():
    assert plain_forms("k1ll mys3lf")[0] == "k1ll mys3lf" and "kill myself" in plain_forms("k1ll mys3lf")
    assert plain_forms("I scored 100 in the 4x100m relay") == ("I scored 100 in the 4x100m relay",
                                                              "i scored 100 in the 4x100m relay")
    assert load_phrases().match("this exam is killing me, 笑死") is None


def test_a_fitted_risk_head_reads_the_sentiment_pass_and_is_stored_with_every_assessment(fitted, db, rule,
                                                                                         monkeypatch):
    engine, head, path = fitted
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["head_id"] == head.head_id and sidecar["rows"] == 3 * (16 + 12)
    assert set(head.concern_at) == {"en", "zh"} and all(head.urgent_at[k] >= -50 for k in head.urgent_at)
    calls = []
    real = engine.backend.score
    monkeypatch.setattr(engine.backend, "score", lambda *a, **k: calls.append(k["readouts"]) or real(*a, **k))
    texts = ["i gave my bike to my cousin, i won't need it", "the canteen pizza was good", "今天的作业好难"]
    found = assess(texts, engine=engine)
    assert len(calls) == 2  # one forward pass per language batch: sentiment and risk read the same pass
    assert all(head.readout in readouts for readouts in calls)
    assert all(a.risk.head_id == head.head_id and a.risk.version == "phrases-3" for a in found)
    turn = start_turn("i gave my bike to my cousin, i won't need it", person="ana", engine=engine, db=db, rule=rule)
    "".join(turn.reply or [])
    with reading(db) as session:
        stored = session.get(Message, turn.message_id)
        assert (stored.risk_head_id, stored.risk_version) == (head.head_id, "phrases-3")
        assert 0.0 <= stored.risk_score <= 1.0


def test_the_phrase_floor_decides_when_it_is_more_severe_than_the_head(fitted):
    engine, head, _ = fitted
    high = dataclasses.replace(head, concern_at={"en": 1e9, "zh": 1e9}, urgent_at={"en": 1e9, "zh": 1e9})
    (risk,) = assess_risk(["i want to kill myself"], engine=engine.with_risk_head(high))
    assert (risk.level, risk.category, risk.head_id) == ("urgent", "self-harm", high.head_id)
    (quiet,) = assess_risk(["the bus was late"], engine=engine.with_risk_head(high))
    assert quiet.level == "none" and 0.0 <= quiet.score <= 1.0
    low = dataclasses.replace(head, concern_at={"en": -1e9, "zh": -1e9}, urgent_at={"en": 1e9, "zh": 1e9})
    (raised,) = assess_risk(["the bus was late"], engine=engine.with_risk_head(low))
    assert raised.level == "concern" and raised.category in RISKS


def test_a_risk_head_is_never_applied_to_other_weights_or_another_prompt(fitted):
    engine, head, path = fitted
    folder = engine.settings.heads_dir
    assert find_risk_head(folder, head.fingerprint, head.prompt_version).head_id == head.head_id
    shutil.copy(path, head_path(folder, "0123456789abcdef", head.prompt_version))  # copied under another model
    assert find_risk_head(folder, "0123456789abcdef", head.prompt_version) is None
    assert find_risk_head(folder, head.fingerprint, "v1-plain") is None
    assert load_engine(engine.settings).risk_head.head_id == head.head_id
    assert load_engine(engine.settings.replace(prompt_version="v1-plain")).risk_head is None
    assert load_engine(engine.settings.replace(risk="phrases")).risk_head is None


def test_fitting_a_risk_head_needs_two_sources_and_every_category(fitting_engine, tmp_path):
    with pytest.raises(UserError, match="two sources"):
        fit_risk_head_from([risk_file(tmp_path / "one.csv", "one")], engine=fitting_engine)
    thin = tmp_path / "thin.csv"
    thin.write_text("text,risk,risk_category,kind,source\nnothing matters,concern,self-harm,indirect,a\n"
                    "nice day,none,,ordinary,b\n", encoding="utf-8")
    with pytest.raises(UserError, match="every category"):
        fit_risk_head_from([thin, risk_file(tmp_path / "two.csv", "two")], engine=fitting_engine)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,risk,risk_category\nhello,maybe,\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.csv has rows .*line 2"):
        read_risk_rows([bad])


def test_the_shipped_risk_set_reads_and_covers_both_languages_and_every_category():
    rows = read_risk_rows(shipped_files())
    sources = {r.source for r in rows}
    assert len(sources) >= 10 and {r.lang for r in rows} == {"en", "zh"}
    for lang in ("en", "zh"):
        assert {r.category for r in rows if r.lang == lang and r.risk != "none"} == set(RISKS)
        assert any(r.kind == "lookalike" for r in rows if r.lang == lang)


def _store(db, rule, *rows: NewMessage) -> list[int]:
    with writing(db) as session:
        return add_messages(session, list(rows), rule=rule)


def test_a_review_opens_and_closes_the_alert_at_once_and_undo_restores(db, rule):
    (quiet, loud) = _store(db, rule, NewMessage("i packed my things and said bye to the dog", "chat", person="kai",
                                                label="negative", risk="none"),
                           NewMessage("i want to die", "chat", person="kai", label="negative", risk="urgent",
                                      risk_category="self-harm"))
    with writing(db) as session:
        review_risk(session, quiet, "urgent", "self-harm", by="ms lee", note="she means it")
        review_risk(session, loud, "none", None, by="ms lee", note="song lyrics she was quoting")
    with reading(db) as session:
        alerts = {a.message_id: a for a in list_alerts(session)}
        assert (alerts[quiet].status, alerts[quiet].severity, alerts[quiet].category) == ("open", "urgent",
                                                                                         "self-harm")
        assert alerts[quiet].events[0].by == "ms lee" and "she means it" in alerts[quiet].events[0].note
        assert alerts[loud].status == "resolved" and alerts[loud].events[-1].by == "ms lee"
        assert [a.message.text for a in overview_report(session).urgent] == [
            "i packed my things and said bye to the dog"]
        message = session.get(Message, quiet)
        assert (message.risk, message.effective_risk) == ("none", "urgent")  # the assessment is kept beside it
    with writing(db) as session:
        (latest,) = [r for r in [review_risk(session, quiet, "concern", "abuse", by="mr ode")]]
    with reading(db) as session:
        alert = next(a for a in list_alerts(session) if a.message_id == quiet)
        assert (alert.severity, alert.category) == ("concern", "abuse")
    with writing(db) as session:
        undo_risk_review(session, latest.id, by="mr ode")
    with reading(db) as session:
        alert = next(a for a in list_alerts(session) if a.message_id == quiet)
        assert (alert.status, alert.severity, alert.category) == ("open", "urgent", "self-harm")
        assert session.get(Message, quiet).human_risk == "urgent"


def test_each_risk_message_is_its_own_alert_on_the_overview(db, rule):
    _store(db, rule, NewMessage("i'll get him tomorrow, the knife is in my bag", "chat", person="rio",
                                label="negative", risk="urgent", risk_category="harm-to-others"),
           NewMessage("my uncle comes in my room at night", "chat", person="rio", label="negative", risk="urgent",
                      risk_category="abuse"),
           NewMessage("no one talks to me", "chat", person="rio", label="negative", risk="concern",
                      risk_category="bullying"))
    with reading(db) as session:
        shown = overview_report(session).urgent
        assert [(a.severity, a.category) for a in shown] == [("urgent", "abuse"), ("urgent", "harm-to-others"),
                                                             ("concern", "bullying")]
        assert {a.message.text for a in shown} == {"i'll get him tomorrow, the knife is in my bag",
                                                   "my uncle comes in my room at night", "no one talks to me"}


def test_reviews_join_the_next_fit_as_their_own_source(fitting_engine, db, rule, tmp_path):
    (message_id,) = _store(db, rule, NewMessage("i'm giving my games away, won't be needing them", "chat",
                                                person="lu", label="negative", risk="none"))
    with writing(db) as session:
        review_risk(session, message_id, "urgent", "self-harm", by="counsellor")
    (taught,) = reviewed_risk_rows(db)
    assert (taught.text, taught.risk, taught.category, taught.source) == (
        "i'm giving my games away, won't be needing them", "urgent", "self-harm", "corrections")
    files = [risk_file(tmp_path / f"{s}.csv", s) for s in ("chat", "diary")]
    head, _ = fit_risk_head_from(files, engine=fitting_engine, db=db)
    plain, _ = fit_risk_head_from(files, engine=fitting_engine)
    assert head.meta["reviews"] == 1 and plain.meta["reviews"] == 0 and head.head_id != plain.head_id
    with pytest.raises(Exception, match="category"):
        with writing(db) as session:
            review_risk(session, message_id, "urgent", None, by="counsellor")
    with reading(db) as session:
        assert session.scalars(select(Message.human_risk)).all() == ["urgent"]
