"""Teachers' digests: per group a teacher is responsible for, over one period (a day or a week), the messages and how
many were negative, new sustained-negativity alerts, the alerts still open, and how many people's trend turned
negative. Only counts: no name and no text, whoever reads the e-mail.

A person's trend turned when at least TURN_MIN labelled messages of theirs fall in the period and in the period
before it, and their negative share rose by at least TURN_RISE between the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from db.alerts import open_alert
from db.labels import effective_label, is_negative
from db.models import Alert, Message, Notification, Person, User, UserGroup
from db.outbox import add_notification, notification_key

TURN_MIN = 3
TURN_RISE = 0.25


@dataclass(frozen=True)
class GroupDigest:
    group: str
    messages: int
    negatives: int
    labelled: int
    new_alerts: int  # sustained-negativity alerts opened in the period
    open_alerts: int  # sustained-negativity alerts open at the time of sending
    turned: int  # people whose trend turned negative


def digest_readers(session: Session) -> list[tuple[User, list[str]]]:
    """Active teachers with an e-mail address and at least one group, each with their groups."""
    teachers = session.scalars(select(User).where(User.role == "teacher", User.disabled.is_(False),
                                                  User.email.is_not(None), User.email != "")
                               .order_by(User.username)).all()
    found = []
    for teacher in teachers:
        groups = sorted(session.scalars(select(UserGroup.group_name).where(UserGroup.user_id == teacher.id)))
        if groups:
            found.append((teacher, groups))
    return found


def groups_of(session: Session, username: str) -> list[str]:
    """A teacher's groups now (a digest reports the groups they have when it is sent, not when it was queued)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or user.disabled or user.role != "teacher":
        return []
    return sorted(session.scalars(select(UserGroup.group_name).where(UserGroup.user_id == user.id)))


def queue_digest(session: Session, user: User, *, start: datetime, end: datetime, now: datetime
                 ) -> Notification | None:
    """Queue one teacher's digest for the period ending at `end` (once, however many senders run)."""
    return add_notification(session, key=notification_key("digest", user.username, end.isoformat()), kind="digest",
                            channel="email", recipient=user.email, username=user.username,
                            reason="teacher of " + ", ".join(groups_of(session, user.username)), now=now,
                            period=(start, end))


def group_digests(session: Session, groups: list[str], *, start: datetime, end: datetime) -> list[GroupDigest]:
    """The figures of each of these groups over [start, end): nothing of any other group is read."""
    length = end - start
    people = select(Person.id, Person.group_name).where(Person.is_student, Person.group_name.in_(groups))
    mine = people.subquery()
    in_now = and_(Message.created_at >= start, Message.created_at < end)
    in_before = and_(Message.created_at >= start - length, Message.created_at < start)
    labelled = effective_label().is_not(None)
    rows = session.execute(
        select(mine.c.id, mine.c.group_name,
               func.sum(case((in_now, 1), else_=0)),
               func.sum(case((and_(in_now, labelled), 1), else_=0)),
               func.sum(case((and_(in_now, is_negative()), 1), else_=0)),
               func.sum(case((and_(in_before, labelled), 1), else_=0)),
               func.sum(case((and_(in_before, is_negative()), 1), else_=0)))
        .join(Message, Message.person_id == mine.c.id)
        .where(Message.created_at >= start - length, Message.created_at < end)
        .group_by(mine.c.id, mine.c.group_name)).all()
    figures = {g: {"messages": 0, "labelled": 0, "negatives": 0, "turned": 0} for g in groups}
    for _, group, count, now_labelled, now_negative, before_labelled, before_negative in rows:
        totals = figures[group]
        totals["messages"] += count or 0
        totals["labelled"] += now_labelled or 0
        totals["negatives"] += now_negative or 0
        if (now_labelled or 0) >= TURN_MIN and (before_labelled or 0) >= TURN_MIN and \
                now_negative / now_labelled - before_negative / before_labelled >= TURN_RISE:
            totals["turned"] += 1
    sentiment = and_(Alert.kind == "sentiment", Alert.person_id.in_(select(mine.c.id)))
    new = dict(session.execute(select(Person.group_name, func.count()).join(Alert, Alert.person_id == Person.id)
                               .where(sentiment, Alert.created_at >= start, Alert.created_at < end)
                               .group_by(Person.group_name)).all())
    still = dict(session.execute(select(Person.group_name, func.count()).join(Alert, Alert.person_id == Person.id)
                                 .where(sentiment, open_alert()).group_by(Person.group_name)).all())
    return [GroupDigest(group=g, messages=figures[g]["messages"], negatives=figures[g]["negatives"],
                        labelled=figures[g]["labelled"], new_alerts=new.get(g, 0), open_alerts=still.get(g, 0),
                        turned=figures[g]["turned"]) for g in groups]
