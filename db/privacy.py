"""Privacy requests and limits: everything about one person (subject access), erasing one person, deleting what is
older than the retention period, and the audit log that records who read or changed what.

Erasing deletes rows and takes the person out of the audit log; `db.session.compact` then folds the WAL back into the
file, and SQLite's secure_delete overwrites freed pages, so no copy of an erased text stays in the database file.
Retention is compacted the same way (aio_core.workflows.privacy).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from db.access import EVERYTHING, Scope
from db.models import (
    Alert,
    AlertEvent,
    AuditEvent,
    Correction,
    LabelVersion,
    Message,
    Notification,
    Person,
    RiskCorrection,
    utcnow,
)
from db.store import get_person, list_messages


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_person(session: Session, handle: str, scope: Scope = EVERYTHING) -> dict | None:
    """Everything stored about one person, as plain JSON-ready data (for a subject-access request)."""
    person = get_person(session, handle, scope)
    if person is None:
        return None
    messages = list_messages(session, person.id)
    alerts = session.scalars(select(Alert).where(Alert.person_id == person.id).order_by(Alert.id)).all()
    notified: dict[int, list[Notification]] = {}
    for notification in session.scalars(select(Notification).where(Notification.alert_id.in_([a.id for a in alerts]))
                                        .order_by(Notification.id)):
        notified.setdefault(notification.alert_id, []).append(notification)
    reviews: dict[int, list[RiskCorrection]] = {}
    for review in session.scalars(select(RiskCorrection).where(RiskCorrection.message_id.in_(
            select(Message.id).where(Message.person_id == person.id))).order_by(RiskCorrection.id)):
        reviews.setdefault(review.message_id, []).append(review)
    return {
        "person": {"handle": person.handle, "display_name": person.display_name, "group": person.group_name,
                   "created_at": _iso(person.created_at)},
        "messages": [{"id": m.id, "source": m.source, "text": m.text, "label": m.label, "confidence": m.confidence,
                      "p_negative": m.p_negative, "uncertain": m.uncertain, "model": m.model,
                      "fingerprint": m.fingerprint, "prompt_version": m.prompt_version, "head_id": m.head_id,
                      "human_label": m.human_label, "risk": m.risk, "risk_category": m.risk_category,
                      "risk_version": m.risk_version, "risk_head_id": m.risk_head_id, "human_risk": m.human_risk,
                      "human_risk_category": m.human_risk_category, "created_at": _iso(m.created_at),
                      "batch_id": m.batch_id,
                      "row_index": m.row_index, "reply": m.reply, "reply_kind": m.reply_kind,
                      "reply_version": m.reply_version,
                      "reply_interrupted": m.reply_interrupted,
                      "corrections": [{"from": c.from_label, "to": c.to_label, "by": c.by, "at": _iso(c.at),
                                       "note": c.note, "undone_at": _iso(c.undone_at)} for c in m.corrections],
                      "risk_reviews": [{"from": f"{r.from_level} {r.from_category or ''}".strip(),
                                        "to": f"{r.to_level} {r.to_category or ''}".strip(), "by": r.by,
                                        "at": _iso(r.at), "note": r.note, "undone_at": _iso(r.undone_at)}
                                       for r in reviews.get(m.id, [])]}
                     for m in messages],
        "alerts": [{"id": a.id, "kind": a.kind, "severity": a.severity, "category": a.category, "rule": a.rule,
                    "status": a.status, "negative_share": a.negative_share, "window_start": _iso(a.window_start),
                    "window_end": _iso(a.window_end), "note": a.note,
                    "events": [{"from": e.from_status, "to": e.to_status, "by": e.by, "note": e.note,
                                "at": _iso(e.at)} for e in a.events],
                    # who was told about it (a subject access request names the recipients of their data)
                    "notified": [{"channel": n.channel, "to": n.recipient or n.channel, "step": n.step,
                                  "status": n.status, "sent_at": _iso(n.sent_at)} for n in notified.get(a.id, [])]}
                   for a in alerts],
    }


def _erase_messages(session: Session, message_ids: select) -> dict[str, int]:
    versions = session.execute(delete(LabelVersion).where(LabelVersion.message_id.in_(message_ids))).rowcount
    corrections = session.execute(delete(Correction).where(Correction.message_id.in_(message_ids))).rowcount
    reviews = session.execute(delete(RiskCorrection).where(RiskCorrection.message_id.in_(message_ids))).rowcount
    return {"label_versions": versions, "corrections": corrections, "risk_reviews": reviews}


ERASED = "(erased)"


def _forget_in_audit(session: Session, person: Person, alert_ids: list[str]) -> None:
    """Keep every audit event about `person`, but not who it was about: their handle and name become ERASED
    wherever they appear, and staff notes on their alerts (which name them, or say what happened) are dropped."""
    names = sorted({n for n in (person.handle, person.display_name) if n and len(n) >= 3}, key=len, reverse=True)
    named = [func.lower(AuditEvent.detail).contains(n.lower()) for n in names] + \
            [func.lower(AuditEvent.target).contains(n.lower()) for n in names]
    about = or_(AuditEvent.target == person.handle, *named,
                and_(AuditEvent.action.like("alert.%"), AuditEvent.target.in_(alert_ids or ["-"])))
    for event in session.scalars(select(AuditEvent).where(about)):
        if event.action.startswith("alert.") and event.target in alert_ids:
            event.detail = None  # the note a member of staff wrote about this person
        if event.target == person.handle:
            event.target = ERASED
        for name in names:
            pattern = re.compile(re.escape(name), re.IGNORECASE)
            event.target = pattern.sub(ERASED, event.target) if event.target else event.target
            event.detail = pattern.sub(ERASED, event.detail) if event.detail else event.detail


def erase_person(session: Session, handle: str, scope: Scope = EVERYTHING) -> dict[str, int] | None:
    """Delete the person, their messages, corrections, label history, alerts and alert history, and forget them in
    the audit log (its events stay, without their handle, name or the notes about them). Returns what was deleted,
    by kind."""
    person = get_person(session, handle, scope)
    if person is None:
        return None
    _forget_in_audit(session, person, [str(i) for i in session.scalars(select(Alert.id)
                                                                      .where(Alert.person_id == person.id))])
    mine = select(Message.id).where(Message.person_id == person.id)
    counts = _erase_messages(session, mine)
    alert_ids = select(Alert.id).where(Alert.person_id == person.id)
    counts["alert_events"] = session.execute(delete(AlertEvent).where(AlertEvent.alert_id.in_(alert_ids))).rowcount
    session.execute(delete(Notification).where(Notification.alert_id.in_(alert_ids)))  # who was told, and when
    counts["alerts"] = session.execute(delete(Alert).where(Alert.person_id == person.id)).rowcount
    counts["messages"] = session.execute(delete(Message).where(Message.person_id == person.id)).rowcount
    session.execute(delete(Person).where(Person.id == person.id))
    counts["people"] = 1
    return counts


def apply_retention(session: Session, days: int, *, now: datetime | None = None) -> int:
    """Delete messages older than `days` days (and their corrections and label history); alerts whose messages
    are all gone go too, and people left with nothing. Returns how many messages were deleted."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    old = select(Message.id).where(Message.created_at < cutoff)
    _erase_messages(session, old)
    deleted = session.execute(delete(Message).where(Message.created_at < cutoff)).rowcount
    stale = select(Alert.id).where(Alert.window_end < cutoff)
    session.execute(delete(AlertEvent).where(AlertEvent.alert_id.in_(stale)))
    session.execute(delete(Notification).where(Notification.alert_id.in_(stale)))
    session.execute(delete(Alert).where(Alert.window_end < cutoff))
    session.execute(delete(Person).where(~Person.id.in_(select(Message.person_id).where(
        Message.person_id.is_not(None)))))
    return deleted


AUDIT_LIMITS = {"actor": 200, "action": 50, "target": 300, "detail": 2000}  # characters; longer is cut, marked


def _capped(value: str | None, limit: int) -> str | None:
    return value if value is None or len(value) <= limit else value[:limit - 1] + "…"


def audit(session: Session, actor: str, action: str, target: str | None = None, detail: str | None = None) -> None:
    """Record one action in the audit log (in the caller's transaction: the action and its record go together).
    Each field is capped (AUDIT_LIMITS), so nobody can grow the log by typing a long name."""
    fields = {"actor": actor, "action": action, "target": target, "detail": detail}
    session.add(AuditEvent(**{name: _capped(value, AUDIT_LIMITS[name]) for name, value in fields.items()}))


def read_audit(session: Session, *, limit: int = 1000, action: str | None = None,
               since: datetime | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    return list(session.scalars(query))


def audit_count(session: Session) -> int:
    return session.scalar(select(func.count(AuditEvent.id)))
