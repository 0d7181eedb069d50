"""Uploaded files as batches: found again by content hash and options (so a rerun resumes instead of duplicating),
with progress recorded in the same transaction as each chunk of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db.alerts import ACTIVE
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


def stored_rows(session: Session, batch_id: int) -> set[int]:
    """Row numbers of this batch already stored (a resumed run skips them)."""
    return set(session.scalars(select(Message.row_index).where(Message.batch_id == batch_id)))


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


@dataclass(frozen=True)
class BatchCounts:
    labelled: int
    negatives: int
    flagged: int  # negative and not uncertain
    people_alerted: int  # authors in this batch with an open or acknowledged alert
    blank: int


def batch_counts(session: Session, batch_id: int) -> BatchCounts:
    in_batch = Message.batch_id == batch_id
    labelled, negatives, flagged = session.execute(
        select(func.count(Message.label), func.sum(case((Message.label == "negative", 1), else_=0)),
               func.sum(case(((Message.label == "negative") & Message.uncertain.is_(False), 1), else_=0)))
        .where(in_batch)).one()
    authors = select(Message.person_id).where(in_batch, Message.person_id.is_not(None))
    alerted = session.scalar(select(func.count(func.distinct(Alert.person_id)))
                             .where(Alert.person_id.in_(authors), Alert.status.in_(ACTIVE)))
    blank = session.get(Batch, batch_id).rows_blank
    return BatchCounts(labelled or 0, negatives or 0, flagged or 0, alerted or 0, blank)


def batch_results(session: Session, batch_id: int) -> Iterator[tuple]:
    """(row_index, label, confidence, uncertain, p_negative, person handle) for every stored row, in file order,
    streamed so a 50,000-row batch is never held in memory at once."""
    query = (select(Message.row_index, Message.label, Message.confidence, Message.uncertain, Message.p_negative,
                    Person.handle)
             .outerjoin(Person, Person.id == Message.person_id)
             .where(Message.batch_id == batch_id).order_by(Message.row_index)
             .execution_options(yield_per=2000))
    yield from session.execute(query)
