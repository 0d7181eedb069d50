"""Privacy requests and limits as one step each, for the Admin page and the CLI alike: export or erase one person,
apply the retention period, and the record of who looked at whom. Erasing and retention delete, record the audit event
in the same transaction, then fold the WAL back into the database file, so no copy of what was deleted stays anywhere
in the files."""

from __future__ import annotations

import json

from sqlalchemy import Engine as Database

from aio_core.workflows.exports import Export
from db import privacy
from db.access import EVERYTHING, Scope
from db.session import compact, reading, writing


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


def person_export(db: Database, handle: str, *, scope: Scope = EVERYTHING) -> Export | None:
    """Everything stored about one person as JSON (a privacy request), or None when the scope holds nobody with that
    handle; its download is logged as export.person (`exports.record_download`)."""
    with reading(db) as session:
        data = privacy.export_person(session, handle, scope)
    if data is None:
        return None
    return Export(f"{handle}.json", json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"), 1,
                  "export.person", handle)


def viewed_person(db: Database, by: str, handle: str) -> None:
    """Log that `by` opened one person's messages (view.person)."""
    with writing(db) as session:
        privacy.audit(session, by, "view.person", handle)
