"""Bulk screening on Ray Data: `python -m aio_core screen BIG.csv ... --ray [ADDRESS]`.

The driver (this process) checks the whole file with the same parser as the single-process path (encodings, line
numbers, columns, times), opens the batch, and hands Ray Data the rows the store does not hold yet, in blocks of
`CHUNK_ROWS`. `map_batches` runs them through a pool of actors, each holding one model (in process, or a client of a
model server when AIO_MODEL=openai+...); each actor labels a block and stores it in one transaction. A block that is
retried (its worker was killed) finds its rows already stored and stores nothing twice: rows are unique per batch
and row number in the store. The driver counts progress from the blocks it gets back, then closes the batch and
writes the same results file as `screen_file` (one function writes both).

Ray is an extra (`pip install -r requirements-scale.txt`); nothing else in the product imports it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine as Database
from sqlalchemy import select

from aio_core.csvfile import iter_rows
from aio_core.errors import UserError
from aio_core.prompts import get_prompt
from aio_core.settings import Settings
from aio_core.workflows.screening import (
    CHUNK_ROWS,
    OpenBatch,
    ScreenOptions,
    ScreenSummary,
    close_batch,
    label_chunk,
    new_summary,
    open_batch,
    store_chunk,
)
from db.batches import record_progress, settle_counts
from db.models import Message
from db.session import make_db, reading, writing

log = logging.getLogger(__name__)


def _ray() -> Any:  # noqa: ANN401 - the ray module
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UserError("--ray needs Ray Data, which is not installed; run pip install -r requirements-scale.txt "
                        "(or screen without --ray).") from None
    return ray


class ScreenBlock:
    """One Ray actor: one model and one store connection, loaded once; labels and stores a block per call."""

    def __init__(self, settings: dict[str, Any], options: dict[str, Any], header: list[str], batch_id: int) -> None:
        from aio_core.engine import get_engine
        from aio_core.workflows import alert_rule

        self.settings = Settings(**settings)
        self.engine = get_engine(self.settings)
        self.db = make_db(self.settings.db_url)
        self.rule = alert_rule(self.settings, self.db)
        self.options = ScreenOptions(**options)
        self.header = header
        self.batch_id = batch_id

    def __call__(self, block: dict[str, Any]) -> dict[str, list[int]]:
        """`block`: chunks of the file as JSON lists of [row number, line, cells]; one chunk is one transaction."""
        started, rows, duplicate = time.perf_counter(), 0, 0
        for chunk_json in block["chunk"]:
            chunk = [(n, line, dict(zip(self.header, cells, strict=True))) for n, line, cells in json.loads(chunk_json)]
            messages, _ = label_chunk(chunk, self.header, self.options, self.batch_id, engine=self.engine)
            duplicate += store_chunk(messages, self.options, db=self.db, rule=self.rule)
            rows += len(chunk)
        return {"rows": [rows], "duplicate": [duplicate], "ms": [int((time.perf_counter() - started) * 1000)],
                "pid": [os.getpid()]}


def _pending_chunks(opened: OpenBatch, options: ScreenOptions, db: Database) -> tuple[list[str], int, list[int]]:
    """The file cut into the same chunks as the single-process path (so every text is batched with the same
    neighbours and gets the same label), holding only rows with a text that the batch does not hold yet; how many
    rows those are; and the lines of blank texts (never stored, never sent to a model)."""
    with reading(db) as session:
        stored = set(session.scalars(select(Message.row_index).where(Message.batch_id == opened.batch_id)))
    chunks: list[str] = []
    current: list[list[object]] = []
    pending, blank = 0, []
    for number, line, row in iter_rows(opened.info):
        if not row[options.text_column].strip():
            blank.append(line)
        elif number not in stored:
            current.append([number, line, [row[c] for c in opened.info.header]])
            pending += 1
        if number % CHUNK_ROWS == 0 and current:
            chunks.append(json.dumps(current, ensure_ascii=False))
            current = []
    if current:
        chunks.append(json.dumps(current, ensure_ascii=False))
    return chunks, pending, blank


def screen_file_ray(path: Path | str, options: ScreenOptions, *, settings: Settings, address: str | None = None,
                    actors: int = 1, out: Path | str | None = None,
                    progress: Callable[[int, int], None] | None = None) -> ScreenSummary:
    """Screen one CSV with a pool of `actors` Ray actors; `address`: a running Ray cluster ("auto", host:port), or
    None for a local one started for this run. The store must be one every actor can reach (a PostgreSQL URL on
    several machines; a SQLite file on one)."""
    ray = _ray()
    started = time.perf_counter()
    if settings.db_url in ("sqlite://", "sqlite:///:memory:"):
        raise UserError("--ray needs a store every worker can open: set AIO_DB_URL to a SQLite file or PostgreSQL.")
    db = make_db(settings.db_url)
    prompt = get_prompt(settings.prompt_version)
    opened = open_batch(path, options, model=settings.model, prompt_version=prompt.version, db=db)
    summary = new_summary(opened)
    if opened.complete:
        return close_batch(opened, summary, db=db, out=out, started=started)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 **({} if address else {"num_cpus": max(actors, os.cpu_count() or 1)}))
    # Each actor's share of this node's CPUs; its torch threads follow (AIO_THREADS), so actors do not oversubscribe.
    cpus_per_actor = max(1, int(ray.cluster_resources().get("CPU", 1)) // actors)
    settings = settings.replace(threads=settings.threads or cpus_per_actor)
    chunks, pending, blank = _pending_chunks(opened, options, db)
    summary.blank_lines = blank[:20]
    done = opened.info.rows - pending
    if progress:
        progress(done, opened.info.rows)
    if chunks:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        dataset = ray.data.from_items([{"chunk": c} for c in chunks], override_num_blocks=len(chunks))
        labelled = dataset.map_batches(
            ScreenBlock, batch_size=1, batch_format="numpy", concurrency=actors,
            fn_constructor_kwargs={"settings": dataclasses.asdict(settings),
                                   "options": dataclasses.asdict(options), "header": list(opened.info.header),
                                   "batch_id": opened.batch_id},
            # One model per actor. Ray Data restarts a killed actor and retries its block (max_restarts and
            # max_task_retries are -1 for actor pools by default): the store keeps each row once.
            num_cpus=cpus_per_actor,
        )
        for block in labelled.iter_batches(batch_size=None, batch_format="numpy"):
            summary.workers |= {int(pid) for pid in block["pid"]}
            for size, duplicate, ms in zip(block["rows"], block["duplicate"], block["ms"], strict=True):
                with writing(db) as session:
                    record_progress(session, opened.batch_id, rows=int(size), blank=0, duplicate=int(duplicate),
                                    seconds=int(ms) / 1000)
                done += int(size)
                if progress:
                    progress(done, opened.info.rows)
    with writing(db) as session:
        settle_counts(session, opened.batch_id, rows_done=opened.info.rows, blank=len(blank))
    return close_batch(opened, summary, db=db, out=out, started=started)
