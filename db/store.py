"""People and messages: storing them in bulk (with their labels, risk and duplicates skipped), labelling messages
stored while no model was available, and reading one person's messages back.

Every function takes an open session (from `db.session.writing` / `reading`) and never commits: the caller's
transaction decides what is stored together. A write transaction does only database work; labelling happens before
it, so the write lock is held for milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.access import EVERYTHING, Scope, people_clause
from db.alerts import raise_risk_alerts, refresh_alerts
from db.errors import StoreError
from db.models import COMMENTER, COMMENTER_PREFIX, STUDENT, BatchReuse, Message, Person, utcnow
from db.rules import AlertRule
from db.session import text_hash

LABEL_FIELDS = ("label", "confidence", "p_negative", "uncertain", "model", "fingerprint", "prompt_version", "head_id",
                "risk", "risk_category", "risk_score", "risk_version", "risk_head_id")


@dataclass(frozen=True)
class NewMessage:
    """A message to store; the label fields stay None when no model could label it."""

    text: str
    source: str  # chat | csv | cli
    person: str | None = None  # handle
    display_name: str | None = None
    group: str | None = None
    label: str | None = None
    confidence: float | None = None
    p_negative: float | None = None
    uncertain: bool | None = None
    model: str | None = None
    fingerprint: str | None = None
    prompt_version: str | None = None
    head_id: str | None = None
    risk: str | None = None
    risk_category: str | None = None
    risk_score: float | None = None
    risk_version: str | None = None
    risk_head_id: str | None = None
    created_at: datetime | None = None
    batch_id: int | None = None
    row_index: int | None = None
    cells: str | None = None  # an uploaded row's original cells, JSON
    reply: str | None = None
    author: str | None = None  # who typed it (the signed-in user, or cli:<user>)

    @property
    def handle(self) -> str | None:
        """The stored person's handle: an uploaded row's author (a row of a batch) is a commenter."""
        if self.person is None:
            return None
        return COMMENTER_PREFIX + self.person if self.batch_id is not None else self.person


_COLUMNS = {f.name for f in fields(NewMessage)} - {"person", "display_name", "group", "created_at"}


def check_handle(handle: str) -> None:
    """A handle someone types for a person (chat, CLI, an account) may not take the commenters' namespace."""
    if handle.startswith(COMMENTER_PREFIX):
        raise StoreError(f"Handles starting with {COMMENTER_PREFIX!r} belong to authors of uploaded comments; "
                         "choose another handle.")


def ensure_people(session: Session, people: dict[str, tuple[str | None, str | None]]) -> dict[str, int]:
    """Ids for these handles ({handle: (display name, group)}), creating the people that are new (a handle in
    the commenters' namespace makes a commenter, with the author's own name to show).

    On a server database another writer may create the same handle at the same moment; the insert then runs in a
    savepoint, and a unique-key clash reads back the other writer's row instead of failing the whole batch.
    """
    if not people:
        return {}
    ids = dict(session.execute(select(Person.handle, Person.id).where(Person.handle.in_(list(people)))).all())
    for handle in sorted(set(people) - set(ids)):  # one order everywhere, so concurrent writers cannot deadlock
        display, group = people[handle]
        commenter = handle.startswith(COMMENTER_PREFIX)
        try:
            with session.begin_nested():
                person = Person(handle=handle, group_name=None if commenter else group,
                                display_name=display or handle.removeprefix(COMMENTER_PREFIX),
                                kind=COMMENTER if commenter else STUDENT)
                session.add(person)
            ids[handle] = person.id
        except IntegrityError:
            ids[handle] = session.scalar(select(Person.id).where(Person.handle == handle))
    return ids


Key = tuple[int, datetime, str]  # (person id, time, text hash): the same message, whichever file it came in


def _already_stored(session: Session, candidates: list[Key]) -> dict[Key, int]:
    """Which (person id, time, text hash) keys are stored already, with the first message stored under each: an
    overlapping export is not counted twice."""
    found: dict[Key, int] = {}
    for start in range(0, len(candidates), 300):
        group = candidates[start:start + 300]
        for person_id, created_at, digest, message_id in session.execute(
                select(Message.person_id, Message.created_at, Message.text_hash, func.min(Message.id))
                .where(tuple_(Message.person_id, Message.created_at, Message.text_hash).in_(group))
                .group_by(Message.person_id, Message.created_at, Message.text_hash)):
            found[(person_id, created_at, digest)] = message_id
    return found


def stored_already(session: Session, rows: Sequence[NewMessage]) -> set[int]:
    """The positions in `rows` of those whose person, time and text are stored already (read before labelling, so
    a re-uploaded comment is not sent to the model again). Creates nobody."""
    handles = {r.handle for r in rows if r.person and r.created_at is not None}
    if not handles:
        return set()
    people = dict(session.execute(select(Person.handle, Person.id).where(Person.handle.in_(handles))).all())
    keys = {i: (people[r.handle], r.created_at, text_hash(r.text)) for i, r in enumerate(rows)
            if r.person and r.created_at is not None and r.handle in people}
    found = _already_stored(session, list(set(keys.values())))
    return {i for i, key in keys.items() if key in found}


def _stored_batch_rows(session: Session, rows: Sequence[NewMessage]) -> dict[tuple[int, int], int]:
    """{(batch id, row number): message id} of these rows that a batch already holds (stored, or reused)."""
    wanted: dict[int, list[int]] = {}
    for row in rows:
        if row.batch_id is not None and row.row_index is not None:
            wanted.setdefault(row.batch_id, []).append(row.row_index)
    found: dict[tuple[int, int], int] = {}
    for batch_id, numbers in wanted.items():
        for start in range(0, len(numbers), 500):
            found |= {(batch_id, n): i for n, i in session.execute(
                select(Message.row_index, Message.id).where(Message.batch_id == batch_id,
                                                            Message.row_index.in_(numbers[start:start + 500])))}
            found |= {(batch_id, n): i for n, i in session.execute(
                select(BatchReuse.row_index, BatchReuse.message_id)
                .where(BatchReuse.batch_id == batch_id, BatchReuse.row_index.in_(numbers[start:start + 500])))}
    return found


def add_messages(session: Session, rows: Sequence[NewMessage], *, rule: AlertRule,
                 skip_duplicates: bool = False) -> list[int | None]:
    """Store `rows`; re-evaluate the alert rule once for every person they mention, and raise a risk alert at once
    for every risk message. With `skip_duplicates`, a row whose person, time and text are stored already (or
    appear earlier in `rows`) is skipped: its id is None, and a batch row's batch reuses the stored message at that
    row (`BatchReuse`, in this same transaction). A batch row that is stored already (a chunk retried after a crash,
    or resumed by another worker) is not stored again: its id is the stored message's. Returns the ids in order."""
    for row in rows:
        if row.person and row.batch_id is None:
            check_handle(row.person)
    wanted = {r.handle: (r.display_name, r.group) for r in rows if r.person}
    people = ensure_people(session, wanted)
    now = utcnow()
    keyed = [(people.get(r.handle) if r.person else None, r.created_at or now, text_hash(r.text)) for r in rows]
    skip: dict[Key, int | Message] = {}  # each key's stored message (or the one stored from earlier in `rows`)
    if skip_duplicates:
        checkable = [k for k, r in zip(keyed, rows, strict=True) if k[0] is not None and r.created_at is not None]
        skip |= _already_stored(session, checkable)
    stored_rows = _stored_batch_rows(session, rows)
    ids: list[int | None] = []
    messages: list[Message] = []
    reused: list[tuple[NewMessage, int | Message]] = []
    for (person_id, created_at, digest), row in zip(keyed, rows, strict=True):
        key = (person_id, created_at, digest)
        if (row.batch_id, row.row_index) in stored_rows:  # a retried or resumed chunk: stored once, not twice
            ids.append(stored_rows[(row.batch_id, row.row_index)])
            continue
        if skip_duplicates and person_id is not None and row.created_at is not None and key in skip:
            ids.append(None)
            if row.batch_id is not None and row.row_index is not None:
                reused.append((row, skip[key]))
            continue
        message = Message(person_id=person_id, created_at=created_at, text_hash=digest,
                          **{name: getattr(row, name) for name in _COLUMNS})
        skip.setdefault(key, message)
        messages.append(message)
        ids.append(-1)
    session.add_all(messages)
    session.flush()
    session.add_all(BatchReuse(batch_id=row.batch_id, row_index=row.row_index, cells=row.cells,
                               message_id=found if isinstance(found, int) else found.id) for row, found in reused)
    stored = iter(messages)
    ids = [next(stored).id if i == -1 else i for i in ids]
    refresh_alerts(session, {m.person_id for m in messages if m.label is not None}, rule)
    raise_risk_alerts(session, messages)
    return ids


def set_reply(session: Session, message_id: int, reply: str, *, kind: str = "generated",
              interrupted: bool = False, version: str | None = None) -> None:
    """The assistant's reply to a message: where its words came from (compose.KINDS), the version of the reviewed
    words it used, and whether it was cut off."""
    session.execute(update(Message).where(Message.id == message_id)
                    .values(reply=reply, reply_kind=kind, reply_interrupted=interrupted, reply_version=version))


def set_labels(session: Session, labels: dict[int, dict[str, object]], *, rule: AlertRule) -> None:
    """Label messages that were stored unlabelled ({message id: label fields}), then re-evaluate their people's
    alerts once and raise risk alerts."""
    messages = session.scalars(select(Message).where(Message.id.in_(list(labels)))).all()
    for message in messages:
        for name, value in labels[message.id].items():
            if name not in LABEL_FIELDS:
                raise ValueError(f"{name} is not a label field")
            setattr(message, name, value)
    session.flush()
    refresh_alerts(session, {m.person_id for m in messages}, rule)
    raise_risk_alerts(session, messages)


def unlabelled_messages(session: Session, limit: int = 500) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.label.is_(None)).order_by(Message.id).limit(limit)))


def get_person(session: Session, handle: str, scope: Scope = EVERYTHING) -> Person | None:
    """The person with this handle, if the scope may read them."""
    return session.scalar(select(Person).where(Person.handle == handle, people_clause(scope)))


def list_people(session: Session, scope: Scope = EVERYTHING, *, source: str | None = None,
                students_only: bool = False) -> list[Person]:
    """People the scope may read, by display name; only those with messages from `source` when given, and only
    students (no commenters of uploads) with `students_only`."""
    query = select(Person).where(people_clause(scope)).order_by(Person.display_name, Person.handle)
    if students_only:
        query = query.where(Person.is_student)
    if source is not None:
        query = query.where(Person.id.in_(select(Message.person_id).where(Message.source == source)))
    return list(session.scalars(query))


def list_messages(session: Session, person_id: int, since: datetime | None = None, until: datetime | None = None,
                  limit: int | None = None) -> list[Message]:
    """A person's messages in a time range, oldest first (the newest `limit` when given)."""
    query = select(Message).where(Message.person_id == person_id)
    if since is not None:
        query = query.where(Message.created_at >= since)
    if until is not None:
        query = query.where(Message.created_at <= until)
    if limit is not None:
        newest = list(session.scalars(query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)))
        return newest[::-1]
    return list(session.scalars(query.order_by(Message.created_at, Message.id)))


def chat_history(session: Session, handle: str, turns: int = 50, scope: Scope = EVERYTHING) -> list[Message]:
    """The person's most recent chat messages (each holds the user's text and the reply), oldest first; empty for
    someone not stored yet or outside the scope."""
    person = get_person(session, handle, scope)
    if person is None:
        return []
    query = (select(Message).where(Message.person_id == person.id, Message.source == "chat")
             .order_by(Message.created_at.desc(), Message.id.desc()).limit(turns))
    return list(session.scalars(query))[::-1]
