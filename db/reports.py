"""What each dashboard page shows, fetched in one call per view: plain data, filtered by what the viewer may see
(`Scope`) and by what they asked for (`Filters`), so the pages only render it and the same figures are testable
without Streamlit. The meaning of "negative", "open alert" and "flagged" comes from `db.labels` / `db.alerts`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, false, func, or_, select, true
from sqlalchemy.orm import Session

from db.access import EVERYTHING, Scope, messages_clause, people_clause
from db.alerts import ACTIVE, in_period, list_alerts, open_alert, urgent_risk_alert
from db.labels import effective_label, negatives, risky_count
from db.models import Alert, Batch, Message, Person, User, UserGroup
from db.rules import AlertRule, flagged_windows, negative_share, rolling_share

SOURCES = ("chat", "csv", "cli")


@dataclass(frozen=True)
class Filters:
    """What a viewer asked to see: groups (classes), sources, a date range, and a search over names and texts."""

    groups: tuple[str, ...] = ()  # empty = every group the scope allows
    sources: tuple[str, ...] = ()  # empty = every source
    since: datetime | None = None
    until: datetime | None = None  # inclusive: the whole of that moment
    search: str = ""
    commenters: bool = False  # also the authors of uploaded comments (by default students only: two populations)

    def messages(self) -> ColumnElement[bool]:
        conditions = [true()]
        if not self.commenters:  # a commenter's comments are not a student's messages
            conditions.append(or_(Message.person_id.is_(None),
                                  Message.person_id.in_(select(Person.id).where(Person.is_student))))
        if self.sources:
            conditions.append(Message.source.in_(self.sources))
        if self.since is not None:
            conditions.append(Message.created_at >= self.since)
        if self.until is not None:
            conditions.append(Message.created_at <= self.until)
        return and_(*conditions)

    @property
    def dated(self) -> bool:
        """A date range was chosen: it, not the rule's last D days, is the window every figure covers."""
        return self.since is not None or self.until is not None

    def alerts(self) -> ColumnElement[bool]:
        """The alerts these filters select by date (an alert's window overlapping the range)."""
        return in_period(self.since, self.until)

    def people(self, scope: Scope = EVERYTHING) -> ColumnElement[bool]:
        """The people these filters select; the search matches names, and texts only where `scope` may read them
        (a search is a way of reading: a match would tell who wrote a phrase)."""
        conditions = [true() if self.commenters else Person.is_student]
        if self.groups:
            conditions.append(Person.group_name.in_(self.groups))
        if self.search.strip():
            like = f"%{self.search.strip()}%"
            matches = [Person.handle.ilike(like), Person.display_name.ilike(like)]
            if scope.texts:
                matches.append(Person.id.in_(select(Message.person_id).where(Message.text.ilike(like),
                                                                             messages_clause(scope))))
            conditions.append(or_(*matches))
        return and_(*conditions)


NO_FILTERS = Filters()


@dataclass(frozen=True)
class Overview:
    messages: int
    labelled: int
    negatives: int
    risky: int  # messages assessed concern or urgent
    people: int
    open_alerts: int
    urgent_alerts: int  # open risk alerts of severity urgent
    batches: int

    @property
    def negative_share(self) -> float:
        return negative_share(self.negatives, self.labelled)


def _visible_messages(scope: Scope, filters: Filters) -> ColumnElement[bool]:
    """Messages the scope may read and the filters select (a person filter applies to people's messages only)."""
    narrowed = filters.groups or filters.search.strip()
    people = select(Person.id).where(people_clause(scope), filters.people(scope))
    return and_(messages_clause(scope), filters.messages(),
                Message.person_id.in_(people) if narrowed else true())


def overview(session: Session, scope: Scope = EVERYTHING, filters: Filters = NO_FILTERS) -> Overview:
    shown = _visible_messages(scope, filters)
    messages, labelled, negative, risky = session.execute(
        select(func.count(Message.id), func.count(effective_label()), negatives(),
               risky_count()).where(shown)).one()
    people = select(Person.id).where(people_clause(scope), filters.people(scope),
                                     Person.id.in_(select(Message.person_id).where(shown)))
    alerts = select(Alert).where(open_alert(), filters.alerts(), Alert.person_id.in_(people))
    batches = select(func.count(Batch.id)).where(true() if scope.batches else false())
    return Overview(messages=messages, labelled=labelled, negatives=negative or 0, risky=risky or 0,
                    people=session.scalar(select(func.count()).select_from(people.subquery())),
                    open_alerts=session.scalar(select(func.count()).select_from(alerts.subquery())),
                    urgent_alerts=session.scalar(select(func.count()).select_from(
                        alerts.where(urgent_risk_alert()).subquery())),
                    batches=session.scalar(batches))


def daily_counts(session: Session, scope: Scope = EVERYTHING, filters: Filters = NO_FILTERS,
                 person_id: int | None = None) -> list[tuple[str, str | None, int]]:
    """(day 'YYYY-MM-DD', effective label, count) per day and label; unlabelled messages count under None."""
    day = func.date(Message.created_at)
    label = effective_label()
    query = (select(day, label, func.count()).where(_visible_messages(scope, filters))
             .group_by(day, label).order_by(day))
    if person_id is not None:
        query = query.where(Message.person_id == person_id)
    return [(str(d), lab, n) for d, lab, n in session.execute(query).all()]


@dataclass(frozen=True)
class PersonSummary:
    person_id: int
    handle: str
    display_name: str
    group: str | None
    messages: int  # labelled messages in the window
    negatives: int
    risky: int  # risk messages in the window
    last_at: datetime | None
    open_alerts: int
    urgent: bool  # an open urgent risk alert
    sources: tuple[str, ...] = field(default=())

    @property
    def negative_share(self) -> float:
        return negative_share(self.negatives, self.messages)


def person_names(people: Iterable[tuple[str, str]]) -> dict[str, str]:
    """{handle: how a person is named on a page}: their display name, with the handle only where it tells two
    people of the same name apart (never "sam (sam)")."""
    people = list(people)
    counts = Counter(name for _, name in people)
    return {handle: name if counts[name] == 1 or name == handle else f"{name} ({handle})" for handle, name in people}


def rank_people(session: Session, *, days: int = 7, limit: int = 50, scope: Scope = EVERYTHING,
                filters: Filters = NO_FILTERS) -> list[PersonSummary]:
    """People to look at first: urgent risk alerts, then open alerts, then risk messages, then the highest negative
    share, over the filters' date range if one was chosen, else over the last `days` days (ending at the newest
    message shown, so imported history ranks the same as live chat). Alerts count when they fall in that range."""
    shown = _visible_messages(scope, filters)
    newest = session.scalar(select(func.max(Message.created_at)).where(shown))
    if newest is None:
        return []
    # With a date range, `shown` already holds exactly the range's messages.
    in_window = true() if filters.dated else Message.created_at > newest - timedelta(days=days)
    recent = (select(Message.person_id, func.count(effective_label()).label("n"), negatives().label("neg"),
                     risky_count().label("risky"),
                     func.max(Message.created_at).label("last"))
              .where(shown, in_window, Message.person_id.is_not(None))
              .group_by(Message.person_id).subquery())
    alerts = (select(Alert.person_id, func.count().label("open"),
                     func.max(case((urgent_risk_alert(), 1), else_=0))
                     .label("urgent"))
              .where(open_alert(), filters.alerts()).group_by(Alert.person_id).subquery())
    sources = (select(Message.person_id, Message.source).where(shown, Message.person_id.is_not(None))
               .distinct().subquery())
    present = select(sources.c.person_id)
    rows = session.execute(
        select(Person.id, Person.handle, Person.display_name, Person.group_name,
               func.coalesce(recent.c.n, 0), func.coalesce(recent.c.neg, 0), func.coalesce(recent.c.risky, 0),
               recent.c.last, func.coalesce(alerts.c.open, 0), func.coalesce(alerts.c.urgent, 0))
        .outerjoin(recent, recent.c.person_id == Person.id)
        .outerjoin(alerts, alerts.c.person_id == Person.id)
        .where(people_clause(scope), filters.people(scope), Person.id.in_(present))
    ).all()
    by_person: dict[int, list[str]] = {}
    for pid, source in session.execute(select(sources.c.person_id, sources.c.source)):
        by_person.setdefault(pid, []).append(source)
    summaries = [PersonSummary(person_id=r[0], handle=r[1], display_name=r[2], group=r[3], messages=r[4],
                               negatives=r[5], risky=r[6], last_at=r[7], open_alerts=r[8], urgent=bool(r[9]),
                               sources=tuple(sorted(by_person.get(r[0], ())))) for r in rows]
    summaries.sort(key=lambda s: (not s.urgent, -s.open_alerts, -s.risky, -s.negative_share, -s.negatives,
                                  s.display_name))
    return summaries[:limit]


@dataclass(frozen=True)
class OverviewReport:
    totals: Overview
    first_to_look_at: list[PersonSummary]
    activity: list[tuple[str, str | None, int]]  # (day, label, count)
    unlabelled: int
    urgent: list[Alert]  # open urgent and concern risk alerts, shown first with their message
    unrouted: list[Alert] = field(default_factory=list)  # for an admin: open alerts no teacher or counsellor sees


def overview_report(session: Session, *, scope: Scope = EVERYTHING, filters: Filters = NO_FILTERS, days: int = 60,
                    top: int = 5, rule_days: int = 7) -> OverviewReport:
    totals = overview(session, scope, filters)
    newest = session.scalar(select(func.max(Message.created_at)).where(_visible_messages(scope, filters)))
    window = (filters if filters.since or not newest
              else dataclasses.replace(filters, since=newest - timedelta(days=days)))
    ranked = [p for p in rank_people(session, days=rule_days, limit=top, scope=scope, filters=filters)
              if p.open_alerts or p.negatives or p.risky]
    people = select(Person.id).where(people_clause(scope), filters.people(scope))
    urgent = [a for a in list_alerts(session, ACTIVE, person_ids=people, since=filters.since, until=filters.until)
              if a.kind == "risk"]
    return OverviewReport(totals=totals, first_to_look_at=ranked, activity=daily_counts(session, scope, window),
                          unlabelled=totals.messages - totals.labelled, urgent=urgent,
                          unrouted=unrouted_alerts(session) if scope.groups is None and scope.people else [])


def unrouted_alerts(session: Session) -> list[Alert]:
    """Open alerts that no teacher or counsellor would see: on a person in no group, or in a group that no active
    teacher or counsellor has. Only an admin (who reads everything) can route them, so the admin is shown them.
    Commenters of uploaded exports are not a school's people and are not routed."""
    routed = (select(UserGroup.group_name).join(User, User.id == UserGroup.user_id)
              .where(User.role.in_(("counsellor", "teacher")), User.disabled.is_(False)))
    people = select(Person.id).where(Person.is_student,
                                     or_(Person.group_name.is_(None), Person.group_name.not_in(routed)))
    return list_alerts(session, ACTIVE, person_ids=people)


@dataclass(frozen=True)
class PersonPoint:
    message_id: int
    at: datetime
    text: str | None  # None when the viewer may not read texts
    label: str | None  # the effective label
    model_label: str | None
    corrected: bool
    confidence: float | None
    p_negative: float | None
    uncertain: bool | None
    risk: str | None  # the effective risk (a person's review when there is one)
    risk_category: str | None
    source: str
    rolling_negative_share: float | None


@dataclass(frozen=True)
class PersonReport:
    person: Person
    points: list[PersonPoint]
    flagged: list[tuple[datetime, datetime]]  # windows where the rule fires
    alerts: list[Alert]


def person_report(session: Session, handle: str, rule: AlertRule, *, scope: Scope = EVERYTHING,
                  filters: Filters = NO_FILTERS, limit: int = 2000) -> PersonReport | None:
    """A person's messages (newest `limit` within the filters), the rolling negative share, the rule's flagged
    windows and their alerts; None if the scope may not read this person."""
    person = session.scalar(select(Person).where(Person.handle == handle, people_clause(scope)))
    if person is None:
        return None
    query = (select(Message).where(Message.person_id == person.id, filters.messages())
             .order_by(Message.created_at.desc(), Message.id.desc()).limit(limit))
    messages = list(session.scalars(query))[::-1]
    labelled = [m for m in messages if m.effective_label]
    series = [(m.created_at, m.effective_label) for m in labelled]
    shares = dict(zip((m.id for m in labelled), rolling_share(series, rule.days), strict=True))
    points = [PersonPoint(message_id=m.id, at=m.created_at, text=m.text if scope.texts else None,
                          label=m.effective_label, model_label=m.label, corrected=m.human_label is not None,
                          confidence=m.confidence, p_negative=m.p_negative, uncertain=m.uncertain,
                          risk=m.effective_risk, risk_category=m.effective_risk_category, source=m.source,
                          rolling_negative_share=shares.get(m.id))
              for m in messages]
    return PersonReport(person=person, points=points, flagged=flagged_windows(series, rule),
                        alerts=list_alerts(session, person_id=person.id))


def groups(session: Session, scope: Scope = EVERYTHING) -> list[str]:
    """The groups (classes) the scope may read, for filter choices."""
    return [g for g in session.scalars(select(Person.group_name).where(people_clause(scope),
                                                                       Person.group_name.is_not(None))
                                       .distinct().order_by(Person.group_name))]
