"""Background screening jobs on the tiny model and real SQLite files: they run in a worker thread, report progress
by forward pass, stop when cancelled leaving whole chunks only, and resume after their process is killed."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from helpers import ROOT, comments, stored
from sqlalchemy import select

from aio_core.errors import UserError
from aio_core.workflows.jobs import cancel, jobs_dir, run_pending, submit
from aio_core.workflows.screening import CHUNK_ROWS, ScreenOptions, open_batch, screen_file
from db.jobs import add_job, get_job, list_jobs
from db.models import Batch, Job
from db.session import reading, writing

OPTIONS = ScreenOptions("comment", "author")


@pytest.fixture
def slow(engine, tmp_path):
    """The tiny model one text per forward pass, and its own data folder: jobs long enough to watch and cancel."""
    settings = engine.settings.replace(batch_size=1, data_dir=str(tmp_path / "data"))
    return dataclasses.replace(engine, settings=settings)


def wait_until(db, job_id: int, done: callable, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with reading(db) as session:
            job = list_jobs(session, ids=(job_id,), active=False)[0]
        if done(job):
            return job
        time.sleep(0.02)
    pytest.fail(f"job {job_id} never got there: {job}")


def test_a_job_screens_every_row_once_in_the_background_and_deletes_its_copy(tmp_path, engine, db):
    source = comments(tmp_path / "c.csv", 600, blank_every=50)
    settings = engine.settings.replace(data_dir=str(tmp_path / "data"))
    queued = submit(source, OPTIONS, engine=engine, db=db, settings=settings, file_name="c.csv", owner="mo")
    assert queued.job_id is not None and f"job {queued.job_id}" in queued.message
    job = wait_until(db, queued.job_id, lambda j: not j.active)
    assert job.status == "complete" and job.rows_done == 600 and "Screened 600 rows of c.csv" in job.summary
    assert stored(db) == [n for n in range(1, 601) if (n - 1) % 50]
    assert list(jobs_dir(settings, db).iterdir()) == []  # the kept copy is gone with the job
    again = submit(source, OPTIONS, engine=engine, db=db, settings=settings, file_name="c.csv")
    assert again.job_id is None and "already screened" in again.message  # nothing queued, nothing stored twice


def test_progress_is_reported_after_every_forward_pass(tmp_path, engine, db):
    source = comments(tmp_path / "c.csv", 300)
    seen: list[int] = []
    screen_file(source, OPTIONS, engine=dataclasses.replace(engine, settings=engine.settings.replace(batch_size=16)),
                db=db, progress=lambda done, total: seen.append(done))
    assert seen[0] == 0 and seen[-1] == 300 and seen == sorted(seen)
    assert max(b - a for a, b in zip(seen, seen[1:], strict=False)) <= 16  # never a jump of a whole chunk


def test_a_cancelled_job_stops_at_once_keeping_whole_chunks_and_the_same_file_resumes(tmp_path, slow, db):
    source = comments(tmp_path / "big.csv", 2000)
    queued = submit(source, OPTIONS, engine=slow, db=db, settings=slow.settings, file_name="big.csv", owner="mo")
    running = wait_until(db, queued.job_id, lambda j: j.rows_done > CHUNK_ROWS and j.rows_per_second)
    assert running.status == "running" and running.seconds_left > 0
    kept = list(jobs_dir(slow.settings, db).iterdir())
    assert len(kept) == 1 and kept[0].stat().st_mode & 0o777 == 0o600  # private to the server while it runs
    assert cancel(queued.job_id, db=db) == "cancelling"
    job = wait_until(db, queued.job_id, lambda j: not j.active, seconds=30)
    rows = stored(db)
    assert job.status == "cancelled" and job.rows_done == len(rows) < 2000  # what is stored, not what was labelled
    assert rows == list(range(1, len(rows) + 1)) and len(rows) % CHUNK_ROWS == 0  # whole chunks, in order
    assert list(jobs_dir(slow.settings, db).iterdir()) == []
    with reading(db) as session:
        assert session.get(Batch, queued.batch_id).status == "cancelled"
    assert cancel(queued.job_id, db=db) is None  # it has ended: nothing to cancel

    resumed = submit(source, OPTIONS, engine=slow, db=db,
                     settings=slow.settings.replace(batch_size=16), file_name="big.csv")
    job = wait_until(db, resumed.job_id, lambda j: not j.active)
    assert resumed.batch_id == queued.batch_id and job.status == "complete"
    assert f"resumed after row {len(rows)}" in job.summary
    assert stored(db) == list(range(1, 2001))


def test_a_queued_job_cancelled_never_runs(tmp_path, slow, db):
    first = submit(comments(tmp_path / "a.csv", 1500), OPTIONS, engine=slow, db=db, settings=slow.settings)
    second = submit(comments(tmp_path / "b.csv", 10), OPTIONS, engine=slow, db=db, settings=slow.settings)
    assert cancel(second.job_id, db=db) == "cancelled"  # queued behind the first: stopped at once
    assert cancel(first.job_id, db=db) in ("cancelling", "cancelled")
    wait_until(db, first.job_id, lambda j: not j.active, seconds=30)
    with reading(db) as session:
        assert session.scalar(select(Batch.rows_done).where(Batch.id == second.batch_id)) == 0
        assert get_job(session, second.job_id).file_path is None
    assert list(jobs_dir(slow.settings, db).iterdir()) == []


def test_a_job_killed_with_its_process_is_resumed_by_the_next_worker(tmp_path, engine):
    source = comments(tmp_path / "big.csv", 300, blank_every=97)
    path, data = tmp_path / "aio.db", tmp_path / "data"
    settings = engine.settings.replace(db_url=f"sqlite:///{path}", data_dir=str(data))
    from db.session import make_db

    db = make_db(settings.db_url)
    opened = open_batch(source, OPTIONS, model=engine.name, prompt_version=engine.prompt.version, db=db)
    kept = jobs_dir(settings, db) / "kept.csv"
    shutil.copyfile(source, kept)
    with writing(db) as session:
        job_id = add_job(session, batch_id=opened.batch_id, file_path=str(kept), file_name="big.csv",
                         options=OPTIONS.key(), rows=300, owner="mo").id
    command = [sys.executable, "-m", "aio_core", "--model", "tiny-random", "--db", settings.db_url, "jobs", "run"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIO_DATA_DIR": str(data), "AIO_BATCH_SIZE": "2",
           "AIO_RISK": "phrases"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        with sqlite3.connect(path, timeout=1) as connection:
            done = connection.execute("SELECT rows_done FROM batches").fetchone()[0]
        if 0 < done < 300:  # one chunk of 256 rows stored, the rest not yet
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the job finished before it could be killed half-way"
    with reading(db) as session:
        assert session.get(Job, job_id).status == "running"  # as the dead worker left it

    assert run_pending(settings, db) == [(job_id, "complete")]
    with reading(db) as session:
        job = list_jobs(session, ids=(job_id,), active=False)[0]
    assert f"resumed after row {done}" in job.summary
    assert stored(db) == [n for n in range(1, 301) if (n - 1) % 97]  # each non-blank row exactly once
    assert not kept.exists()
    db.dispose()


def test_a_job_whose_kept_file_is_gone_fails_with_a_sentence(tmp_path, engine, db):
    settings = engine.settings.replace(data_dir=str(tmp_path / "data"))
    source = comments(tmp_path / "c.csv", 5)
    opened = open_batch(source, OPTIONS, model=engine.name, prompt_version=engine.prompt.version, db=db)
    with writing(db) as session:
        job_id = add_job(session, batch_id=opened.batch_id, file_path=str(tmp_path / "gone.csv"),
                         file_name="c.csv", options=OPTIONS.key(), rows=5, owner=None).id
    assert run_pending(settings, db) == [(job_id, "failed")]
    with reading(db) as session:
        assert "upload it again" in get_job(session, job_id).error


def test_a_copy_that_cannot_be_kept_is_one_sentence_and_queues_nothing(tmp_path, engine, db):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the data folder should be")
    settings = engine.settings.replace(data_dir=str(blocked))
    with pytest.raises(UserError, match="AIO_DATA_DIR"):
        submit(comments(tmp_path / "c.csv", 5), OPTIONS, engine=engine, db=db, settings=settings)
    with reading(db) as session:
        assert list_jobs(session, active=False) == []
