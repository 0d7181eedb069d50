"""People correcting labels and reviewing risk, and the model re-labelling what it labelled before: all kept,
nothing overwritten.

A correction is stored beside the model's label (who, when, from what, to what, on which message); from then on the
effective label everywhere is the human one (`db.labels`). Undoing it restores the label before it, and both the
correction and its undoing stay in the history. A re-score replaces a message's model label with a new one and keeps
the old one as a `LabelVersion`, under the `Rescore` that says what changed. A risk review works like a correction:
"not a risk" or "a risk (level, category)", beside the assessment, its alert following at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.access import EVERYTHING, Scope, messages_clause
from db.alerts import follow_risk_review, refresh_alerts
from db.errors import StoreError
from db.labels import RISK_LEVELS
from db.models import Correction, LabelVersion, Message, Person, Rescore, RiskCorrection, utcnow
from db.phrases import REVIEW_UNDONE
from db.rules import AlertRule

LABELS = ("positive", "negative")


def _message(session: Session, message_id: int, scope: Scope) -> Message:
    message = session.scalar(select(Message).where(Message.id == message_id, messages_clause(scope)))
    if message is None:
        raise StoreError(f"There is no message number {message_id} you may change; it may have been erased.")
    return message


def correct_label(session: Session, message_id: int, to_label: str, *, by: str, rule: AlertRule, note: str = "",
                  scope: Scope = EVERYTHING) -> Correction:
    """Store a person's correction of a message's label and re-evaluate that person's alerts."""
    if to_label not in LABELS:
        raise StoreError(f"A label is positive or negative, not {to_label!r}.")
    if not by.strip():
        raise StoreError("Say who is correcting this label, so the history shows it.")
    message = _message(session, message_id, scope)
    correction = Correction(message_id=message.id, from_label=message.effective_label,
                            to_label=to_label, by=by.strip(), note=note.strip() or None)
    session.add(correction)
    message.human_label = to_label
    session.flush()
    if message.person_id is not None:
        refresh_alerts(session, [message.person_id], rule)
    return correction


def undo_correction(session: Session, correction_id: int, *, by: str, rule: AlertRule,
                    scope: Scope = EVERYTHING) -> Correction:
    """Undo a correction: the message's label goes back to what it was before it (the earlier correction still in
    force, or the model's label)."""
    correction = session.get(Correction, correction_id)
    if correction is None or correction.undone_at is not None:
        raise StoreError(f"Correction {correction_id} does not exist or was undone already.")
    message = _message(session, correction.message_id, scope)
    correction.undone_at, correction.undone_by = utcnow(), by.strip() or "unknown"
    standing = session.scalar(select(Correction).where(Correction.message_id == message.id,
                                                       Correction.undone_at.is_(None))
                              .order_by(Correction.id.desc()))
    message.human_label = standing.to_label if standing else None
    session.flush()
    if message.person_id is not None:
        refresh_alerts(session, [message.person_id], rule)
    return correction


@dataclass(frozen=True)
class Taught:
    """A correction in force, as a training example."""

    message_id: int
    text: str
    label: str  # the human label
    model_label: str | None
    at: datetime


def corrections_in_force(session: Session) -> list[Taught]:
    """Every message whose label a person corrected (and did not undo), with the label they gave it."""
    rows = session.execute(
        select(Message.id, Message.text, Message.human_label, Message.label, func.max(Correction.at))
        .join(Correction, Correction.message_id == Message.id)
        .where(Message.human_label.is_not(None), Correction.undone_at.is_(None))
        .group_by(Message.id, Message.text, Message.human_label, Message.label).order_by(Message.id))
    return [Taught(message_id=r[0], text=r[1], label=r[2], model_label=r[3], at=r[4]) for r in rows]


def corrections_count(session: Session) -> int:
    """How many messages carry a person's label now (corrections in force)."""
    return session.scalar(select(func.count(Message.id)).where(Message.human_label.is_not(None))) or 0


def list_corrections(session: Session, scope: Scope = EVERYTHING, limit: int = 500) -> list[Correction]:
    return list(session.scalars(select(Correction).join(Message, Message.id == Correction.message_id)
                                .where(messages_clause(scope)).order_by(Correction.id.desc()).limit(limit)))


def messages_to_rescore(session: Session, *, batch_id: int | None = None, handle: str | None = None,
                        zero_shot_of: str | None = None) -> list[tuple[int, str]]:
    """(id, text) of the labelled messages of one batch, of one person, or labelled zero-shot (no head) by the
    weights with this fingerprint."""
    query = select(Message.id, Message.text).where(Message.label.is_not(None)).order_by(Message.id)
    if zero_shot_of is not None:
        query = query.where(Message.head_id.is_(None), Message.fingerprint == zero_shot_of)
    elif batch_id is not None:
        query = query.where(Message.batch_id == batch_id)
    elif handle is not None:
        query = query.where(Message.person_id.in_(select(Person.id).where(Person.handle == handle)))
    else:
        raise StoreError("Say what to re-score: a batch or a person.")
    return [tuple(r) for r in session.execute(query)]


MODEL_FIELDS = ("label", "confidence", "p_negative", "uncertain", "model", "fingerprint", "prompt_version", "head_id")


def zero_shot_count(session: Session, fingerprint: str) -> int:
    """How many stored labels these weights gave zero-shot (before their head was fitted): what a re-score would
    label again."""
    return session.scalar(select(func.count(Message.id)).where(
        Message.label.is_not(None), Message.head_id.is_(None), Message.fingerprint == fingerprint)) or 0


def apply_rescore(session: Session, labels: dict[int, dict[str, object]], *, scope: str, target: str, by: str,
                  rule: AlertRule) -> Rescore:
    """Replace these messages' model labels with new ones, keeping each old label as a version under one Rescore
    that counts what changed; people's corrections stay in force. Re-evaluates the people's alerts."""
    first = next(iter(labels.values()), {})
    rescore = Rescore(scope=scope, target=target, head_id=first.get("head_id"),
                      prompt_version=str(first.get("prompt_version", "")), rows=len(labels), by=by)
    session.add(rescore)
    session.flush()
    messages = session.scalars(select(Message).where(Message.id.in_(list(labels)))).all()
    for message in messages:
        new = labels[message.id]
        session.add(LabelVersion(message_id=message.id, rescore_id=rescore.id,
                                 **{name: getattr(message, name) for name in MODEL_FIELDS}))
        rescore.changed += new["label"] != message.label
        for name in MODEL_FIELDS:
            setattr(message, name, new.get(name))
    session.flush()
    refresh_alerts(session, {m.person_id for m in messages}, rule)
    return rescore


# ---- risk reviews --------------------------------------------------------------------------------------------------



def review_risk(session: Session, message_id: int, level: str, category: str | None, *, by: str, note: str = "",
                scope: Scope = EVERYTHING) -> RiskCorrection:
    """Store a person's review of a message's risk ("none" = not a risk); its alert follows at once."""
    if level not in RISK_LEVELS:
        raise StoreError(f"A risk level is none, concern or urgent, not {level!r}.")
    if (level == "none") != (category is None):
        raise StoreError("A risk needs its category (self-harm, harm-to-others, abuse or bullying); "
                         "\"not a risk\" has none.")
    if not by.strip():
        raise StoreError("Say who is reviewing this message, so the history shows it.")
    message = _message(session, message_id, scope)
    review = RiskCorrection(message_id=message.id, from_level=message.effective_risk,
                            from_category=message.effective_risk_category, to_level=level, to_category=category,
                            by=by.strip(), note=note.strip() or None)
    session.add(review)
    message.human_risk, message.human_risk_category = level, category
    session.flush()
    follow_risk_review(session, message, by=by.strip(), note=note)
    return review


def undo_risk_review(session: Session, review_id: int, *, by: str, scope: Scope = EVERYTHING) -> RiskCorrection:
    """Undo a risk review: the message's risk goes back to the review before it, or to the assessment's."""
    review = session.get(RiskCorrection, review_id)
    if review is None or review.undone_at is not None:
        raise StoreError(f"Risk review {review_id} does not exist or was undone already.")
    message = _message(session, review.message_id, scope)
    review.undone_at, review.undone_by = utcnow(), by.strip() or "unknown"
    standing = session.scalar(select(RiskCorrection).where(RiskCorrection.message_id == message.id,
                                                           RiskCorrection.undone_at.is_(None))
                              .order_by(RiskCorrection.id.desc()))
    message.human_risk = standing.to_level if standing else None
    message.human_risk_category = standing.to_category if standing else None
    session.flush()
    follow_risk_review(session, message, by=by.strip() or "unknown", note=REVIEW_UNDONE.say(id=review_id))
    return review


@dataclass(frozen=True)
class RiskTaught:
    """A risk review in force, as a training example for the risk head."""

    message_id: int
    text: str
    level: str
    category: str | None


def risk_reviews_in_force(session: Session) -> list[RiskTaught]:
    """Every message whose risk a person reviewed (and did not undo), with the level and category they gave."""
    rows = session.execute(
        select(Message.id, Message.text, Message.human_risk, Message.human_risk_category)
        .where(Message.human_risk.is_not(None),
               Message.id.in_(select(RiskCorrection.message_id).where(RiskCorrection.undone_at.is_(None))))
        .order_by(Message.id))
    return [RiskTaught(message_id=r[0], text=r[1], level=r[2], category=r[3]) for r in rows]


def list_risk_reviews(session: Session, scope: Scope = EVERYTHING, limit: int = 500) -> list[RiskCorrection]:
    return list(session.scalars(select(RiskCorrection).join(Message, Message.id == RiskCorrection.message_id)
                                .where(messages_clause(scope)).order_by(RiskCorrection.id.desc()).limit(limit)))
