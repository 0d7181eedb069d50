"""What each dashboard page shows, fetched in one call: plain data, so the pages only render it and the same
figures are testable without Streamlit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from db.alerts import list_alerts
from db.models import Alert, Person
from db.rules import AlertRule, flagged_windows, rolling_share
from db.store import Overview, PersonSummary, daily_counts, list_messages, newest_message_time, overview, rank_people


@dataclass(frozen=True)
class OverviewReport:
    totals: Overview
    first_to_look_at: list[PersonSummary]
    activity: list[tuple[str, str | None, int]]  # (day, label, count)
    unlabelled: int


def overview_report(session: Session, *, days: int = 60, top: int = 5) -> OverviewReport:
    totals = overview(session)
    newest = newest_message_time(session)
    since = newest - timedelta(days=days) if newest else None
    ranked = [p for p in rank_people(session, days=7, limit=top) if p.open_alerts or p.negatives]
    return OverviewReport(totals, ranked, daily_counts(session, since=since), totals.messages - totals.labelled)


@dataclass(frozen=True)
class PersonPoint:
    message_id: int
    at: datetime
    text: str
    label: str | None
    confidence: float | None
    uncertain: bool | None
    source: str
    rolling_negative_share: float | None


@dataclass(frozen=True)
class PersonReport:
    person: Person
    points: list[PersonPoint]
    flagged: list[tuple[datetime, datetime]]  # windows where the rule fires
    alerts: list[Alert]


def person_report(session: Session, person_id: int, rule: AlertRule, *, limit: int = 2000) -> PersonReport:
    """A person's messages (newest `limit`), the rolling negative share, the rule's flagged windows, their alerts."""
    person = session.get(Person, person_id)
    messages = list_messages(session, person_id, limit=limit)
    labelled = [m for m in messages if m.label]
    series = [(m.created_at, m.label) for m in labelled]
    shares = dict(zip((m.id for m in labelled), rolling_share(series, rule.days), strict=True))
    points = [PersonPoint(m.id, m.created_at, m.text, m.label, m.confidence, m.uncertain, m.source,
                          shares.get(m.id)) for m in messages]
    return PersonReport(person, points, flagged_windows(series, rule), list_alerts(session, person_id=person_id))
