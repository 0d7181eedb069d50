"""Changing the sustained-negativity rule: an admin's setting, audited, after which alerts are re-checked with it,
only for the people the person changing it may read (a viewer's button can never withdraw another class's alerts).
Which rule is in force is `aio_core.workflows.alert_rule`."""

from __future__ import annotations

import dataclasses
import json

from sqlalchemy import Engine as Database

from aio_core.errors import UserError
from db.access import Scope
from db.alerts import refresh_all_alerts
from db.rules import AlertRule
from db.session import writing
from db.users import set_setting


def change_rule(db: Database, rule: AlertRule, *, by: str, scope: Scope, may_change: bool) -> int:
    """Save `rule` for everyone and re-check alerts with it within `scope`; returns how many people were checked.
    `may_change`: whether the person asking may change settings (admins)."""
    if not may_change:
        raise UserError("Only an administrator may change the alert rule; you can preview a rule on the chart.")
    if not 1 <= rule.last_k <= rule.last_n or rule.days < 1 or rule.min_messages < 1 or not 0 < rule.share <= 1:
        raise UserError("That rule cannot fire sensibly: K must be between 1 and N, and D, M and the share above 0.")
    with writing(db) as session:
        set_setting(session, "alert_rule", json.dumps(dataclasses.asdict(rule), sort_keys=True), by=by)
        return refresh_all_alerts(session, rule, scope=scope)
