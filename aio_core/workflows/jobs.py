"""Background screening: an uploaded CSV screened by a thread of the process that holds the model (the dashboard's
server, or `python -m aio_core jobs run`), so the page that started it can be left, reloaded or closed.

- The upload is kept as an owner-only file under `data_dir/jobs/<store>/` while the job is queued or running, and
  deleted when it ends, however it ends; a kept file no job refers to is deleted by the next worker.
- The worker writes progress to the store after a forward pass (at most once a second), which is also where it sees a
  cancel request, so a cancel takes effect within one forward pass. Rows are stored in whole chunks only
  (screening.py), so a cancelled or killed job never leaves half a chunk.
- A job whose worker died (same machine: its process is gone; another machine: no progress for 15 minutes) is taken
  back by the next worker, and `screen_file` resumes it after its last stored chunk.
- One worker thread per database per process, started when a job is submitted and ending when the queue is empty.
  Its model calls are background work: a chat in the same process goes first, and the job pauses meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine as Database

from aio_core.backends.base import background_work
from aio_core.engine import Engine, get_engine
from aio_core.errors import UserError
from aio_core.settings import Settings
from aio_core.workflows import USER_ERRORS
from aio_core.workflows.screening import ScreenOptions, close_batch, new_summary, open_batch, screen_file
from db.jobs import (
    active_job_for_batch,
    active_jobs_of,
    add_job,
    claim_next,
    end_job,
    get_job,
    kept_files,
    record_job_progress,
    record_start,
    request_cancel,
    requeue_abandoned,
)
from db.models import utcnow
from db.session import reading, writing

log = logging.getLogger(__name__)

HOST = socket.gethostname()
STALE = timedelta(minutes=15)  # a worker on another machine that has written nothing for this long is gone
PROGRESS_EVERY = 1.0  # seconds between progress writes
MAX_ACTIVE_PER_OWNER = 3  # one uploader cannot fill the queue (and the disk, with kept copies) for everyone
_WORKERS: dict[str, threading.Thread] = {}
_LOCK = threading.Lock()


class Cancelled(Exception):
    """Raised in the worker when the store says its job was cancelled."""


@dataclass(frozen=True)
class Submitted:
    batch_id: int
    job_id: int | None  # None when the file had been screened completely already
    message: str  # the already-screened summary, or which job is screening it


def jobs_dir(settings: Settings, db: Database) -> Path:
    """Where this database's jobs keep their uploads: a folder per database, so a worker of one store never touches
    another store's files in a shared AIO_DATA_DIR."""
    url = db.url.render_as_string(hide_password=True)
    folder = Path(settings.data_dir) / "jobs" / hashlib.sha256(url.encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def submit(path: Path | str, options: ScreenOptions, *, engine: Engine, db: Database, settings: Settings,
           file_name: str | None = None, owner: str | None = None) -> Submitted:
    """Check the whole file now (so a bad file is one sentence at once), keep a private copy and queue a job for it,
    and make sure a worker runs. The same file with the same columns already queued or running is not queued twice.
    Each uploader may have MAX_ACTIVE_PER_OWNER screenings queued or running at once."""
    if owner is not None:
        with reading(db) as session:
            active = active_jobs_of(session, owner)
        if active >= MAX_ACTIVE_PER_OWNER:
            raise UserError(f"You have {active} screenings queued or running; wait for one to finish or cancel "
                            "one, then screen this file.")
    started = time.perf_counter()
    opened = open_batch(path, options, model=engine.name, prompt_version=engine.prompt.version, db=db,
                        file_name=file_name, owner=owner)
    if opened.complete:
        summary = close_batch(opened, new_summary(opened), db=db, out=None, started=started)
        return Submitted(opened.batch_id, None, summary.line())
    with reading(db) as session:
        running = active_job_for_batch(session, opened.batch_id)
        if running is not None:
            return Submitted(opened.batch_id, running.id, f"{opened.info.name} is being screened already (job "
                                                          f"{running.id}).")
    kept: Path | None = None
    try:
        kept = jobs_dir(settings, db) / f"{uuid.uuid4().hex}.csv"
        descriptor = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as copy, open(path, "rb") as source:
            shutil.copyfileobj(source, copy)
    except OSError as error:
        if kept is not None:
            kept.unlink(missing_ok=True)  # what was written of it
        raise UserError(f"Could not keep a copy of {opened.info.name} for screening in the background "
                        f"({error.strerror}); free some space in {Path(settings.data_dir) / 'jobs'} or set "
                        "AIO_DATA_DIR to a writable folder.") from error
    try:
        with writing(db) as session:
            job = add_job(session, batch_id=opened.batch_id, file_path=str(kept), file_name=opened.info.name,
                          options=options.key(), rows=opened.info.rows, owner=owner)
            job_id = job.id
    except BaseException:
        kept.unlink(missing_ok=True)
        raise
    start_worker(settings, db)
    return Submitted(opened.batch_id, job_id, f"{opened.info.name} is queued as job {job_id}.")


def cancel(job_id: int, *, db: Database) -> str | None:
    """Ask a job to stop: a queued one stops at once (its kept file deleted), a running one within a forward pass.
    Returns its new status, or None if it had ended already."""
    with writing(db) as session:
        found = request_cancel(session, job_id)
    if found is None:
        return None
    status, kept = found
    if kept:
        Path(kept).unlink(missing_ok=True)
    return status


def may_cancel(role: str, username: str, owner: str | None) -> bool:
    """THE rule for stopping someone's screening: an admin may stop any job, anyone else only their own."""
    return role == "admin" or owner == username


def cancel_for(db: Database, job_id: int, *, role: str, username: str) -> str | None:
    """`cancel` on behalf of a signed-in user, refused unless `may_cancel` allows it."""
    with reading(db) as session:
        job = get_job(session, job_id)
        owner = job.owner if job is not None else None
    if job is not None and not may_cancel(role, username, owner):
        raise UserError("Only the person who started a screening, or an administrator, may cancel it.")
    return cancel(job_id, db=db)


def run_job(job_id: int, *, settings: Settings, db: Database) -> str:
    """Screen one claimed job to its end; returns the status it ended with."""
    with reading(db) as session:
        job = get_job(session, job_id)
        path, name, owner = job.file_path, job.file_name, job.owner
        options = ScreenOptions.from_key(job.options)
    last = {"at": 0.0, "started": False}

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if last["started"] and now - last["at"] < PROGRESS_EVERY and done < total:
            return
        with writing(db) as session:
            if not last["started"]:
                record_start(session, job_id, done)
                status = get_job(session, job_id).status
            else:
                status = record_job_progress(session, job_id, done)
        last["at"], last["started"] = now, True
        if status == "cancelling":
            raise Cancelled

    status, summary, error = "failed", None, None
    try:
        if not path or not Path(path).exists():
            raise FileNotFoundError
        engine = get_engine(settings)
        with background_work():  # a chat in the same process goes first (backends/inprocess.py, Turns)
            result = screen_file(path, options, engine=engine, db=db, file_name=name, progress=progress,
                                 owner=owner)
        status, summary = "complete", result.line()
    except Cancelled:
        status = "cancelled"
    except FileNotFoundError:
        error = f"The kept copy of {name} is gone; upload it again to screen it (rows stored so far are kept)."
    except USER_ERRORS as problem:
        error = str(problem)
    except Exception as problem:  # noqa: BLE001 - the job must end as failed, with its reason, whatever happened
        log.exception("job %s failed", job_id)
        error = f"Screening {name} stopped on an unexpected error ({type(problem).__name__}: {problem}); the rows " \
                "stored so far are kept, and uploading the file again resumes it."
    finally:
        if path:
            Path(path).unlink(missing_ok=True)
    with writing(db) as session:
        end_job(session, job_id, status, summary=summary, error=error)
    return status


def _abandoned(worker: str | None, updated_at: datetime) -> bool:
    """Whether the worker that holds a job is gone (called by a worker that holds no job of this database)."""
    host, _, pid = (worker or ":").rpartition(":")
    if host != HOST:
        return worker is None or utcnow() - updated_at > STALE
    if not pid.isdigit() or int(pid) == os.getpid():
        return True  # this process runs one worker per database, and it is the one asking
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _sweep(settings: Settings, db: Database) -> None:
    """Delete kept uploads of this database that no queued or running job refers to (left by a process killed
    between writing the copy and queueing its job). A copy younger than a minute may be one being queued now."""
    folder = jobs_dir(settings, db)
    with reading(db) as session:
        kept = set(kept_files(session))
    for file in folder.glob("*.csv"):
        if str(file) not in kept and time.time() - file.stat().st_mtime > 60:
            file.unlink(missing_ok=True)


def run_pending(settings: Settings, db: Database, *, _key: str | None = None) -> list[tuple[int, str]]:
    """Take back the jobs of dead workers, then run queued jobs until none is left: (job id, how it ended) each."""
    worker = f"{HOST}:{os.getpid()}"
    ran = []
    try:
        with writing(db) as session:
            requeue_abandoned(session, abandoned=_abandoned)
        _sweep(settings, db)
        while True:
            with _LOCK if _key else contextlib.nullcontext():
                with writing(db) as session:
                    job = claim_next(session, worker)
                    job_id = job.id if job is not None else None
                if job_id is None:
                    if _key:
                        _WORKERS.pop(_key, None)
                    return ran
            ran.append((job_id, run_job(job_id, settings=settings, db=db)))
    finally:
        if _key:
            with _LOCK:
                if _WORKERS.get(_key) is threading.current_thread():
                    _WORKERS.pop(_key, None)


def start_worker(settings: Settings, db: Database) -> bool:
    """Make sure a worker thread runs the queue of this database in this process; False if one already does."""
    key = db.url.render_as_string(hide_password=False)
    with _LOCK:
        if key in _WORKERS:
            return False
        thread = threading.Thread(target=_work, args=(settings, db, key), name="aio-jobs", daemon=True)
        _WORKERS[key] = thread
        thread.start()
        return True


def _work(settings: Settings, db: Database, key: str) -> None:
    try:
        run_pending(settings, db, _key=key)
    except Exception:  # noqa: BLE001 - a thread's error would otherwise vanish; the next submit starts another
        log.exception("the background screening worker stopped")
