"""Uploaded files as batches: found again by content hash and options (so a rerun resumes instead of duplicating),
with progress recorded in the same transaction as each chunk of rows, and read back exactly as a reviewer asked to
see them (`BatchView`): the page's table and its download come from the same query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Subquery, case, false, func, literal, select, true, union_all
from sqlalchemy.orm import Session

from db.access import EVERYTHING, Scope, batches_clause
from db.alerts import open_alert
from db.labels import (
    effective_label,
    effective_risk,
    effective_risk_category,
    flagged,
    negatives,
    risky_count,
    severity_rank,
)
from db.models import COMMENTER_PREFIX, Alert, Batch, BatchReuse, Message, Person, utcnow


def find_batch(session: Session, sha256: str, options: str) -> Batch | None:
    return session.scalar(select(Batch).where(Batch.sha256 == sha256, Batch.options == options)
                          .order_by(Batch.id.desc()))


def create_batch(session: Session, *, file_name: str, sha256: str, options: str, row_count: int, model: str,
                 prompt_version: str, header: list[str], owner: str | None = None) -> Batch:
    batch = Batch(file_name=file_name, sha256=sha256, options=options, row_count=row_count, model=model,
                  prompt_version=prompt_version, status="running", header=json.dumps(header, ensure_ascii=False),
                  owner=owner)
    session.add(batch)
    session.flush()
    return batch


def record_progress(session: Session, batch_id: int, *, rows: int, blank: int, duplicate: int, seconds: float
                    ) -> None:
    batch = session.get(Batch, batch_id)
    batch.rows_done += rows
    batch.rows_blank += blank
    batch.rows_duplicate += duplicate
    batch.seconds += seconds


def settle_counts(session: Session, batch_id: int, *, rows_done: int, blank: int) -> None:
    """Set the counters outright where blocks may have been counted out of order or twice (a parallel run)."""
    batch = session.get(Batch, batch_id)
    batch.rows_done, batch.rows_blank = rows_done, blank


def finish_batch(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    batch.status = "complete"
    batch.finished_at = utcnow()
    return batch


def reopen_batch(session: Session, batch_id: int) -> None:
    """A cancelled batch screened again: it runs on from its last stored chunk."""
    session.get(Batch, batch_id).status = "running"


def list_batches(session: Session, scope: Scope = EVERYTHING, limit: int = 50) -> list[Batch]:
    """The newest batches this scope reads (a moderator: their own uploads only)."""
    return list(session.scalars(select(Batch).where(batches_clause(scope, Batch.owner))
                                .order_by(Batch.id.desc()).limit(limit)))


def _rows_of(batch_id: int) -> Subquery:
    """Every stored row of a batch, in one shape: (message id, row number, the row's cells, reused). A row is its
    own message, or a message stored earlier that this file holds again (`BatchReuse`)."""
    return union_all(
        select(Message.id.label("message_id"), Message.row_index.label("row"), Message.cells.label("cells"),
               false().label("reused")).where(Message.batch_id == batch_id),
        select(BatchReuse.message_id, BatchReuse.row_index, BatchReuse.cells, literal(True))
        .where(BatchReuse.batch_id == batch_id)).subquery()


@dataclass(frozen=True)
class BatchCounts:
    labelled: int  # every row of the batch with a label, reused rows included
    labelled_now: int  # labelled and stored by this batch (the rest were stored from an earlier upload)
    reused: int  # rows whose message an earlier upload stored: shown with its labels, not labelled again
    negatives: int
    flagged: int
    risky: int
    people_alerted: int  # this batch's commenters with an open alert (never students: uploads cannot reach them)
    blank: int
    duplicate: int


def batch_counts(session: Session, batch_id: int) -> BatchCounts:
    """The figures of every row of the batch, the rows reused from earlier uploads included."""
    rows = _rows_of(batch_id)
    labelled, now, reused, negative, flags, risky = session.execute(
        select(func.count(effective_label()),
               func.sum(case((effective_label().is_not(None) & ~rows.c.reused, 1), else_=0)),
               func.sum(case((rows.c.reused, 1), else_=0)),
               negatives(), func.sum(case((flagged(), 1), else_=0)), risky_count())
        .select_from(rows).join(Message, Message.id == rows.c.message_id)).one()
    authors = (select(Message.person_id).select_from(rows).join(Message, Message.id == rows.c.message_id)
               .where(Message.person_id.is_not(None)))
    alerted = session.scalar(select(func.count(func.distinct(Alert.person_id)))
                             .where(Alert.person_id.in_(authors), open_alert()))
    batch = session.get(Batch, batch_id)
    return BatchCounts(labelled=labelled or 0, labelled_now=now or 0, reused=reused or 0, negatives=negative or 0,
                       flagged=flags or 0, risky=risky or 0, people_alerted=alerted or 0, blank=batch.rows_blank,
                       duplicate=batch.rows_duplicate)


ORDERS = ("row", "negative", "risk")


@dataclass(frozen=True)
class BatchView:
    """How a reviewer looks at a batch: flagged rows only or all, the confidence that flags a negative (None = the
    uncertain mark decides), and the order (file order, most negative first, risk first)."""

    flagged_only: bool = False
    threshold: float | None = None
    order: str = "row"


def _negativity() -> ColumnElement[float]:
    """How negative a row is, for sorting: a person's correction decides; otherwise p(negative)."""
    return case((Message.human_label == "negative", 2.0), (Message.human_label == "positive", -1.0),
                else_=func.coalesce(Message.p_negative, 0.0))


@dataclass(frozen=True)
class BatchRow:
    message_id: int
    row: int
    person: str | None
    text: str
    label: str | None  # the effective label
    model_label: str | None
    corrected: bool
    confidence: float | None
    uncertain: bool | None
    risk: str | None
    risk_category: str | None
    flagged: bool
    cells: list[str] | None  # the row's original cells, in the file's column order
    reused: bool = False  # stored by an earlier upload: its labels are that message's, not labelled again


def batch_rows(session: Session, batch_id: int, view: BatchView | None = None, *, limit: int | None = None
               ) -> Iterator[BatchRow]:
    """The stored rows of one batch as `view` asks (those reused from an earlier upload included, with that
    message's labels and this file's cells), streamed, so a 50,000-row batch is never held in memory."""
    view = view or BatchView()
    flag = flagged(view.threshold)
    rows = _rows_of(batch_id)
    order = {"row": (rows.c.row,),
             "negative": (_negativity().desc(), rows.c.row),
             "risk": (severity_rank(effective_risk()),
                      _negativity().desc(), rows.c.row)}[view.order]
    query = (select(Message.id, rows.c.row, Person.handle, Message.text, effective_label(), Message.label,
                    Message.human_label, Message.confidence, Message.uncertain, effective_risk(),
                    effective_risk_category(), flag, rows.c.cells, rows.c.reused)
             .select_from(rows).join(Message, Message.id == rows.c.message_id)
             .outerjoin(Person, Person.id == Message.person_id)
             .where(flag if view.flagged_only else true())
             .order_by(*order).execution_options(yield_per=2000))
    if limit is not None:
        query = query.limit(limit)
    for r in session.execute(query):
        yield BatchRow(message_id=r[0], row=r[1], person=r[2] and r[2].removeprefix(COMMENTER_PREFIX), text=r[3],
                       label=r[4], model_label=r[5], corrected=r[6] is not None, confidence=r[7], uncertain=r[8],
                       risk=r[9], risk_category=r[10],
                       flagged=bool(r[11]), cells=json.loads(r[12]) if r[12] else None, reused=bool(r[13]))


def count_rows(session: Session, batch_id: int, view: BatchView | None = None) -> int:
    view = view or BatchView()
    flag = flagged(view.threshold)
    rows = _rows_of(batch_id)
    return session.scalar(select(func.count()).select_from(rows).join(Message, Message.id == rows.c.message_id)
                          .where(flag if view.flagged_only else true()))


def get_header(session: Session, batch_id: int) -> str | None:
    """The uploaded file's column names (JSON), as stored with the batch."""
    return session.scalar(select(Batch.header).where(Batch.id == batch_id))
