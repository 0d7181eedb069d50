"""Privacy requests and limits as one step each, for the Admin page and the CLI alike: erase one person, apply the
retention period. Each deletes, records the audit event in the same transaction, then folds the WAL back into the
database file, so no copy of what was deleted stays anywhere in the files."""

from __future__ import annotations

import json

from sqlalchemy import Engine as Database

from db import privacy
from db.session import compact, writing


def erase(db: Database, handle: str, *, by: str) -> dict[str, int] | None:
    """Erase the person with `handle` (and their identity from the audit log); what was deleted, or None when
    nobody has that handle. The erasure is logged, without naming whom."""
    with writing(db) as session:
        deleted = privacy.erase_person(session, handle)
        if deleted is None:
            return None
        privacy.audit(session, by, "erase.person", None, json.dumps(deleted))
    compact(db)
    return deleted


def apply_retention(db: Database, days: int, *, by: str) -> int:
    """Delete messages older than `days` days (logged); returns how many."""
    with writing(db) as session:
        removed = privacy.apply_retention(session, days)
        privacy.audit(session, by, "retention.apply", None, f"{removed} messages older than {days} days")
    compact(db)
    return removed
