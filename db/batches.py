"""Uploaded files as batches: found again by content hash and options (so a rerun resumes instead of duplicating),
with progress recorded in the same transaction as each chunk of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from db.alerts import open_alert
from db.models import Alert, Batch, Message, Person, utcnow


def find_batch(session: Session, sha256: str, options: str) -> Batch | None:
    return session.scalar(select(Batch).where(Batch.sha256 == sha256, Batch.options == options)
                          .order_by(Batch.id.desc()))


def create_batch(session: Session, *, file_name: str, sha256: str, options: str, row_count: int, model: str,
                 prompt_version: str) -> Batch:
    batch = Batch(file_name=file_name, sha256=sha256, options=options, row_count=row_count, model=model,
                  prompt_version=prompt_version, status="running")
    session.add(batch)
    session.flush()
    return batch


def record_progress(session: Session, batch_id: int, *, rows: int, blank: int, seconds: float) -> None:
    batch = session.get(Batch, batch_id)
    batch.rows_done += rows
    batch.rows_blank += blank
    batch.seconds += seconds


def finish_batch(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    batch.status = "complete"
    batch.finished_at = utcnow()
    return batch


def list_batches(session: Session, limit: int = 50) -> list[Batch]:
    return list(session.scalars(select(Batch).order_by(Batch.id.desc()).limit(limit)))


def flagged(threshold: float | None = None) -> ColumnElement[bool]:
    """THE definition of a flagged message: negative and confident, i.e. not marked uncertain, or, when a reviewer
    chooses a confidence threshold, at least that confident."""
    confident = Message.uncertain.is_(False) if threshold is None else Message.confidence >= threshold
    return and_(Message.label == "negative", confident)


@dataclass(frozen=True)
class BatchCounts:
    labelled: int
    negatives: int
    flagged: int
    people_alerted: int  # authors in this batch with an open alert
    blank: int


def batch_counts(session: Session, batch_id: int) -> BatchCounts:
    in_batch = Message.batch_id == batch_id
    labelled, negatives, flags = session.execute(
        select(func.count(Message.label), func.sum(case((Message.label == "negative", 1), else_=0)),
               func.sum(case((flagged(), 1), else_=0)))
        .where(in_batch)).one()
    authors = select(Message.person_id).where(in_batch, Message.person_id.is_not(None))
    alerted = session.scalar(select(func.count(func.distinct(Alert.person_id)))
                             .where(Alert.person_id.in_(authors), open_alert()))
    blank = session.get(Batch, batch_id).rows_blank
    return BatchCounts(labelled=labelled or 0, negatives=negatives or 0, flagged=flags or 0,
                       people_alerted=alerted or 0, blank=blank)


@dataclass(frozen=True)
class BatchRow:
    row: int
    person: str | None
    text: str
    label: str
    confidence: float
    uncertain: bool
    flagged: bool


def batch_rows(session: Session, batch_id: int, *, threshold: float | None = None) -> Iterator[BatchRow]:
    """Every stored row of one batch in file order, with its flag at `threshold`; streamed, so a 50,000-row batch
    is never held in memory at once."""
    query = (select(Message.row_index, Person.handle, Message.text, Message.label, Message.confidence,
                    Message.uncertain, flagged(threshold))
             .outerjoin(Person, Person.id == Message.person_id)
             .where(Message.batch_id == batch_id).order_by(Message.row_index)
             .execution_options(yield_per=2000))
    for row in session.execute(query):
        yield BatchRow(row=row[0], person=row[1], text=row[2], label=row[3], confidence=row[4], uncertain=row[5],
                       flagged=bool(row[6]))
