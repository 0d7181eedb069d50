"""One chat turn from end to end, the same for the terminal and the dashboard: label the user's message, store it,
stream the assistant's reply, store the reply.

When no model can be loaded the message is still stored, unlabelled, so a teacher's record has no holes; it is
labelled later (`python -m aio_core label-pending`, or the Overview page once the model loads).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine as Database

from aio_core.classify import Sentiment, classify
from aio_core.engine import Engine
from aio_core.reply import DEFAULT_OPTIONS, ReplyOptions, reply
from aio_core.workflows import label_fields
from db.rules import AlertRule
from db.session import reading, writing
from db.store import NewMessage, add_messages, chat_history, get_person, set_label, set_reply, unlabelled_messages


@dataclass
class Turn:
    message_id: int
    sentiment: Sentiment | None  # None when the model is unavailable
    reply: Iterator[str] | None  # the streamed reply; the full text is stored when the stream ends


def history(db: Database, person: str | None, turns: int = 20) -> list[dict[str, str]]:
    """The person's earlier chat as {"role", "content"} messages, oldest first."""
    if not person:
        return []
    with reading(db) as session:
        found = get_person(session, person)
        stored = chat_history(session, found.id, turns) if found else []
    messages: list[dict[str, str]] = []
    for message in stored:
        messages.append({"role": "user", "content": message.text})
        if message.reply:
            messages.append({"role": "assistant", "content": message.reply})
    return messages


def _stored_reply(db: Database, message_id: int, pieces: Iterator[str]) -> Iterator[str]:
    parts: list[str] = []
    try:
        for piece in pieces:
            parts.append(piece)
            yield piece
    finally:  # also when the reader stops early: what was shown is what is stored
        with writing(db) as session:
            set_reply(session, message_id, "".join(parts))


def start_turn(text: str, *, person: str | None, engine: Engine | None, db: Database, rule: AlertRule,
               source: str = "chat", options: ReplyOptions = DEFAULT_OPTIONS, display_name: str | None = None,
               group: str | None = None) -> Turn:
    """Label and store `text`, then return the turn with its reply stream (None without a model)."""
    earlier = history(db, person)
    sentiment = classify([text], engine=engine)[0] if engine else None
    row = NewMessage(text=text, source=source, person=person, display_name=display_name, group=group,
                     **(label_fields(sentiment, engine) if sentiment else {}))
    with writing(db) as session:
        (message_id,) = add_messages(session, [row], rule=rule)
    if engine is None:
        return Turn(message_id, None, None)
    pieces = reply([*earlier, {"role": "user", "content": text}], engine=engine, sentiment=sentiment,
                   options=options)
    return Turn(message_id, sentiment, _stored_reply(db, message_id, pieces))


def label_pending(*, engine: Engine, db: Database, rule: AlertRule, limit: int = 500) -> int:
    """Label messages stored while no model was available. Returns how many were labelled."""
    total = 0
    while True:
        with reading(db) as session:
            pending = [(m.id, m.text) for m in unlabelled_messages(session, limit)]
        if not pending:
            return total
        labels = classify([text for _, text in pending], engine=engine)
        with writing(db) as session:
            for (message_id, _), s in zip(pending, labels, strict=True):
                set_label(session, message_id, rule=rule, **label_fields(s, engine))
        total += len(pending)
