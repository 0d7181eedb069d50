"""One chat turn from end to end, the same for the terminal and the dashboard: label the user's message (sentiment
and risk), store it, stream the assistant's reply, store the reply.

A message the risk assessment marks urgent gets the reviewed safe message (`reply.safe_reply`), never free
generation; a concern or urgent message's alert is opened in the same transaction that stores it. A reply whose
stream stops early (the reader left, or a new message came) is stored as far as it was shown and marked interrupted.

When no model can be loaded the message is still stored, unlabelled, so a teacher's record has no holes; it is
labelled later (`python -m aio_core label-pending`, or the Overview page once the model loads).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine as Database

from aio_core.classify import Sentiment
from aio_core.engine import Engine
from aio_core.prompts import detect_lang
from aio_core.reply import DEFAULT_OPTIONS, ReplyOptions, reply, safe_reply
from aio_core.risk import Risk
from aio_core.workflows import assess, label_fields
from db.rules import AlertRule
from db.session import reading, writing
from db.store import NewMessage, add_messages, chat_history, set_labels, set_reply, unlabelled_messages


@dataclass
class Turn:
    message_id: int
    sentiment: Sentiment | None  # None when the model is unavailable
    reply: Iterator[str] | None  # the streamed reply; the full text is stored when the stream ends
    risk: Risk | None = None
    reply_kind: str = "generated"  # generated | safe (the reviewed message for a concern/urgent message)


def history(db: Database, person: str | None, turns: int = 20) -> list[dict[str, str]]:
    """The person's earlier chat as {"role", "content"} messages, oldest first."""
    if not person:
        return []
    with reading(db) as session:
        stored = chat_history(session, person, turns)
        messages: list[dict[str, str]] = []
        for message in stored:
            messages.append({"role": "user", "content": message.text})
            # A cut-off or safe reply is not the model's voice to continue from.
            if message.reply and message.reply_kind == "generated" and not message.reply_interrupted:
                messages.append({"role": "assistant", "content": message.reply})
    return messages


def _stored_reply(db: Database, message_id: int, pieces: Iterator[str]) -> Iterator[str]:
    parts: list[str] = []
    finished = False
    try:
        for piece in pieces:
            parts.append(piece)
            yield piece
        finished = True
    finally:  # also when the reader stops early: what was shown is what is stored, marked as cut off
        with writing(db) as session:
            set_reply(session, message_id, "".join(parts), interrupted=not finished)


def start_turn(text: str, *, person: str | None, engine: Engine | None, db: Database, rule: AlertRule,
               source: str = "chat", options: ReplyOptions = DEFAULT_OPTIONS, display_name: str | None = None,
               group: str | None = None) -> Turn:
    """Label and store `text`, then return the turn with its reply stream (None without a model)."""
    earlier = history(db, person)
    sentiment, risk = assess([text], engine=engine)[0] if engine else (None, None)
    row = NewMessage(text=text, source=source, person=person, display_name=display_name, group=group,
                     **(label_fields(sentiment, engine, risk) if sentiment else {}))
    # Urgent gets the reviewed safe message. Concern is looser by design (a review queue), so it never swaps the
    # reply for a crisis message: the counsellor is told through the alert, the student gets a normal reply.
    urgent = risk is not None and risk.level == "urgent"
    safe = safe_reply(risk.level, detect_lang(text), engine.settings)[0] if urgent else None
    with writing(db) as session:  # the message, its alerts and (for a risk) its safe reply are stored together
        (message_id,) = add_messages(session, [row], rule=rule)
        if safe is not None:
            set_reply(session, message_id, safe, kind="safe")
    if engine is None:
        return Turn(message_id, None, None)
    if safe is not None:
        return Turn(message_id, sentiment, (piece for piece in [safe]), risk, "safe")
    pieces = reply([*earlier, {"role": "user", "content": text}], engine=engine, sentiment=sentiment,
                   options=options)
    return Turn(message_id, sentiment, _stored_reply(db, message_id, pieces), risk)


def label_pending(*, engine: Engine, db: Database, rule: AlertRule, limit: int = 500) -> int:
    """Label messages stored while no model was available. Returns how many were labelled."""
    total = 0
    while True:
        with reading(db) as session:
            pending = [(m.id, m.text) for m in unlabelled_messages(session, limit)]
        if not pending:
            return total
        labels = assess([text for _, text in pending], engine=engine)
        with writing(db) as session:
            set_labels(session, {message_id: label_fields(s, engine, r)
                                 for (message_id, _), (s, r) in zip(pending, labels, strict=True)}, rule=rule)
        total += len(pending)
