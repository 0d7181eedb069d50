"""Alerts: opened or updated by the sustained-negativity rule, moved through open -> acknowledged -> resolved by
people, every move kept as an event (who, when, note).

One episode has one alert: while a person's alert is open or acknowledged, new negative messages update it. Once it
is resolved, only messages stored after it can open the next one.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, joinedload

from db.errors import StoreError
from db.models import Alert, AlertEvent, Message, Person, utcnow
from db.rules import AlertRule, evaluate

STATUSES = ("open", "acknowledged", "resolved")
ACTIVE = ("open", "acknowledged")  # an "open alert" is one not resolved yet, whether or not someone acknowledged it


def open_alert() -> ColumnElement[bool]:
    """THE definition of an open alert, for every count and list that shows one."""
    return Alert.status.in_(ACTIVE)


def person_series(session: Session, person_id: int, after_message_id: int = 0) -> list[tuple]:
    """(created_at, label) of the person's labelled messages, oldest first."""
    rows = session.execute(
        select(Message.created_at, Message.label)
        .where(Message.person_id == person_id, Message.label.is_not(None), Message.id > after_message_id)
        .order_by(Message.created_at, Message.id)
    ).all()
    return [tuple(r) for r in rows]


def recent_series(session: Session, person_id: int, rule: AlertRule, after_message_id: int = 0) -> list[tuple]:
    """The part of `person_series` the rule looks at: the last `last_n` messages or the last `days` days before
    the newest, whichever is longer. Same verdict as the whole series, in two small queries however long the
    history (a 50,000-row upload re-checks its authors after every chunk)."""
    mine = (Message.person_id == person_id, Message.label.is_not(None), Message.id > after_message_id)
    newest = session.scalar(select(func.max(Message.created_at)).where(*mine))
    if newest is None:
        return []
    window = session.execute(select(Message.created_at, Message.label)
                             .where(*mine, Message.created_at > newest - timedelta(days=rule.days))
                             .order_by(Message.created_at, Message.id)).all()
    if len(window) < rule.last_n:
        window = session.execute(select(Message.created_at, Message.label).where(*mine)
                                 .order_by(Message.created_at.desc(), Message.id.desc()).limit(rule.last_n)).all()[::-1]
    return [tuple(r) for r in window]


def refresh_alert(session: Session, person_id: int, rule: AlertRule) -> Alert | None:
    """Re-evaluate the rule for one person; open a new alert or update the active one. Returns the alert touched.

    The person's row is locked first (FOR NO KEY UPDATE on a server database; SQLite's write transaction already
    holds the whole file), so two writers for one person cannot both see "no active alert" and open two.
    """
    session.execute(select(Person.id).where(Person.id == person_id).with_for_update(key_share=True))
    alerts = session.scalars(select(Alert).where(Alert.person_id == person_id).order_by(Alert.id)).all()
    active = next((a for a in reversed(alerts) if a.status in ACTIVE), None)
    # Messages that a resolved episode already covered do not count towards the next one.
    baseline = max((a.last_message_id for a in alerts
                    if a.status == "resolved" and (active is None or a.id < active.id)), default=0)
    finding = evaluate(recent_series(session, person_id, rule, baseline), rule)
    if finding is None:
        return None
    newest = session.scalar(select(Message.id).where(Message.person_id == person_id).order_by(Message.id.desc()))
    if active is None:
        active = Alert(person_id=person_id, status="open")
        session.add(active)
        active.events.append(AlertEvent(from_status=None, to_status="open", by="rule", note=finding.rule))
    active.rule = finding.rule
    active.window_start = min(active.window_start or finding.window_start, finding.window_start)
    active.window_end = finding.window_end
    active.negatives, active.total = finding.negatives, finding.total
    active.negative_share = finding.share
    active.last_message_id = newest or 0
    active.updated_at = utcnow()
    return active


def list_alerts(session: Session, statuses: tuple[str, ...] = STATUSES, person_id: int | None = None) -> list[Alert]:
    query = (select(Alert).options(joinedload(Alert.person), joinedload(Alert.events))
             .where(Alert.status.in_(statuses)).order_by(Alert.status != "open", Alert.updated_at.desc()))
    if person_id is not None:
        query = query.where(Alert.person_id == person_id)
    return list(session.scalars(query).unique())


def transition_alert(session: Session, alert_id: int, to_status: str, *, by: str, note: str = "") -> Alert:
    """Move an alert to `to_status`, recording who did it, when, and their note."""
    if to_status not in STATUSES:
        raise StoreError(f"Unknown alert status {to_status!r}; use one of: {', '.join(STATUSES)}.")
    if not by.strip():
        raise StoreError("Say who is making this change (a name or initials), so the alert history shows it.")
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise StoreError(f"There is no alert number {alert_id}; it may have been erased with its person.")
    if alert.status == to_status and not note.strip():
        return alert
    alert.events.append(AlertEvent(from_status=alert.status, to_status=to_status, by=by.strip(),
                                   note=note.strip() or None))
    alert.status = to_status
    alert.note = note.strip() or alert.note
    alert.updated_at = utcnow()
    alert.updated_by = by.strip()
    return alert


def refresh_all_alerts(session: Session, rule: AlertRule) -> int:
    """Re-evaluate `rule` for every person with labelled messages. Returns how many people were checked."""
    people = list(session.scalars(select(Message.person_id).where(Message.person_id.is_not(None)).distinct()))
    for person_id in people:
        refresh_alert(session, person_id, rule)
    return len(people)
