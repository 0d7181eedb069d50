"""Escalation: an urgent risk alert that nobody acknowledged goes further, one step at a time, until someone does.

Step 0 is the first notice (its group's counsellors, or the administrators: `db.outbox.first_recipients`). Each
further `minutes` that the alert stays open (not acknowledged, not resolved) it goes to the next contact on its
group's escalation list (set by an administrator, in order), skipping anyone it already reached; after the last
contact, to the administrators, the last responders; then it stops. The clock starts when the alert was (last)
opened. Each step is taken once, in one transaction that queues its notifications and writes it into the alert's
history; acknowledging or resolving the alert stops the next step, and its unsent notices are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from db.alerts import urgent_risk_alert
from db.errors import StoreError
from db.models import Alert, AlertEvent, EscalationContact, Notification, Person, User
from db.outbox import NOTIFY, Recipient, admins, enqueue_step
from db.privacy import audit

CONTACT_ROLES = ("admin", "counsellor", "teacher")  # who may be on a list: people who sign in to act on alerts


def escalation_lists(session: Session) -> dict[str, list[User]]:
    """Every group's escalation list, in order."""
    found: dict[str, list[User]] = {}
    listed = (select(EscalationContact, User).join(User, User.id == EscalationContact.user_id)
              .order_by(EscalationContact.group_name, EscalationContact.position))
    for contact, user in session.execute(listed):
        found.setdefault(contact.group_name, []).append(user)
    return found


def set_escalation_list(session: Session, group: str, usernames: list[str], *, by: str) -> list[str]:
    """Replace a group's escalation list with these accounts, in this order (each needs an e-mail address)."""
    if not group.strip():
        raise StoreError("Say which group this escalation list is for.")
    chosen: list[User] = []
    for name in usernames:
        user = session.scalar(select(User).where(User.username == name.strip().lower()))
        if user is None:
            raise StoreError(f"There is no user {name!r}; choose accounts from the list.")
        if user.role not in CONTACT_ROLES:
            raise StoreError(f"{user.username} is a {user.role}; an escalation contact must be an administrator, "
                             "a counsellor or a teacher.")
        if not user.email:
            raise StoreError(f"{user.username} has no e-mail address, so an escalation could not reach them; add "
                             f"one first (python -m aio_core user set-email {user.username} --email ADDRESS).")
        if user not in chosen:
            chosen.append(user)
    session.execute(delete(EscalationContact).where(EscalationContact.group_name == group))
    session.add_all([EscalationContact(group_name=group, position=n, user_id=u.id) for n, u in enumerate(chosen, 1)])
    audit(session, by, "notify.escalation_list", group, ", ".join(u.username for u in chosen) or "(none)")
    return [u.username for u in chosen]


@dataclass(frozen=True)
class Step:
    """The next escalation step of one alert: who, and why."""

    alert: Alert
    step: int
    recipients: list[Recipient]
    waited: timedelta  # how long the alert had been open unacknowledged


def _opened_at(session: Session, alert: Alert) -> datetime:
    """When the alert was last opened (raised, or reopened by a person): the escalation clock's start."""
    moved = select(func.max(AlertEvent.at)).where(
        AlertEvent.alert_id == alert.id, AlertEvent.to_status == "open",
        or_(AlertEvent.from_status.is_(None), AlertEvent.from_status != "open"))
    return session.scalar(moved) or alert.created_at


def _reached(session: Session, alert_id: int) -> tuple[int, set[str]]:
    """The last step taken for an alert, and the addresses it was queued to."""
    rows = session.execute(select(Notification.step, Notification.recipient)
                           .where(Notification.alert_id == alert_id)).all()
    return max((s for s, _ in rows), default=-1), {r.lower() for _, r in rows if r}


def _next_recipients(session: Session, group: str | None, reached: set[str]) -> list[Recipient]:
    """The first entry of the group's list, then the administrators, that the alert has not reached yet."""
    listed = escalation_lists(session).get(group, []) if group is not None else []
    for number, user in enumerate(listed, 1):
        if user.email and not user.disabled and user.email.lower() not in reached:
            return [Recipient(user.username, user.display_name, user.email,
                              f"contact {number} on the escalation list of {group}")]
    last = [Recipient(r.username, r.display_name, r.address, "administrator (last on every escalation list)")
            for r in admins(session) if r.address.lower() not in reached]
    return last


def due_steps(session: Session, *, now: datetime, minutes: int) -> list[Step]:
    """The escalation steps due now: for each open urgent risk alert on a person, its next step once `minutes`
    more have passed without an acknowledgement, while anyone is left to tell."""
    due = []
    alerts = session.scalars(select(Alert).join(Person, Person.id == Alert.person_id)
                             .where(urgent_risk_alert(), Alert.status == "open",
                                    Person.is_student).order_by(Alert.id))
    for alert in alerts:
        last, reached = _reached(session, alert.id)
        if last < 0:
            continue  # raised before this version queued notifications: it was never sent, so it cannot escalate
        opened = _opened_at(session, alert)
        step = last + 1
        if now < opened + timedelta(minutes=minutes * step):
            continue
        recipients = _next_recipients(session, session.get(Person, alert.person_id).group_name, reached)
        if recipients:
            due.append(Step(alert=alert, step=step, recipients=recipients, waited=now - opened))
    return due


def take_step(session: Session, step: Step, *, now: datetime) -> list[Notification]:
    """Queue one escalation step's notifications and write it into the alert's history (the caller audits it)."""
    rows = enqueue_step(session, step.alert, step.step, step.recipients, now=now)
    if rows:
        who = ", ".join(f"{r.display_name} ({r.username})" for r in step.recipients)
        minutes = int(step.waited.total_seconds() // 60)
        step.alert.events.append(AlertEvent(
            from_status=step.alert.status, to_status=step.alert.status, by=NOTIFY, at=now,
            note=f"escalated (step {step.step}): not acknowledged {minutes} minutes after it was raised; to {who}, "
                 f"{step.recipients[0].reason}"))
    return rows
