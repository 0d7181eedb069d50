"""One chat turn from end to end, the same for the terminal and the dashboard: label the user's message (sentiment
and risk), store it, stream the assistant's reply, store the reply.

A message the risk assessment marks urgent gets the reviewed safe message (`reply.safe_reply`), never free
generation; a concern or urgent message's alert is opened in the same transaction that stores it. Any other message
gets a composed reply (`compose.py`: a reviewed opening for its situation, then one guarded model sentence or the
library's follow-up); where the words came from is stored with the reply. A reply whose stream stops early (the
reader left, or a new message came) is stored as far as it was shown and marked interrupted.

When no model can be loaded the message is still stored, unlabelled, so a teacher's record has no holes; it is
labelled later (`python -m aio_core label-pending`, or the Overview page once the model loads).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine as Database
from sqlalchemy.orm import Session

from aio_core.assessment import assess as read_once
from aio_core.classify import Sentiment
from aio_core.compose import Composed, compose
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.prompts import detect_lang
from aio_core.reply import DEFAULT_OPTIONS, ReplyOptions, safe_reply
from aio_core.risk import Risk
from aio_core.settings import MAX_TEXT_CHARS
from aio_core.situation import UNSURE
from aio_core.workflows import label_fields
from db.access import EVERYTHING, Scope
from db.rules import AlertRule
from db.session import reading, writing
from db.store import (
    NewMessage,
    add_messages,
    chat_history,
    check_handle,
    get_person,
    set_labels,
    set_reply,
    unlabelled_messages,
)

VOICE = ("generated", "guarded", "library")  # reply kinds that are the assistant's own turn in the history


@dataclass
class Turn:
    message_id: int
    sentiment: Sentiment | None  # None when the model is unavailable
    reply: Iterator[str] | None  # the streamed reply; the full text is stored when the stream ends
    risk: Risk | None = None
    composed: Composed | None = None  # the reply being put together; None for the safe message
    situation: str = UNSURE

    @property
    def reply_kind(self) -> str | None:
        """Where the reply's words came from (compose.KINDS), final once the reply stream has ended; None when
        there is no reply (no model)."""
        if self.composed is not None:
            return self.composed.kind
        return "safe" if self.reply is not None else None


def history(db: Database, person: str | None, turns: int = 20, *, scope: Scope = EVERYTHING
            ) -> list[dict[str, str]]:
    """The person's earlier chat as {"role", "content"} messages, oldest first (none outside `scope`)."""
    if not person:
        return []
    with reading(db) as session:
        stored = chat_history(session, person, turns, scope)
        messages: list[dict[str, str]] = []
        for message in stored:
            messages.append({"role": "user", "content": message.text})
            # A cut-off or safe reply is not the assistant's voice to continue from.
            if message.reply and message.reply_kind in VOICE and not message.reply_interrupted:
                messages.append({"role": "assistant", "content": message.reply})
    return messages


def _stored_reply(db: Database, message_id: int, composed: Composed) -> Iterator[str]:
    parts: list[str] = []
    finished = False
    try:
        for piece in composed:
            parts.append(piece)
            yield piece
        finished = True
    finally:  # also when the reader stops early: what was shown is what is stored, marked as cut off
        with writing(db) as session:
            set_reply(session, message_id, "".join(parts), kind=composed.kind, interrupted=not finished,
                      version=composed.library_version)


def _check_writer(session: Session, text: str, person: str | None, group: str | None, scope: Scope) -> None:
    """Refuse, with one sentence, a message that is too long or a person this scope may not chat as or for."""
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(f"A message can be at most {MAX_TEXT_CHARS:,} characters, and this one has {len(text):,}; "
                        "shorten it or send it in parts.")
    if person is None:
        return
    check_handle(person)
    existing = get_person(session, person)
    if not scope.may_write_for(person, group, existing):
        raise UserError(f"You may not chat as or for {person!r}: choose someone in your groups, or a new handle "
                        "in one of your groups (that handle belongs to someone else).")


def start_turn(text: str, *, person: str | None, engine: Engine | None, db: Database, rule: AlertRule,
               source: str = "chat", options: ReplyOptions = DEFAULT_OPTIONS, display_name: str | None = None,
               group: str | None = None, scope: Scope = EVERYTHING, author: str | None = None) -> Turn:
    """Label and store `text` as written by `author` for `person`, then return the turn with its reply stream
    (None without a model). `scope`: whom the writer may chat as or for, checked before anything of that person
    is read (their history goes to the model) and again as the message is stored."""
    with reading(db) as session:
        _check_writer(session, text, person, group, scope)
    earlier = history(db, person, scope=scope)
    found = read_once([text], engine=engine)[0] if engine else None
    sentiment, risk = (found.sentiment, found.risk) if found else (None, None)
    row = NewMessage(text=text, source=source, person=person, display_name=display_name, group=group, author=author,
                     **(label_fields(sentiment, engine, risk) if sentiment else {}))
    # Urgent gets the reviewed safe message. Concern is looser by design (a review queue), so it never swaps the
    # reply for a crisis message: the counsellor is told through the alert, the student gets a normal reply.
    urgent = risk is not None and risk.level == "urgent"
    safe, safe_version = safe_reply(risk.level, detect_lang(text), engine.settings) if urgent else (None, None)
    with writing(db) as session:  # the message, its alerts and (for a risk) its safe reply are stored together
        _check_writer(session, text, person, group, scope)  # the person may have been created meanwhile
        (message_id,) = add_messages(session, [row], rule=rule)
        if safe is not None:
            set_reply(session, message_id, safe, kind="safe", version=safe_version)
    if engine is None:
        return Turn(message_id, None, None)
    if safe is not None:
        return Turn(message_id, sentiment, (piece for piece in [safe]), risk, None, found.situation)
    composed = compose([*earlier, {"role": "user", "content": text}], engine=engine, sentiment=sentiment, risk=risk,
                       situation=found.situation, options=options)
    return Turn(message_id, sentiment, _stored_reply(db, message_id, composed), risk, composed, found.situation)


def label_pending(*, engine: Engine, db: Database, rule: AlertRule, limit: int = 500) -> int:
    """Label messages stored while no model was available. Returns how many were labelled."""
    total = 0
    while True:
        with reading(db) as session:
            pending = [(m.id, m.text) for m in unlabelled_messages(session, limit)]
        if not pending:
            return total
        labels = [(a.sentiment, a.risk) for a in read_once([text for _, text in pending], engine=engine)]
        with writing(db) as session:
            set_labels(session, {message_id: label_fields(s, engine, r)
                                 for (message_id, _), (s, r) in zip(pending, labels, strict=True)}, rule=rule)
        total += len(pending)
