"""What people do to labels, risks and alerts, for every face: act on an alert, correct a label (or undo it), review a
message's risk (or undo it). Each is one transaction that moves the alerts it touches at once and writes its audit
event, so a page and the CLI cannot differ in what they record."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine as Database

from db import corrections
from db.access import EVERYTHING, Scope
from db.alerts import transition_alert
from db.privacy import audit
from db.rules import AlertRule
from db.session import writing


def act_on_alert(db: Database, alert_id: int, status: str, *, by: str, username: str, note: str = "") -> str:
    """Move an alert to `status` (open, acknowledged, resolved), kept in its history with who (`by`, as shown) and
    the note; logged as alert.<status> under the account's `username`."""
    with writing(db) as session:
        transition_alert(session, alert_id, status, by=by, note=note)
        audit(session, username, f"alert.{status}", str(alert_id), note or None)
    return status


@dataclass(frozen=True)
class Corrected:
    id: int  # the correction
    message_id: int
    from_label: str | None
    to_label: str


def _corrected(correction) -> Corrected:
    return Corrected(correction.id, correction.message_id, correction.from_label, correction.to_label)


def correct_label(db: Database, message_id: int, label: str, *, by: str, rule: AlertRule, scope: Scope = EVERYTHING,
                  note: str = "") -> Corrected:
    """A person's label for a message (the model's is kept); the person's alerts follow at once."""
    with writing(db) as session:
        return _corrected(corrections.correct_label(session, message_id, label, by=by, rule=rule, scope=scope,
                                                    note=note))


def undo_correction(db: Database, correction_id: int, *, by: str, rule: AlertRule) -> Corrected:
    """The label goes back to what it was before the correction; alerts follow at once."""
    with writing(db) as session:
        return _corrected(corrections.undo_correction(session, correction_id, by=by, rule=rule))


def review_risk(db: Database, message_id: int, level: str, category: str | None, *, by: str, username: str,
                note: str = "", scope: Scope = EVERYTHING) -> str:
    """A counsellor's verdict on a message's risk: its alert opens or closes at once; logged as risk.review."""
    with writing(db) as session:
        corrections.review_risk(session, message_id, level, category, by=by, note=note, scope=scope)
        audit(session, username, "risk.review", str(message_id), f"{level} {category or ''}".strip())
    return level
