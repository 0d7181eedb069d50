"""What a stored label means, defined once for every query, page, alert and export.

- The effective label: a person's correction when there is one, else the model's label. The model's label is kept.
- Negative: the effective label is negative.
- The effective risk: a person's review when there is one ("not a risk" included), else the assessment's.
- A risk message: the effective risk is concern or urgent (negativity is not risk, and risk is not negativity).
- Flagged: a risk message, or negative and confident (corrected to negative by a person, or the model's negative
  not marked uncertain, or at least as confident as a reviewer's chosen threshold).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, case, func, or_

from db.models import Message

RISK_LEVELS = ("none", "concern", "urgent")  # in rising order of severity
RISKY = RISK_LEVELS[1:]  # the levels that make a message a risk message


def severity_rank(level: ColumnElement[str | None]) -> ColumnElement[int]:
    """THE order of severity, for sorting: urgent first, then concern, then anything else."""
    return case(*((level == name, rank) for rank, name in enumerate(reversed(RISKY))), else_=len(RISKY))


def effective_label() -> ColumnElement[str | None]:
    return Message.effective_label  # defined on the model, for loaded messages and queries alike


def is_negative() -> ColumnElement[bool]:
    return effective_label() == "negative"


def negatives() -> ColumnElement[int]:
    """Count of negative messages, for aggregates."""
    return func.sum(case((is_negative(), 1), else_=0))


def effective_risk() -> ColumnElement[str | None]:
    return Message.effective_risk  # defined on the model, for loaded messages and queries alike


def effective_risk_category() -> ColumnElement[str | None]:
    return Message.effective_risk_category


def is_risky() -> ColumnElement[bool]:
    return effective_risk().in_(RISKY)


def risky_count() -> ColumnElement[int]:
    """Count of risk messages, for aggregates."""
    return func.sum(case((is_risky(), 1), else_=0))


def flagged(threshold: float | None = None) -> ColumnElement[bool]:
    confident = Message.uncertain.is_(False) if threshold is None else Message.confidence >= threshold
    model_negative = and_(Message.human_label.is_(None), Message.label == "negative", confident)
    return or_(Message.human_label == "negative", model_negative, is_risky())
