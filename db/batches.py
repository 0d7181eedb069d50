"""Uploaded files as batches: found again by content hash and options (so a rerun resumes instead of duplicating),
with progress recorded in the same transaction as each chunk of rows, and read back exactly as a reviewer asked to
see them (`BatchView`): the page's table and its download come from the same query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, select, true
from sqlalchemy.orm import Session

from db.access import EVERYTHING, Scope, batches_clause
from db.alerts import open_alert
from db.labels import effective_label, effective_risk, effective_risk_category, flagged, negatives, risky_count
from db.models import COMMENTER_PREFIX, Alert, Batch, Message, Person, utcnow


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


def get_batch(session: Session, batch_id: int, scope: Scope = EVERYTHING) -> Batch | None:
    return session.scalar(select(Batch).where(Batch.id == batch_id, batches_clause(scope, Batch.owner)))


def list_batches(session: Session, scope: Scope = EVERYTHING, limit: int = 50) -> list[Batch]:
    """The newest batches this scope reads (a moderator: their own uploads only)."""
    return list(session.scalars(select(Batch).where(batches_clause(scope, Batch.owner))
                                .order_by(Batch.id.desc()).limit(limit)))


@dataclass(frozen=True)
class BatchCounts:
    labelled: int
    negatives: int
    flagged: int
    risky: int
    people_alerted: int  # this batch's commenters with an open alert (never students: uploads cannot reach them)
    blank: int
    duplicate: int


def batch_counts(session: Session, batch_id: int) -> BatchCounts:
    in_batch = Message.batch_id == batch_id
    labelled, negative, flags, risky = session.execute(
        select(func.count(effective_label()), negatives(), func.sum(case((flagged(), 1), else_=0)), risky_count())
        .where(in_batch)).one()
    authors = select(Message.person_id).where(in_batch, Message.person_id.is_not(None))
    alerted = session.scalar(select(func.count(func.distinct(Alert.person_id)))
                             .where(Alert.person_id.in_(authors), open_alert()))
    batch = session.get(Batch, batch_id)
    return BatchCounts(labelled=labelled or 0, negatives=negative or 0, flagged=flags or 0, risky=risky or 0,
                       people_alerted=alerted or 0, blank=batch.rows_blank, duplicate=batch.rows_duplicate)


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


def batch_rows(session: Session, batch_id: int, view: BatchView | None = None, *, limit: int | None = None
               ) -> Iterator[BatchRow]:
    """The stored rows of one batch as `view` asks, streamed, so a 50,000-row batch is never held in memory."""
    view = view or BatchView()
    flag = flagged(view.threshold)
    order = {"row": (Message.row_index,),
             "negative": (_negativity().desc(), Message.row_index),
             "risk": (case((effective_risk() == "urgent", 0), (effective_risk() == "concern", 1), else_=2),
                      _negativity().desc(), Message.row_index)}[view.order]
    query = (select(Message.id, Message.row_index, Person.handle, Message.text, effective_label(), Message.label,
                    Message.human_label, Message.confidence, Message.uncertain, effective_risk(),
                    effective_risk_category(), flag, Message.cells)
             .outerjoin(Person, Person.id == Message.person_id)
             .where(Message.batch_id == batch_id, flag if view.flagged_only else true())
             .order_by(*order).execution_options(yield_per=2000))
    if limit is not None:
        query = query.limit(limit)
    for r in session.execute(query):
        yield BatchRow(message_id=r[0], row=r[1], person=r[2] and r[2].removeprefix(COMMENTER_PREFIX), text=r[3],
                       label=r[4], model_label=r[5], corrected=r[6] is not None, confidence=r[7], uncertain=r[8],
                       risk=r[9], risk_category=r[10],
                       flagged=bool(r[11]), cells=json.loads(r[12]) if r[12] else None)


def count_rows(session: Session, batch_id: int, view: BatchView | None = None) -> int:
    view = view or BatchView()
    flag = flagged(view.threshold)
    return session.scalar(select(func.count(Message.id)).where(Message.batch_id == batch_id,
                                                                 flag if view.flagged_only else true()))


def get_header(session: Session, batch_id: int) -> str | None:
    """The uploaded file's column names (JSON), as stored with the batch."""
    return session.scalar(select(Batch.header).where(Batch.id == batch_id))
