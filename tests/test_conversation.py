"""A chat turn end to end: labelled, stored, replied, reply stored; without a model the message is still stored
and labelled once a model is back."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from aio_core.reply import ReplyOptions
from aio_core.workflows.conversation import history, label_pending, start_turn
from aio_core.workflows.demo import DEMO_GROUP, DEMO_MODEL, fill_demo
from db.alerts import list_alerts
from db.models import Message, Person
from db.reports import overview
from db.session import reading


def test_turn_is_labelled_stored_and_its_reply_stored(engine, db, rule):
    turn = start_turn("今天很开心", person="amy", engine=engine, db=db, rule=rule,
                      options=ReplyOptions(seed=1, max_new_tokens=10))
    text = "".join(turn.reply)
    with reading(db) as session:
        message = session.get(Message, turn.message_id)
        assert (message.label, message.reply, message.source) == (turn.sentiment.label, text, "chat")
    assert history(db, "amy") == [{"role": "user", "content": "今天很开心"}, {"role": "assistant", "content": text}]


def test_a_reply_abandoned_half_way_keeps_what_was_shown(engine, db, rule):
    turn = start_turn("hello", person="bo", engine=engine, db=db, rule=rule,
                      options=ReplyOptions(seed=3, max_new_tokens=30))
    first = next(turn.reply)
    turn.reply.close()  # the page was closed while streaming
    with reading(db) as session:
        message = session.get(Message, turn.message_id)
        assert message.reply == first and message.reply_interrupted
    # A cut-off reply is not continued from as if the assistant had said it all.
    assert history(db, "bo") == [{"role": "user", "content": "hello"}]


def test_a_finished_reply_is_not_marked_interrupted(engine, db, rule):
    turn = start_turn("hello", person="bo", engine=engine, db=db, rule=rule,
                      options=ReplyOptions(seed=3, max_new_tokens=8))
    "".join(turn.reply)
    with reading(db) as session:
        message = session.get(Message, turn.message_id)
        assert message.reply and not message.reply_interrupted and message.reply_kind in ("guarded", "library")


def test_without_a_model_messages_are_kept_and_labelled_later(engine, db, rule):
    turn = start_turn("nobody listens to me", person="cy", engine=None, db=db, rule=rule)
    assert turn.sentiment is None and turn.reply is None
    with reading(db) as session:
        assert session.get(Message, turn.message_id).label is None
        assert overview(session).labelled == 0
    assert label_pending(engine=engine, db=db, rule=rule) == 1
    with reading(db) as session:
        message = session.get(Message, turn.message_id)
        assert message.label in ("positive", "negative") and message.prompt_version == engine.prompt.version
    assert label_pending(engine=engine, db=db, rule=rule) == 0


def test_demo_class_is_marked_and_has_alerts(db, rule):
    summary = fill_demo(db, rule=rule, people=12, weeks=6, seed=7)
    assert "12 demo people" in summary
    with reading(db) as session:
        people = session.scalars(select(Person)).all()
        assert len(people) == 12 and all(p.group_name == DEMO_GROUP and p.display_name.startswith("Demo ")
                                         for p in people)
        assert set(session.scalars(select(Message.model))) == {DEMO_MODEL}
        assert list_alerts(session), "the simulated negative stretches should open alerts"


def test_the_demo_class_has_nothing_dated_after_now(db, rule):
    now = datetime(2026, 5, 6, 9, 30)  # a morning: a 16:00 end of day would lie in the future
    fill_demo(db, rule=rule, people=6, weeks=2, seed=3, now=now)
    with reading(db) as session:
        assert session.scalar(select(func.max(Message.created_at))) <= now
