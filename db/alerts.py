"""Alerts: sustained negativity found by the rule, and risk messages raised at once; moved through open ->
acknowledged -> resolved by people, every move kept as an event (who, when, note).

Sustained negativity: one episode has one alert. While a person's alert is open or acknowledged, new messages update
it; once it is resolved, only messages stored after it count towards the next one. The rule is evaluated with SQL
aggregates over the (person, time, id) index for every person a write touched, in two set-based queries however
long their histories are: the write transaction that stores a chunk holds the lock for milliseconds. When the
evidence goes away (a correction, a re-score) an alert nobody has acted on yet is withdrawn (resolved by "rule");
if the evidence comes back within `REOPEN_WITHIN` that same alert reopens (a flapping alert stays one alert), and
later it is a new episode with a new alert.

Risk: a message whose effective risk is concern or urgent opens a risk alert of its own immediately, with no rule
window: a second risk message from the same person (of another category, or not) is its own alert, seen on its own.
A person's review of a message's risk takes effect at once: "not a risk" resolves its alert, "this is a risk" opens
(or reopens) one at the level and category they gave (`follow_risk_review`). A new risk alert's notifications are
queued in the outbox in the same transaction (`db.outbox.enqueue_alert`), so an alert is never stored without them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, DateTime, Integer, and_, case, func, literal, or_, select, tuple_, union_all
from sqlalchemy.orm import Session, joinedload

from db.access import EVERYTHING, Scope, people_clause
from db.errors import StoreError
from db.labels import RISKY, effective_label, is_negative, severity_rank
from db.models import Alert, AlertEvent, Message, Person, utcnow
from db.outbox import enqueue_alert
from db.phrases import (
    FIRES_AGAIN,
    REVIEWED_NONE,
    REVIEWED_NONE_NOTE,
    REVIEWED_RISK,
    REVIEWED_RISK_NOTE,
    RISK_RAISED,
    RISK_RULE,
    UNSPECIFIED,
    WITHDRAWN,
)
from db.rules import AlertRule, Counts, Finding, decide

STATUSES = ("open", "acknowledged", "resolved")
ACTIVE = ("open", "acknowledged")  # an "open alert" is one not resolved yet, whether or not someone acknowledged it
RULE = "rule"  # the actor of changes the product makes itself
# A withdrawn sentiment alert whose evidence comes back within this long reopens, rather than a new one opening:
# corrections and re-scores make an alert flap, and one episode should read as one alert with one history.
REOPEN_WITHIN = timedelta(hours=1)


def open_alert() -> ColumnElement[bool]:
    """THE definition of an open alert, for every count and list that shows one."""
    return Alert.status.in_(ACTIVE)


def urgent_risk_alert() -> ColumnElement[bool]:
    """THE definition of an urgent risk alert (what is escalated and counted as urgent), open or not."""
    return and_(Alert.kind == "risk", Alert.severity == RISKY[-1])


def in_period(since: datetime | None, until: datetime | None) -> ColumnElement[bool]:
    """THE definition of an alert within a date range: its window (first to last message) overlaps the range."""
    conditions = [literal(True)]
    if since is not None:
        conditions.append(Alert.window_end >= since)
    if until is not None:
        conditions.append(Alert.window_start <= until)
    return and_(*conditions)


def alert_order() -> tuple[ColumnElement, ...]:
    """THE order alerts are shown in: open before acknowledged before resolved; risk before sentiment, urgent
    first; then the most recently updated."""
    return (case((Alert.status == "open", 0), (Alert.status == "acknowledged", 1), else_=2),
            case((Alert.kind == "risk", 0), else_=1),
            severity_rank(Alert.severity),
            Alert.updated_at.desc(), Alert.id.desc())


def _lock_people(session: Session, person_ids: Sequence[int]) -> None:
    """Lock the people's rows in one order (FOR NO KEY UPDATE on a server database; SQLite's write transaction
    already holds the file), so two writers for one person cannot both open an alert."""
    session.execute(select(Person.id).where(Person.id.in_(person_ids)).order_by(Person.id)
                    .with_for_update(key_share=True))


def _in_groups(items: Sequence, size: int = 400) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass(frozen=True)
class _Window:
    newest: datetime
    since: datetime  # the rule's D days end at the newest message
    cut: tuple[datetime, int] | None  # (time, id) of the N-th newest message; None with fewer than N


def _windows(session: Session, baselines: dict[int, int], rule: AlertRule) -> dict[int, _Window]:
    """Per person: the newest labelled message after their baseline and where their last N begin, read from the
    index (no message is loaded)."""
    found: dict[int, _Window] = {}
    for group in _in_groups(sorted(baselines)):
        people = union_all(*[select(literal(p, Integer).label("pid"), literal(baselines[p], Integer).label("base"))
                             for p in group]).cte("wanted")
        mine = (Message.person_id == people.c.pid, Message.id > people.c.base, effective_label().is_not(None))
        newest = select(func.max(Message.created_at)).where(*mine).scalar_subquery()
        nth = (select(Message.created_at, Message.id).where(*mine)
               .order_by(Message.created_at.desc(), Message.id.desc()).offset(rule.last_n - 1).limit(1))
        rows = session.execute(select(people.c.pid, newest, nth.with_only_columns(Message.created_at)
                                      .scalar_subquery(), nth.with_only_columns(Message.id).scalar_subquery()))
        for pid, last, cut_time, cut_id in rows:
            if last is not None:
                found[pid] = _Window(newest=last, since=last - timedelta(days=rule.days),
                                     cut=(cut_time, cut_id) if cut_time is not None else None)
    return found


def _findings(session: Session, baselines: dict[int, int], rule: AlertRule) -> dict[int, Finding]:
    """The rule's finding at each person's newest message, from two aggregates per person in one query."""
    windows = _windows(session, baselines, rule)
    findings: dict[int, Finding] = {}
    for group in _in_groups(sorted(windows)):
        far = datetime(1, 1, 1)
        params = union_all(*[select(
            literal(p, Integer).label("pid"), literal(baselines[p], Integer).label("base"),
            literal(windows[p].since, DateTime).label("since"),
            literal(windows[p].cut[0] if windows[p].cut else far, DateTime).label("cut_t"),
            literal(windows[p].cut[1] if windows[p].cut else 0, Integer).label("cut_id")) for p in group]).cte("w")
        in_last = tuple_(Message.created_at, Message.id) >= tuple_(params.c.cut_t, params.c.cut_id)
        in_days = Message.created_at > params.c.since
        negative = is_negative()
        rows = session.execute(
            select(params.c.pid,
                   func.sum(case((in_last, 1), else_=0)), func.sum(case((and_(in_last, negative), 1), else_=0)),
                   func.min(case((in_last, Message.created_at))),
                   func.sum(case((in_days, 1), else_=0)), func.sum(case((and_(in_days, negative), 1), else_=0)),
                   func.min(case((in_days, Message.created_at))))
            .join(Message, Message.person_id == params.c.pid)
            .where(Message.id > params.c.base, effective_label().is_not(None), or_(in_last, in_days))
            .group_by(params.c.pid))
        for pid, last_n, last_neg, last_start, days_n, days_neg, days_start in rows:
            window = windows[pid]
            found = decide(Counts(newest=window.newest, last_total=last_n if window.cut is not None else 0,
                                  last_negative=last_neg, last_start=last_start, days_total=days_n,
                                  days_negative=days_neg, days_start=days_start), rule)
            if found is not None:
                findings[pid] = found
    return findings


def _move(alert: Alert, to_status: str, *, by: str, note: str | None) -> None:
    alert.events.append(AlertEvent(from_status=alert.status, to_status=to_status, by=by, note=note))
    alert.status = to_status
    alert.updated_at = utcnow()
    alert.updated_by = by


def _withdrawn(alert: Alert) -> bool:
    """Resolved by the product itself because its evidence went away (not by a person)."""
    return alert.status == "resolved" and alert.updated_by == RULE


def _reopenable(alert: Alert | None, now: datetime) -> bool:
    """Withdrawn recently enough that evidence coming back is the same episode (see REOPEN_WITHIN)."""
    return alert is not None and _withdrawn(alert) and now - alert.updated_at <= REOPEN_WITHIN


def refresh_alerts(session: Session, person_ids: Iterable[int], rule: AlertRule) -> int:
    """Re-evaluate the sustained-negativity rule for these people: open, update, withdraw or bring back their
    alerts. Returns how many people now have an open sentiment alert."""
    ids = sorted({p for p in person_ids if p is not None})
    if not ids:
        return 0
    _lock_people(session, ids)
    alerts = session.scalars(select(Alert).options(joinedload(Alert.events))
                             .where(Alert.person_id.in_(ids), Alert.kind == "sentiment")
                             .order_by(Alert.id)).unique().all()
    mine: dict[int, list[Alert]] = {}
    for alert in alerts:
        mine.setdefault(alert.person_id, []).append(alert)
    baselines, active = {}, {}
    for pid in ids:
        history = mine.get(pid, [])
        active[pid] = next((a for a in reversed(history) if a.status in ACTIVE), None)
        # Messages a resolved episode covered do not count towards the next; a withdrawn one never covered any.
        baselines[pid] = max((a.last_message_id for a in history if a.status == "resolved" and not _withdrawn(a)
                              and (active[pid] is None or a.id < active[pid].id)), default=0)
    findings = _findings(session, baselines, rule)
    newest_ids = dict(session.execute(select(Message.person_id, func.max(Message.id))
                                      .where(Message.person_id.in_(ids)).group_by(Message.person_id)).all())
    opened, now = 0, utcnow()
    for pid in ids:
        finding, alert = findings.get(pid), active[pid]
        if finding is None:
            if alert is not None and alert.status == "open" and alert.updated_by in (None, RULE):
                _move(alert, "resolved", by=RULE, note=WITHDRAWN.say())
            continue
        if alert is None:
            latest = mine.get(pid, [])[-1] if mine.get(pid) else None
            if _reopenable(latest, now):
                alert = latest  # the evidence came back at once: the same episode, not a new one
                _move(alert, "open", by=RULE, note=FIRES_AGAIN.say(rule=finding.rule))
            else:
                alert = Alert(person_id=pid, kind="sentiment", status="open", updated_by=RULE)
                session.add(alert)
                alert.events.append(AlertEvent(from_status=None, to_status="open", by=RULE, note=finding.rule))
                alert.window_start = finding.window_start
        alert.rule = finding.rule
        alert.window_start = min(alert.window_start or finding.window_start, finding.window_start)
        alert.window_end = finding.window_end
        alert.negatives, alert.total = finding.negatives, finding.total
        alert.negative_share = finding.share
        alert.last_message_id = newest_ids.get(pid, 0)
        alert.updated_at = utcnow()
        opened += 1
    return opened


def raise_risk_alerts(session: Session, messages: Sequence[Message]) -> list[Alert]:
    """Open a risk alert for every risk message that has none yet: at once, no rule window, one alert per message."""
    risky = [m for m in messages if m.effective_risk in RISKY and m.person_id is not None]
    if not risky:
        return []
    _lock_people(session, sorted({m.person_id for m in risky}))
    raised = set(session.scalars(select(Alert.message_id).where(Alert.kind == "risk",
                                                                Alert.message_id.in_([m.id for m in risky]))))
    opened = []
    for message in sorted(risky, key=lambda m: m.id):
        if message.id not in raised:
            opened.append(_open_risk_alert(session, message, by=RULE, note=_risk_note(message)))
    return opened


def _risk_note(message: Message) -> str:
    return RISK_RAISED.say(level=message.effective_risk, category=message.effective_risk_category or UNSPECIFIED,
                           id=message.id)


def _open_risk_alert(session: Session, message: Message, *, by: str, note: str) -> Alert:
    alert = Alert(person_id=message.person_id, kind="risk", status="open", rule=RISK_RULE.say(),
                  window_start=message.created_at, window_end=message.created_at, negatives=0, total=1,
                  negative_share=0.0, updated_by=by, severity=message.effective_risk,
                  category=message.effective_risk_category, message_id=message.id, last_message_id=message.id)
    session.add(alert)
    alert.events.append(AlertEvent(from_status=None, to_status="open", by=by, note=note))
    enqueue_alert(session, alert)
    return alert


def follow_risk_review(session: Session, message: Message, *, by: str, note: str = "") -> Alert | None:
    """Make the message's risk alert follow its effective risk after a person's review (or its undoing): open,
    reopen or re-grade it for a risk, resolve it for "not a risk". Returns the alert, if the message has one."""
    if message.person_id is None:
        return None
    _lock_people(session, [message.person_id])
    alert = session.scalar(select(Alert).where(Alert.kind == "risk", Alert.message_id == message.id)
                           .order_by(Alert.id.desc()))
    if message.effective_risk in RISKY:
        phrase = REVIEWED_RISK_NOTE if note.strip() else REVIEWED_RISK
    else:
        phrase = REVIEWED_NONE_NOTE if note.strip() else REVIEWED_NONE
    said = phrase.say(by=by, level=message.effective_risk,
                      category=message.effective_risk_category or UNSPECIFIED, note=note.strip())
    if message.effective_risk in RISKY:
        if alert is None:
            return _open_risk_alert(session, message, by=by, note=said)
        if alert.status == "resolved":
            _move(alert, "open", by=by, note=said)
        elif (alert.severity, alert.category) != (message.effective_risk, message.effective_risk_category):
            alert.events.append(AlertEvent(from_status=alert.status, to_status=alert.status, by=by, note=said))
        alert.severity, alert.category = message.effective_risk, message.effective_risk_category
        alert.updated_at = utcnow()
    elif alert is not None and alert.status in ACTIVE:
        _move(alert, "resolved", by=by, note=said)
    return alert


def list_alerts(session: Session, statuses: tuple[str, ...] = STATUSES, person_id: int | None = None,
                person_ids: Sequence[int] | None = None, since: datetime | None = None,
                until: datetime | None = None) -> list[Alert]:
    """Alerts in `alert_order`; for one person, or for the people a viewer may see; within a date range if given."""
    query = (select(Alert).options(joinedload(Alert.person), joinedload(Alert.events), joinedload(Alert.message))
             .where(Alert.status.in_(statuses), in_period(since, until)).order_by(*alert_order()))
    if person_id is not None:
        query = query.where(Alert.person_id == person_id)
    if person_ids is not None:
        query = query.where(Alert.person_id.in_(person_ids))
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
    _move(alert, to_status, by=by.strip(), note=note.strip() or None)
    alert.note = note.strip() or alert.note
    return alert


def refresh_all_alerts(session: Session, rule: AlertRule, *, scope: Scope = EVERYTHING) -> int:
    """Re-evaluate `rule` for every person with labelled messages that `scope` may read (never beyond it).
    Returns how many people were checked."""
    people = list(session.scalars(select(Message.person_id).where(
        Message.person_id.in_(select(Person.id).where(people_clause(scope)))).distinct()))
    for group in _in_groups(people):
        refresh_alerts(session, group, rule)
    return len(people)
