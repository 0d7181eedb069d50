"""The outbox: every notification the product owes someone, written in the transaction that opens its alert, and the
queue a sender drains.

Who gets a risk alert is decided here, once: the active counsellors of the person's group who have an e-mail address;
the active administrators when the person is in no group or no counsellor of it has one. Commenters of uploaded
exports are not a school's people and are never notified about. The webhook gets one post per alert and step.

A notification is `waiting` until a sender claims it: one conditional UPDATE makes it `sending` for that sender
(host:pid) until `lease_until`. The sender sends, then marks it `sent`, or `waiting` again with a later attempt, or
`failed` for good. A sender killed between its send and its mark leaves it `sending`: once the lease runs out, or at
once when the holder's process is gone, it is waiting again and is sent again with the same `key`, which the
receiver uses to drop the repeat (at least once here, exactly once in the inbox). `skipped`: not sent, and nothing to
send (the channel is not set up, or the alert was acknowledged before its turn came).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from db.models import Alert, Message, Notification, Person, User, UserGroup

STATUSES = ("waiting", "sending", "sent", "failed", "skipped")
CHANNELS = ("email", "webhook")
NOTIFY = "notify"  # the actor of what the sender records (alert history, audit log)
FAILING_AFTER = 3  # failed attempts in a row (no success since) after which a channel is shown as failing


def notification_key(*parts: object) -> str:
    """The idempotency key of one notification: the same parts always give the same key."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:40]


def alert_key(alert: Alert, step: int, channel: str, recipient: str) -> str:
    # The alert's creation time is part of it: SQLite may give a new alert the id of an erased one, and that
    # alert's notifications must not look like repeats of the old one's.
    return notification_key("alert", alert.id, alert.created_at.isoformat(), step, channel, recipient.lower())


@dataclass(frozen=True)
class Recipient:
    username: str
    display_name: str
    address: str
    reason: str  # why them, as the notice says it: "counsellor of Class A"


def _active_with_address(role: str) -> select:
    return select(User).where(User.role == role, User.disabled.is_(False), User.email.is_not(None), User.email != "")


def admins(session: Session) -> list[Recipient]:
    return [Recipient(u.username, u.display_name, u.email, "administrator")
            for u in session.scalars(_active_with_address("admin").order_by(User.username))]


def first_recipients(session: Session, group: str | None) -> list[Recipient]:
    """Who hears of a risk alert first: the counsellors of `group`; the administrators when there is no group or
    none of its counsellors can be reached."""
    if group is not None:
        counsellors = session.scalars(_active_with_address("counsellor").join(UserGroup, UserGroup.user_id == User.id)
                                      .where(UserGroup.group_name == group).order_by(User.username))
        found = [Recipient(u.username, u.display_name, u.email, f"counsellor of {group}") for u in counsellors]
        if found:
            return found
    why = "the person is in no group" if group is None else f"no counsellor of {group} has an e-mail address"
    return [Recipient(r.username, r.display_name, r.address, f"administrator ({why})") for r in admins(session)]


def add_notification(session: Session, *, key: str, kind: str, channel: str, recipient: str = "",
                     username: str | None = None, reason: str = "", alert_id: int | None = None, step: int = 0,
                     now: datetime, period: tuple[datetime, datetime] | None = None) -> Notification | None:
    """Queue one notification unless one with this key is queued already (another sender took the same step)."""
    if session.scalar(select(Notification.id).where(Notification.key == key)) is not None:
        return None
    row = Notification(key=key, kind=kind, channel=channel, recipient=recipient, username=username,
                       reason=reason[:300], alert_id=alert_id, step=step, status="waiting", attempts=0,
                       next_attempt_at=now, created_at=now, period_start=period[0] if period else None,
                       period_end=period[1] if period else None)
    session.add(row)
    return row


def enqueue_step(session: Session, alert: Alert, step: int, recipients: list[Recipient], *, now: datetime,
                 nobody: str = "") -> list[Notification]:
    """An alert's notifications for one step: an e-mail to each recipient and one webhook post. With no recipient,
    an e-mail row with no address that the sender marks failed, saying `nobody`: a notice that reaches no one
    is shown, not dropped."""
    kind = "alert" if step == 0 else "escalation"
    rows = [add_notification(session, key=alert_key(alert, step, "email", r.address), kind=kind, channel="email",
                             recipient=r.address, username=r.username, reason=r.reason, alert_id=alert.id,
                             step=step, now=now) for r in recipients]
    if not recipients:
        rows.append(add_notification(session, key=alert_key(alert, step, "email", ""), kind=kind, channel="email",
                                     reason=nobody, alert_id=alert.id, step=step, now=now))
    rows.append(add_notification(session, key=alert_key(alert, step, "webhook", ""), kind=kind, channel="webhook",
                                 reason="; ".join(sorted({r.reason for r in recipients})) or nobody,
                                 alert_id=alert.id, step=step, now=now))
    return [r for r in rows if r is not None]


def enqueue_alert(session: Session, alert: Alert) -> list[Notification]:
    """Queue the first notice of a new risk alert, in the caller's transaction (the one that opens the alert)."""
    session.flush()  # the alert's id is part of each key
    person = session.get(Person, alert.person_id)
    if person is None or not person.is_student:
        return []
    recipients = first_recipients(session, person.group_name)
    return enqueue_step(session, alert, 0, recipients, now=alert.created_at,
                        nobody="nobody to notify: no counsellor of the group and no administrator has an e-mail "
                               "address")


def release_abandoned(session: Session, *, now: datetime, gone: Callable[[int, str | None], bool]) -> int:
    """Notifications held by a sender whose lease ran out or whose process is gone: waiting again (their attempt
    counts, and a repeat carries the same key). Returns how many."""
    held = session.execute(select(Notification.id, Notification.worker, Notification.lease_until)
                           .where(Notification.status == "sending")).all()
    freed = [i for i, worker, lease in held if lease is None or lease <= now or gone(i, worker)]
    if freed:
        session.execute(update(Notification).where(Notification.id.in_(freed), Notification.status == "sending")
                        .values(status="waiting", worker=None, lease_until=None))
    return len(freed)


def claim_next(session: Session, *, worker: str, now: datetime, lease_until: datetime,
               channels: tuple[str, ...] = CHANNELS) -> Notification | None:
    """Take the next due notification of these channels for `worker`: alerts before digests, oldest first. Two
    senders never take the same one: the claim is one conditional UPDATE."""
    due = (select(Notification.id).where(Notification.status == "waiting", Notification.next_attempt_at <= now,
                                         Notification.channel.in_(channels))
           .order_by(case((Notification.kind == "digest", 1), else_=0), Notification.id).limit(20))
    for notification_id in session.scalars(due):
        taken = session.execute(update(Notification)
                                .where(Notification.id == notification_id, Notification.status == "waiting")
                                .values(status="sending", worker=worker, lease_until=lease_until,
                                        attempts=Notification.attempts + 1, last_attempt_at=now))
        if taken.rowcount == 1:
            return session.get(Notification, notification_id)
    return None


def skip_channel(session: Session, channel: str, reason: str) -> int:
    """Mark every waiting notification of a channel that is not set up as skipped (nothing to send it through)."""
    return session.execute(update(Notification).where(Notification.channel == channel,
                                                      Notification.status == "waiting")
                           .values(status="skipped", last_error=reason)).rowcount


def finish(session: Session, notification_id: int, status: str, *, now: datetime, error: str | None = None,
           retry_at: datetime | None = None) -> Notification:
    """Record how one claimed notification ended: sent, failed or skipped; or waiting again until `retry_at`."""
    row = session.get(Notification, notification_id)
    row.status, row.worker, row.lease_until = status, None, None
    if error:
        row.last_error = error[:2000]
    if status == "sent":
        row.sent_at, row.last_error = now, None
    if retry_at is not None:
        row.next_attempt_at = retry_at
    return row


@dataclass(frozen=True)
class AlertFacts:
    """What a notice may say about an alert: never the person's name; the message text only when asked for."""

    alert_id: int
    kind: str
    severity: str | None
    category: str | None
    group: str | None
    raised_at: datetime
    status: str
    text: str | None


def alert_facts(session: Session, alert_id: int, *, with_text: bool) -> AlertFacts | None:
    """The alert as a notice describes it; None if it is gone (erased with its person)."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        return None
    person = session.get(Person, alert.person_id)
    text = None
    if with_text and alert.message_id is not None:
        text = session.scalar(select(Message.text).where(Message.id == alert.message_id))
    return AlertFacts(alert_id=alert.id, kind=alert.kind, severity=alert.severity, category=alert.category,
                      group=person.group_name if person else None, raised_at=alert.created_at, status=alert.status,
                      text=text)


def list_outbox(session: Session, *, statuses: tuple[str, ...] = STATUSES, limit: int = 200) -> list[Notification]:
    """The newest notifications first, for the Admin page."""
    return list(session.scalars(select(Notification).where(Notification.status.in_(statuses))
                                .order_by(Notification.id.desc()).limit(limit)))


def outbox_counts(session: Session) -> dict[str, int]:
    found = dict(session.execute(select(Notification.status, func.count()).group_by(Notification.status)).all())
    return {status: found.get(status, 0) for status in STATUSES}


@dataclass(frozen=True)
class ChannelHealth:
    channel: str
    last_sent_at: datetime | None
    failures: int  # failed attempts since the channel last delivered something
    oldest: datetime | None  # when the oldest notification still waiting after a failure was queued
    last_error: str | None
    given_up: int  # notifications of the last GIVEN_UP_SHOWN that will not be sent (refused, nobody to send to)

    @property
    def keeps_failing(self) -> bool:
        """THE definition of a channel that keeps failing (the Admin page's warning): FAILING_AFTER failed attempts
        with no success since."""
        return self.failures >= FAILING_AFTER

    @property
    def failing(self) -> bool:
        """Failing now, or gave up on something lately: an administrator should look."""
        return self.keeps_failing or self.given_up > 0


GIVEN_UP_SHOWN = timedelta(days=7)


def channel_health(session: Session, channel: str, *, now: datetime) -> ChannelHealth:
    """How a channel has been doing since it last delivered something, and what it gave up on lately."""
    mine = Notification.channel == channel
    last_sent = session.scalar(select(func.max(Notification.sent_at)).where(mine))
    retrying = [mine, Notification.status == "waiting", Notification.attempts > 0,
                Notification.last_error.is_not(None)]
    if last_sent is not None:
        retrying.append(Notification.last_attempt_at > last_sent)
    failures, first = session.execute(select(func.coalesce(func.sum(Notification.attempts), 0),
                                             func.min(Notification.created_at)).where(*retrying)).one()
    given_up = [mine, Notification.status == "failed", Notification.created_at >= now - GIVEN_UP_SHOWN]
    count = session.scalar(select(func.count()).where(*given_up))
    last_error = session.scalar(select(Notification.last_error).where(or_(and_(*retrying), and_(*given_up)))
                                .order_by(Notification.last_attempt_at.desc().nulls_last(),
                                          Notification.id.desc()).limit(1))
    return ChannelHealth(channel=channel, last_sent_at=last_sent, failures=int(failures), oldest=first,
                         last_error=last_error, given_up=int(count))
