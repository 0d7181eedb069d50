"""Every CSV the product hands out, in one place, with one set of cell formatters: the rows of a screened batch (the
file's own columns, then ours), one person's messages, the alerts a viewer sees, and the audit log. Each export says
which audit event its download writes (`record_download`), so the Admin page, Trends and the CLI log the same thing.

Every file is formula-safe UTF-8 with a BOM (`csvfile.csv_bytes`): Excel reads Chinese, and a cell that starts like a
formula is neutralised.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine as Database

from aio_core.csvfile import csv_bytes
from db.access import EVERYTHING, Scope
from db.batches import BatchRow, BatchView, batch_rows, get_header
from db.models import Alert
from db.privacy import audit, read_audit
from db.reports import PersonReport
from db.session import reading, writing

RESULT_COLUMNS = ("label", "confidence", "uncertain", "risk", "risk_category", "flagged")


# ---- cells ------------------------------------------------------------------------------------------------

def when(value: datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def probability(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def yes_no(value: object) -> str:
    return "" if value is None else str(bool(value)).lower()


def text(value: object) -> object:
    return "" if value is None else value


# ---- the exports ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Export:
    """A file to hand out, and the audit event its download writes."""

    file_name: str
    data: bytes
    rows: int
    action: str  # export.batch | export.person_report | export.alerts | export.audit
    target: str | None = None


def _record(db: Database, by: str, action: str, target: str | None, rows: int) -> None:
    with writing(db) as session:
        audit(session, by, action, target, f"{rows} rows")


def record_download(db: Database, by: str, export: Export) -> None:
    """Log that `by` downloaded `export` (a download button's click, or the CLI writing it out)."""
    _record(db, by, export.action, export.target, export.rows)


def record_batch_download(db: Database, by: str, batch_id: int, rows: int) -> None:
    """Log a screened batch's download (its file is made when the button is pressed, so it is not at hand here)."""
    _record(db, by, "export.batch", str(batch_id), rows)


def result_cells(row: BatchRow | None) -> list[object]:
    """Our columns for one screened row; all empty for a blank text (reported and skipped, never sent to the model)."""
    if row is None:
        return [""] * len(RESULT_COLUMNS)
    return [text(row.label), probability(row.confidence), yes_no(row.uncertain), text(row.risk),
            text(row.risk_category), yes_no(row.flagged)]


def result_header(header: Sequence[str]) -> list[str]:
    """The file's own columns, then ours (renamed `<name>_aio` where the file already has that name)."""
    return [*header, *(c if c not in header else f"{c}_aio" for c in RESULT_COLUMNS)]


def batch_export(db: Database, batch_id: int, view: BatchView | None = None) -> Export:
    """Exactly the rows a reviewer sees for `view` (flagged only or all, their threshold, their order), from the
    store alone: the file's own columns (as uploaded), then ours. The page's table and this download are one query."""
    with reading(db) as session:
        stored_header = json.loads(get_header(session, batch_id) or "[]")
        rows = [[*(r.cells if r.cells is not None and stored_header else [r.row, r.person or "", r.text]),
                 *result_cells(r)] for r in batch_rows(session, batch_id, view)]
    header = result_header(list(stored_header) or ["row", "person", "text"])
    return Export(f"batch-{batch_id}.csv", csv_bytes(header, rows), len(rows), "export.batch", str(batch_id))


PERSON_COLUMNS = ["person", "handle", "group", "time", "source", "text", "label", "model_label", "corrected",
                  "confidence", "uncertain", "risk", "risk_category", "rolling_negative_share"]


def person_rows(report: PersonReport) -> list[list[object]]:
    """One person's report as rows: each message shown, oldest first, with its labels and the rolling negative
    share; the text is empty where the viewer may not read texts."""
    who = report.person
    return [[who.display_name, who.handle, text(who.group_name), when(p.at), p.source, text(p.text), text(p.label),
             text(p.model_label), yes_no(p.corrected), probability(p.confidence), yes_no(p.uncertain), text(p.risk),
             text(p.risk_category), probability(p.rolling_negative_share)] for p in report.points]


def person_export(report: PersonReport) -> Export:
    rows = person_rows(report)
    return Export(f"person-{report.person.handle}.csv", csv_bytes(PERSON_COLUMNS, rows), len(rows),
                  "export.person_report", report.person.handle)


ALERT_COLUMNS = ["id", "person", "handle", "kind", "severity", "status", "rule", "message", "from", "to", "by", "note"]


def alerts_export(alerts: Iterable[Alert], scope: Scope = EVERYTHING) -> Export:
    """The alerts a viewer is shown, as they are shown; a risk alert's message only where the viewer reads texts."""
    rows = [[a.id, a.person.display_name, a.person.handle, a.kind, text(a.severity), a.status, a.rule,
             a.message.text if a.kind == "risk" and a.message and scope.texts else "", when(a.window_start),
             when(a.window_end), text(a.updated_by), text(a.note)] for a in alerts]
    return Export("alerts.csv", csv_bytes(ALERT_COLUMNS, rows), len(rows), "export.alerts")


AUDIT_COLUMNS = ["at", "who", "action", "target", "detail"]


def audit_rows(db: Database, *, limit: int = 2000, action: str | None = None) -> list[list[object]]:
    """The audit log, newest first, as the table and the file show it."""
    with reading(db) as session:
        return [[when(e.at), e.actor, e.action, text(e.target), text(e.detail)]
                for e in read_audit(session, limit=limit, action=action)]


def audit_export(db: Database, *, limit: int = 10000, action: str | None = None) -> Export:
    rows = audit_rows(db, limit=limit, action=action)
    return Export("audit.csv", csv_bytes(AUDIT_COLUMNS, rows), len(rows), "export.audit")
