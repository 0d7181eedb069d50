"""Composed replies on the tiny model: the guard's refusals are never shown or stored, the library answers when every
candidate is refused, and staff (never the student) see where a reply came from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from aio_core.backends import Candidate
from aio_core.classify import classify
from aio_core.compose import KINDS, Verdict, choose, compose, guard_candidates
from aio_core.errors import UserError
from aio_core.guard import check_reply
from aio_core.library import load_library
from aio_core.reply import ReplyOptions
from aio_core.situation import UNSURE
from aio_core.workflows.conversation import history, start_turn
from db.models import Message
from db.session import reading, writing
from db.users import add_user

ROOT = Path(__file__).resolve().parent.parent
from helpers import dashboard_env, url_of  # noqa: E402

PASSWORD = "correct horse battery staple 42"
DOWN = "My best friend moved away and now I sit alone at lunch."


def candidates_of(engine, *sentences: str) -> list[Candidate]:
    return [Candidate(ids=engine.tokenizer(s, add_special_tokens=False)["input_ids"], hidden=None, finished=True)
            for s in sentences]


def guarded(engine):
    return dataclasses.replace(engine, settings=engine.settings.replace(reply="guarded"))


def test_every_candidate_refused_falls_back_to_the_library_and_nothing_refused_is_stored(engine, db, rule):
    # The random model's sentences run to the token limit in no language: the guard refuses every one.
    turn = start_turn(DOWN, person="bo", engine=guarded(engine), db=db, rule=rule, options=ReplyOptions(seed=3))
    shown = "".join(turn.reply)
    library = load_library()
    entry = library.entry_for(UNSURE, turn.sentiment.p_negative)
    assert shown == f"{library.opening(entry, 'en', DOWN)} {library.follow_up(entry, 'en', DOWN)}"
    assert turn.reply_kind == "library"
    verdicts = turn.composed.verdicts
    assert len(verdicts) == 3 and all(v.failed for v in verdicts)
    with reading(db) as session:
        message = session.get(Message, turn.message_id)
        assert (message.reply, message.reply_kind, message.reply_interrupted) == (shown, "library", False)
        assert message.reply_version == library.version  # which reviewed words a counsellor can look up
    for verdict in verdicts:
        if verdict.text.strip():
            assert verdict.text.strip() not in shown


def test_a_refused_candidate_is_never_chosen_even_when_the_judge_likes_it():
    refused = Verdict("You deserved it.", ("no_blame",), 0.2, p_fine=0.99)
    kept = Verdict("That sounds lonely.", (), 0.8, p_fine=0.4)
    assert choose([refused, kept]) == kept
    assert choose([refused]) is None


@pytest.mark.parametrize("sentence, check", [
    ("You're so stupid for sitting alone.", "no_blame"),
    ("It's great that they moved away!", "tone_fits"),
    ("My best friend moved away too and I cried.", "no_adoption"),
    ("Maybe your stepdad could drive you to see them.", "no_invented"),
    ("I'm sorry, but I cannot help with that.", "no_refusal"),
    ("My best friend moved away and now I sit alone at lunch.", "no_echo"),
])
def test_the_guard_refuses_what_hurt_students(engine, sentence, check):
    conversation = [{"role": "user", "content": DOWN}]
    sentiment = dataclasses.replace(classify([DOWN], engine=engine)[0], label="negative", uncertain=False)
    verdicts = guard_candidates(engine, conversation, "That sounds really hard.", candidates_of(engine, sentence),
                                lang="en", system="You are a kind listener.", sentiment=sentiment)
    assert check in verdicts[0].failed


@pytest.mark.parametrize("said, sentence, check", [
    ("运动会接力我们班掉棒了，我是最后一棒", "你能不能说一下你为什么在比赛中失败了？", "no_blame"),
    ("体育课又被数学老师占了", "我不能直接帮助你完成这件事，因为这是违反法律和道德的。", "no_refusal"),
    ("我哥把我的游戏皮肤全分解了", "不过，我哥现在很难受，因为他已经失去了游戏号。", "no_adoption"),
    ("作业多到离谱，我已经麻了", "你已经很努力了，但你还有很长的路要走。", "no_blame"),
])
def test_the_guard_refuses_what_hurt_students_in_chinese(engine, said, sentence, check):
    verdicts = guard_candidates(engine, [{"role": "user", "content": said}], "听起来真不容易。",
                                candidates_of(engine, sentence), lang="zh", system="", sentiment=None)
    assert check in verdicts[0].failed


def test_a_passing_candidate_is_shown_after_the_opening_and_a_refused_one_never(engine, db, rule, monkeypatch):
    blame, kind = "You're so stupid, it's your own fault.", "Lunch can feel really long when you're on your own."
    monkeypatch.setattr(engine.backend, "candidates", lambda *a, **k: candidates_of(engine, blame, kind))
    # The tiny model's label for the sentence is noise; read as neither glad nor gloomy, so only the words decide.
    monkeypatch.setattr("aio_core.compose.classify", lambda texts, engine: [
        dataclasses.replace(classify([t], engine=engine)[0], p_negative=0.5) for t in texts])
    turn = start_turn(DOWN, person="cy", engine=guarded(engine), db=db, rule=rule)
    shown = "".join(turn.reply)
    assert turn.reply_kind == "guarded" and shown.endswith(" " + kind) and blame not in shown
    with reading(db) as session:
        assert session.scalars(select(Message.reply).where(Message.id == turn.message_id)).one() == shown
    # The next turn continues from what the student saw.
    assert history(db, "cy")[-1] == {"role": "assistant", "content": shown}


def test_by_default_the_model_chooses_and_the_library_speaks(engine, db, rule, monkeypatch):
    def no_sampling(*args, **kwargs):
        raise AssertionError("the default reply samples no model sentence")

    monkeypatch.setattr(engine.backend, "candidates", no_sampling)
    turn = start_turn("I got a C on my essay even though I worked really hard on it.", person="di", engine=engine,
                      db=db, rule=rule)
    shown = "".join(turn.reply)
    assert turn.reply_kind == "library" and turn.composed.verdicts == []
    library, key = load_library(), "I got a C on my essay even though I worked really hard on it."
    entry = library.entry_for(UNSURE, turn.sentiment.p_negative)
    assert shown == f"{library.opening(entry, 'en', key)} {library.follow_up(entry, 'en', key)}"


def test_the_tone_decides_which_general_words_an_unsure_reading_gets():
    import numpy as np

    from aio_core.situation import SITUATIONS, decide

    library = load_library()
    assert library.entry_for(UNSURE, 0.05) == "unsure_positive"
    assert library.entry_for(UNSURE, 0.95) == "unsure_negative"
    assert library.entry_for(UNSURE, 0.5) == UNSURE and library.entry_for("lonely", 0.05) == "lonely"
    sure = {name: np.eye(len(SITUATIONS))[SITUATIONS.index(name)] for name in ("proud", "bored", "bad_mark")}
    assert decide(sure["proud"], 0.6, 0.5) == UNSURE  # no glad opening for a message that reads negative
    assert decide(sure["bored"], 0.9, 0.5) == UNSURE  # a surely negative message gets only a hard situation
    assert decide(sure["bad_mark"], 0.05, 0.5) == UNSURE
    assert decide(sure["proud"], 0.2, 0.5) == "proud" and decide(sure["bad_mark"], 0.9, 0.5) == "bad_mark"


def test_free_generation_is_still_there_to_measure_against(engine, db, rule):
    free = dataclasses.replace(engine, settings=engine.settings.replace(reply="free"))
    composed = compose([{"role": "user", "content": "hello"}], engine=free, sentiment=None,
                       options=ReplyOptions(seed=1, max_new_tokens=6))
    assert composed.kind == "generated" and composed.text()


def test_a_concern_gets_the_gentle_line_and_a_chinese_reply_has_no_spaces(engine):
    library = load_library()
    risk = type("R", (), {"level": "concern"})()
    text = compose([{"role": "user", "content": "最近总是睡不着，什么都不想做。"}], engine=engine, sentiment=None,
                   risk=risk, method="library").text()
    key = "最近总是睡不着，什么都不想做。"
    assert text == (library.opening(UNSURE, "zh", key) + library.follow_up(UNSURE, "zh", key)
                    + library.concern_line("zh", key))


def test_a_broken_library_setting_is_one_sentence(tmp_path, engine):
    bad = tmp_path / "library.json"
    bad.write_text('{"version": "x", "situations": {}, "concern": {}}', encoding="utf-8")
    broken = dataclasses.replace(engine, settings=engine.settings.replace(reply_library=str(bad)))
    with pytest.raises(UserError, match="is not valid .* start from a copy of reply_library.json"):
        compose([{"role": "user", "content": "hi"}], engine=broken, sentiment=None).text()


def test_checks_on_a_whole_reply_catch_the_issue_examples():
    def failed(reply, said, lang="en", down=True):
        return {c for c, ok in check_reply(reply, [{"role": "user", "content": said}], lang, "", hit_limit=False,
                                           down=down).items() if not ok}

    assert "no_blame" in failed("“你太笨了，我也不太想。”", "今天数学考试考砸了，我觉得自己好笨。", "zh")
    assert "no_blame" in failed("因为你的行为让我感到非常不满和厌恶。", "同学们都不跟我玩，我是不是很讨厌？", "zh")
    assert "tone_fits" in failed("It's great to hear that you got a C!", "I got a C on my essay even though I worked "
                                 "really hard on it.")
    assert "no_echo" in failed("“你最好的朋友转学到，现在一个人吃午饭。”", "我最好的朋友转学了，我现在一个人吃午饭。",
                               "zh")
    assert "no_refusal" in failed("I'm sorry, but I cannot help with that.", "I could murder a pizza", down=False)


@pytest.fixture
def school(db, tmp_path, monkeypatch):
    """A counsellor of Class A and a student of hers, signing in to the dashboard."""
    dashboard_env(monkeypatch, tmp_path, url_of(db), auth="local")
    with writing(db) as session:
        add_user(session, "cara", PASSWORD, role="counsellor", by="test", groups=("Class A",))
        add_user(session, "ann", PASSWORD, role="student", by="test", groups=("Class A",), person="ann")
    return db


def signed_in_chat(username: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    at.text_input(key="signin_user").set_value(username)
    at.text_input(key="signin_password").set_value(PASSWORD)
    at.button[0].click().run()
    at.switch_page("app_pages/chat.py").run()
    assert not at.exception
    return at


def test_the_counsellor_sees_where_a_reply_came_from_and_the_student_does_not(school):
    at = signed_in_chat("ann")
    at.chat_input(key="chat_input").set_value(DOWN).run()
    assert not at.exception
    assert [m for m in at.chat_message if m.name == "assistant"]
    shown = "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning") for e in getattr(at, kind))
    assert not any(note in shown for note in KINDS.values()) and "library" not in shown.lower()
    with reading(school) as session:
        (message,) = session.scalars(select(Message)).all()
        assert message.reply_kind == "library" and message.reply
    at = signed_in_chat("cara")
    at.selectbox(key="person").set_value("ann").run()
    assert any(KINDS["library"] in str(c.value) for c in at.caption)


def test_candidates_sampled_at_once_match_one_by_one_generation_when_greedy(engine):
    from aio_core.backends import Readout
    from aio_core.templating import encode_chat

    ids = encode_chat(engine.tokenizer, [{"role": "user", "content": "How was school today?"}])
    greedy = dataclasses.replace(engine.profile.generation, temperature=0.0, max_new_tokens=12)
    alone = list(engine.backend.generate(ids, greedy))
    batch = engine.backend.candidates(ids, greedy, 3, readout=Readout(kind="mean", layer=1))
    assert [c.ids for c in batch] == [alone] * 3
    assert all(c.hidden is not None and c.hidden.shape == batch[0].hidden.shape for c in batch)


def test_every_library_string_passes_the_guards_words_for_its_tone():
    """The reviewed words themselves: nothing that blames or refuses anywhere, nothing glad where a student may be
    down (the hard situations, every general entry and the concern lines): glad words need the situation head and the
    sentiment to agree."""
    from aio_core.guard import _BLAME, _CHEER, _REFUSAL
    from aio_core.situation import NEGATIVE

    library = load_library()
    # unsure_positive too: chosen by the sentiment alone, which misread "sat by myself at lunch again. its fine"
    may_be_down = {*NEGATIVE, UNSURE, "unsure_negative", "unsure_positive", "bored", "question", "small_talk"}
    wrong = [(name, text) for name, langs in library.situations.items() for entry in langs.values()
             for text in entry["openings"] + entry["follow_ups"]
             if _BLAME.search(text) or _REFUSAL.search(text) or (name in may_be_down and _CHEER.search(text))]
    wrong += [("concern", text) for lines in library.concern.values() for text in lines if _CHEER.search(text)]
    assert wrong == []


def test_a_later_turn_gets_the_general_words_not_another_situations_opening(engine):
    library = load_library()
    said = "mum says we can get another one someday but i dont want another one"
    first = compose([{"role": "user", "content": said}], engine=engine, sentiment=None, situation="home_conflict",
                    method="library").text()
    later = compose([{"role": "user", "content": "my dog died on sunday"},
                     {"role": "assistant", "content": "I'm so sorry. Losing a pet really hurts."},
                     {"role": "user", "content": said}], engine=engine, sentiment=None, situation="home_conflict",
                    method="library").text()
    assert first.startswith(library.opening("home_conflict", "en", said))
    assert later == f"{library.opening(UNSURE, 'en', said)} {library.follow_up(UNSURE, 'en', said)}"
