"""People and messages: storing them in bulk, reading them back for trends and the overview, and the privacy
requests (export and erase everything about one person).

Every function takes an open session (from `db.session.writing` / `reading`) and never commits: the caller's
transaction decides what is stored together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.alerts import open_alert, refresh_alert
from db.models import Alert, AlertEvent, Batch, Message, Person, utcnow
from db.rules import AlertRule


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
    prompt_version: str | None = None
    created_at: datetime | None = None
    batch_id: int | None = None
    row_index: int | None = None
    reply: str | None = None


def ensure_people(session: Session, people: dict[str, tuple[str | None, str | None]]) -> dict[str, int]:
    """Ids for these handles ({handle: (display name, group)}), creating the people that are new.

    On a server database another writer may create the same handle at the same moment; the insert then runs in a
    savepoint, and a unique-key clash reads back the other writer's row instead of failing the whole batch.
    """
    if not people:
        return {}
    ids = dict(session.execute(select(Person.handle, Person.id).where(Person.handle.in_(list(people)))).all())
    for handle in sorted(set(people) - set(ids)):  # one order everywhere, so concurrent writers cannot deadlock
        display, group = people[handle]
        try:
            with session.begin_nested():
                person = Person(handle=handle, display_name=display or handle, group_name=group)
                session.add(person)
            ids[handle] = person.id
        except IntegrityError:
            ids[handle] = session.scalar(select(Person.id).where(Person.handle == handle))
    return ids


def add_messages(session: Session, rows: Sequence[NewMessage], *, rule: AlertRule) -> list[int]:
    """Store `rows`, then re-evaluate the alert rule for every person they mention. Returns the new ids."""
    wanted = {r.person: (r.display_name, r.group) for r in rows if r.person}
    people = ensure_people(session, wanted)
    now = utcnow()
    messages = [
        Message(person_id=people.get(r.person) if r.person else None, source=r.source, text=r.text, label=r.label,
                confidence=r.confidence, p_negative=r.p_negative, uncertain=r.uncertain, model=r.model,
                prompt_version=r.prompt_version, created_at=r.created_at or now, batch_id=r.batch_id,
                row_index=r.row_index, reply=r.reply)
        for r in rows
    ]
    session.add_all(messages)
    session.flush()
    for person_id in sorted(set(people.values())):
        refresh_alert(session, person_id, rule)
    return [m.id for m in messages]


def set_reply(session: Session, message_id: int, reply: str) -> None:
    session.execute(update(Message).where(Message.id == message_id).values(reply=reply))


def set_label(session: Session, message_id: int, *, label: str, confidence: float, p_negative: float,
              uncertain: bool, model: str, prompt_version: str, rule: AlertRule) -> None:
    """Label a message that was stored unlabelled, and re-evaluate its person's alert."""
    message = session.get(Message, message_id)
    message.label, message.confidence, message.p_negative = label, confidence, p_negative
    message.uncertain, message.model, message.prompt_version = uncertain, model, prompt_version
    if message.person_id is not None:
        session.flush()
        refresh_alert(session, message.person_id, rule)


def unlabelled_messages(session: Session, limit: int = 500) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.label.is_(None)).order_by(Message.id).limit(limit)))


def get_person(session: Session, handle: str) -> Person | None:
    return session.scalar(select(Person).where(Person.handle == handle))


def list_people(session: Session) -> list[Person]:
    return list(session.scalars(select(Person).order_by(Person.display_name)))


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


def daily_counts(session: Session, person_id: int | None = None, since: datetime | None = None) -> list[tuple]:
    """(day 'YYYY-MM-DD', label, count) per day and label; unlabelled messages count under label None."""
    day = func.date(Message.created_at)
    query = select(day, Message.label, func.count()).group_by(day, Message.label).order_by(day)
    if person_id is not None:
        query = query.where(Message.person_id == person_id)
    if since is not None:
        query = query.where(Message.created_at >= since)
    return [(str(d), label, n) for d, label, n in session.execute(query).all()]


@dataclass(frozen=True)
class PersonSummary:
    person_id: int
    handle: str
    display_name: str
    group: str | None
    messages: int  # labelled messages in the window
    negatives: int
    last_at: datetime | None
    open_alerts: int

    @property
    def negative_share(self) -> float:
        return self.negatives / self.messages if self.messages else 0.0


def newest_message_time(session: Session) -> datetime | None:
    return session.scalar(select(func.max(Message.created_at)))


def rank_people(session: Session, *, days: int = 7, limit: int = 50) -> list[PersonSummary]:
    """People to look at first: open alerts, then the highest negative share over the last `days` days (ending at
    the newest stored message, so imported history ranks the same as live chat)."""
    newest = newest_message_time(session)
    if newest is None:
        return []
    since = newest - timedelta(days=days)
    negatives = func.sum(case((Message.label == "negative", 1), else_=0))
    recent = (select(Message.person_id, func.count(Message.label).label("n"), negatives.label("neg"),
                     func.max(Message.created_at).label("last"))
              .where(Message.created_at > since, Message.person_id.is_not(None), Message.label.is_not(None))
              .group_by(Message.person_id).subquery())
    alerts = (select(Alert.person_id, func.count().label("open"))
              .where(open_alert()).group_by(Alert.person_id).subquery())
    rows = session.execute(
        select(Person.id, Person.handle, Person.display_name, Person.group_name,
               func.coalesce(recent.c.n, 0), func.coalesce(recent.c.neg, 0), recent.c.last,
               func.coalesce(alerts.c.open, 0))
        .outerjoin(recent, recent.c.person_id == Person.id)
        .outerjoin(alerts, alerts.c.person_id == Person.id)
    ).all()
    summaries = [PersonSummary(person_id=r[0], handle=r[1], display_name=r[2], group=r[3], messages=r[4],
                               negatives=r[5], last_at=r[6], open_alerts=r[7]) for r in rows]
    summaries.sort(key=lambda s: (-s.open_alerts, -s.negative_share, -s.negatives, s.display_name))
    return summaries[:limit]


@dataclass(frozen=True)
class Overview:
    messages: int
    labelled: int
    negatives: int
    people: int
    open_alerts: int
    batches: int

    @property
    def negative_share(self) -> float:
        return self.negatives / self.labelled if self.labelled else 0.0


def overview(session: Session) -> Overview:
    messages, labelled, negatives = session.execute(
        select(func.count(Message.id), func.count(Message.label),
               func.sum(case((Message.label == "negative", 1), else_=0)))).one()
    return Overview(messages=messages, labelled=labelled, negatives=negatives or 0,
                    people=session.scalar(select(func.count(Person.id))),
                    open_alerts=session.scalar(select(func.count(Alert.id)).where(open_alert())),
                    batches=session.scalar(select(func.count(Batch.id))))


def export_person(session: Session, handle: str) -> dict | None:
    """Everything stored about one person, as plain JSON-ready data (for a subject-access request)."""
    person = get_person(session, handle)
    if person is None:
        return None
    iso = lambda t: t.isoformat() if t else None  # noqa: E731
    messages = list_messages(session, person.id)
    alerts = session.scalars(select(Alert).where(Alert.person_id == person.id).order_by(Alert.id)).all()
    return {
        "person": {"handle": person.handle, "display_name": person.display_name, "group": person.group_name,
                   "created_at": iso(person.created_at)},
        "messages": [{"id": m.id, "source": m.source, "text": m.text, "label": m.label, "confidence": m.confidence,
                      "p_negative": m.p_negative, "uncertain": m.uncertain, "model": m.model,
                      "prompt_version": m.prompt_version, "created_at": iso(m.created_at), "batch_id": m.batch_id,
                      "row_index": m.row_index, "reply": m.reply} for m in messages],
        "alerts": [{"id": a.id, "rule": a.rule, "status": a.status, "negative_share": a.negative_share,
                    "window_start": iso(a.window_start), "window_end": iso(a.window_end), "note": a.note,
                    "events": [{"from": e.from_status, "to": e.to_status, "by": e.by, "note": e.note,
                                "at": iso(e.at)} for e in a.events]} for a in alerts],
    }


def erase_person(session: Session, handle: str) -> dict[str, int] | None:
    """Delete the person, their messages, their alerts and alert history. Returns what was deleted."""
    person = get_person(session, handle)
    if person is None:
        return None
    alert_ids = select(Alert.id).where(Alert.person_id == person.id)
    events = session.execute(delete(AlertEvent).where(AlertEvent.alert_id.in_(alert_ids))).rowcount
    alerts = session.execute(delete(Alert).where(Alert.person_id == person.id)).rowcount
    messages = session.execute(delete(Message).where(Message.person_id == person.id)).rowcount
    session.execute(delete(Person).where(Person.id == person.id))
    return {"messages": messages, "alerts": alerts, "alert_events": events, "people": 1}


def chat_history(session: Session, person_id: int, turns: int = 20) -> list[Message]:
    """The person's most recent chat messages (each holds the user's text and the reply), oldest first."""
    query = (select(Message).where(Message.person_id == person_id, Message.source == "chat")
             .order_by(Message.created_at.desc(), Message.id.desc()).limit(turns))
    return list(session.scalars(query))[::-1]


def chat_history_of(session: Session, handle: str, turns: int = 50) -> list[Message]:
    """`chat_history` by handle; empty for someone not stored yet."""
    person = get_person(session, handle)
    return chat_history(session, person.id, turns) if person else []
