"""Background screening jobs in the store: queued, claimed by one worker at a time, progress and rows/s as the worker
reports them, cancelled on request, and taken over again when the worker that held one has died.

Statuses: queued -> running -> complete | failed | cancelled; a cancel asked of a running job is `cancelling` until its
worker stops at the next forward pass. The kept upload (`file_path`) belongs to the workflow, which deletes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, true, update
from sqlalchemy.orm import Session

from db.access import EVERYTHING, Scope, batches_clause
from db.models import Batch, Job, utcnow

STATUSES = ("queued", "running", "cancelling", "complete", "failed", "cancelled")
ACTIVE = ("queued", "running", "cancelling")


def add_job(session: Session, *, batch_id: int, file_path: str, file_name: str, options: str, rows: int,
            owner: str | None) -> Job:
    job = Job(batch_id=batch_id, file_path=file_path, file_name=file_name, options=options, rows=rows, owner=owner,
              status="queued")
    session.add(job)
    session.flush()
    return job


def active_job_for_batch(session: Session, batch_id: int) -> Job | None:
    """The job already queued or running on this batch (the same file with the same columns), if any."""
    return session.scalar(select(Job).where(Job.batch_id == batch_id, Job.status.in_(ACTIVE)))


def claim_next(session: Session, worker: str) -> Job | None:
    """Take the oldest queued job for `worker` (host:pid). Two workers never get the same job: the claim is one
    conditional UPDATE."""
    for job_id in session.scalars(select(Job.id).where(Job.status == "queued").order_by(Job.id)):
        now = utcnow()
        taken = session.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                                .values(status="running", worker=worker, started_at=now, updated_at=now))
        if taken.rowcount == 1:
            return session.get(Job, job_id)
    return None


def requeue_abandoned(session: Session, *, abandoned: Callable[[str | None, datetime], bool]) -> list[int]:
    """Jobs whose worker died (`abandoned(worker, updated_at)`): a running one goes back to the queue, to resume
    after its last stored chunk; one that was being cancelled is cancelled. Returns the requeued ids."""
    requeued = []
    for job in session.scalars(select(Job).where(Job.status.in_(("running", "cancelling")))):
        if not abandoned(job.worker, job.updated_at):
            continue
        if job.status == "cancelling":
            end_job(session, job.id, "cancelled")
        else:
            job.status, job.worker, job.updated_at = "queued", None, utcnow()
            requeued.append(job.id)
    return requeued


def record_start(session: Session, job_id: int, done: int) -> None:
    job = session.get(Job, job_id)
    job.rows_done = job.rows_at_start = done
    job.started_at = job.updated_at = utcnow()


def record_job_progress(session: Session, job_id: int, done: int) -> str:
    """Store how far the worker is; returns the job's status, so the worker sees a cancel request at once."""
    job = session.get(Job, job_id)
    job.rows_done, job.updated_at = done, utcnow()
    return job.status


def end_job(session: Session, job_id: int, status: str, *, summary: str | None = None, error: str | None = None
            ) -> Job:
    job = session.get(Job, job_id)
    job.status, job.summary, job.error = status, summary, error
    job.finished_at = job.updated_at = utcnow()
    job.file_path = None
    if status == "cancelled" and job.batch_id is not None:
        batch = session.get(Batch, job.batch_id)
        if batch is not None and batch.status != "complete":
            batch.status = "cancelled"  # what was stored stays; the same file run again resumes it
            job.rows_done = batch.rows_done  # rows labelled in the chunk in hand were not stored
    return job


def request_cancel(session: Session, job_id: int) -> tuple[str, str | None] | None:
    """Cancel a job: a queued one at once, a running one at its worker's next forward pass. Returns its new status
    and, when it ended here, the kept upload for the caller to delete; None if it had ended already."""
    job = session.get(Job, job_id)
    if job is None or job.status not in ACTIVE:
        return None
    if job.status == "queued":
        kept = job.file_path
        end_job(session, job_id, "cancelled")
        return "cancelled", kept
    job.status = "cancelling"
    return "cancelling", None


def active_jobs_of(session: Session, owner: str) -> int:
    """How many screenings this uploader has queued or running (their quota's count)."""
    return session.scalar(select(func.count(Job.id)).where(Job.owner == owner, Job.status.in_(ACTIVE)))


def kept_files(session: Session) -> list[str]:
    """The kept uploads of jobs still queued or running."""
    return list(session.scalars(select(Job.file_path).where(Job.status.in_(ACTIVE), Job.file_path.is_not(None))))


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


@dataclass(frozen=True)
class JobView:
    """One job as the page shows it: how far, how fast, how long still."""

    id: int
    batch_id: int | None
    file_name: str
    status: str
    rows: int
    rows_done: int  # labelled so far (moves after every forward pass; what rows/s is measured on)
    rows_stored: int  # stored in whole chunks with the batch's counter: what a cancel or a crash keeps
    owner: str | None
    rows_per_second: float | None  # this run's speed; None until it has labelled something
    seconds_left: float | None
    summary: str | None
    error: str | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def _view(job: Job, stored: int | None) -> JobView:
    rate = left = None
    labelled = job.rows_done - job.rows_at_start
    if job.status in ("running", "cancelling") and job.started_at is not None and labelled > 0:
        rate = labelled / max((job.updated_at - job.started_at).total_seconds(), 1e-3)
        left = (job.rows - job.rows_done) / rate
    return JobView(id=job.id, batch_id=job.batch_id, file_name=job.file_name, status=job.status, rows=job.rows,
                   rows_done=job.rows_done, rows_stored=min(stored or 0, job.rows), owner=job.owner,
                   rows_per_second=rate, seconds_left=left, summary=job.summary, error=job.error)


def list_jobs(session: Session, scope: Scope = EVERYTHING, *, ids: tuple[int, ...] = (), active: bool = True,
              since: timedelta = timedelta(days=1)) -> list[JobView]:
    """Newest first, for a viewer who may see batches: the active jobs and those of `ids` whatever their state, or
    (`active=False`) the jobs of `ids`, or every job of the last `since`."""
    if active:
        wanted = Job.status.in_(ACTIVE) | Job.id.in_(ids)
    else:
        wanted = Job.id.in_(ids) if ids else true()
    jobs = session.execute(select(Job, Batch.rows_done).outerjoin(Batch, Batch.id == Job.batch_id)
                           .where(batches_clause(scope, Job.owner), wanted, Job.created_at >= utcnow() - since)
                           .order_by(Job.id.desc()).limit(50))
    return [_view(job, stored) for job, stored in jobs]
