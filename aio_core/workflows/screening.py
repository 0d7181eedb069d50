"""Bulk screening of a CSV of comments: classify every row, store it under a batch, write the results file.

Rows are read in file order and handled in chunks; each chunk's messages and the batch's progress counter are
committed in one transaction. A run that is killed therefore leaves whole chunks only, and the next run on the same
file (same bytes, same column choices) skips exactly the rows the counter covers: every row ends up stored once.
Nothing is stored until the whole file has been checked (encoding, shape, columns, time values).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine as Database

from aio_core import columns
from aio_core.columns import parse_time
from aio_core.csvfile import CsvInfo, inspect_csv, iter_rows, write_csv
from aio_core.engine import Engine
from aio_core.errors import UserError
from aio_core.workflows import alert_rule, assess, label_fields
from aio_core.workflows.exports import result_cells, result_header
from db.batches import (
    batch_counts,
    batch_rows,
    create_batch,
    find_batch,
    finish_batch,
    record_progress,
    reopen_batch,
)
from db.rules import AlertRule, negative_share
from db.session import reading, writing
from db.store import NewMessage, add_messages, stored_already

CHUNK_ROWS = 256


@dataclass(frozen=True)
class ScreenOptions:
    text_column: str
    person_column: str | None = None
    time_column: str | None = None

    def key(self) -> str:
        return json.dumps({"text": self.text_column, "person": self.person_column, "time": self.time_column},
                          sort_keys=True)

    @classmethod
    def from_key(cls, key: str) -> ScreenOptions:
        """The options a batch or a job was stored with (`key()` read back)."""
        chosen = json.loads(key)
        return cls(chosen["text"], chosen["person"], chosen["time"])


@dataclass
class ScreenSummary:
    batch_id: int
    file_name: str
    rows: int
    labelled: int
    negatives: int
    flagged: int
    blank_lines: list[int] = field(default_factory=list)  # lines of blank texts (first 20), skipped
    blank: int = 0
    people_alerted: int = 0
    risky: int = 0
    duplicate: int = 0  # rows whose person, time and text were stored already (an overlapping export)
    reused: int = 0  # of those, rows the batch shows with the stored message's labels (not labelled again)
    labelled_now: int = 0  # labelled and stored by this batch
    seconds: float = 0.0  # this run's wall time
    resumed_at: int = 0  # rows already done by an earlier, interrupted run
    already_complete: bool = False
    workers: set[int] = field(default_factory=set)  # --ray: the processes that labelled blocks (a restart adds one)

    @property
    def negative_share(self) -> float:
        return negative_share(self.negatives, self.labelled)

    def line(self) -> str:
        """The one-line summary printed by the CLI and shown by the page."""
        if self.already_complete:
            head = f"{self.file_name} was already screened as batch {self.batch_id}; nothing was stored twice."
        else:
            rate = (self.rows - self.resumed_at) / self.seconds if self.seconds else 0.0
            resumed = f", resumed after row {self.resumed_at}" if self.resumed_at else ""
            head = (f"Screened {self.rows:,} rows of {self.file_name} in {self.seconds:.1f} s "
                    f"({rate:.1f} rows/s{resumed}) as batch {self.batch_id}.")
        blank = ""
        if self.blank:
            shown = ", ".join(map(str, self.blank_lines)) + (" ..." if self.blank > len(self.blank_lines) else "")
            blank = f" {self.blank} blank text(s) skipped" + (f" (lines {shown})." if self.blank_lines else ".")
        figures = (f"{self.negatives:,} negative ({self.negative_share:.1%}), {self.risky:,} at risk, "
                   f"{self.flagged:,} flagged, {self.people_alerted} commenters with an open alert.")
        if not self.reused:
            return f"{head} {self.labelled:,} labelled: {figures}{blank}"
        return (f"{head} {self.rows:,} rows: {self.labelled_now:,} labelled now, {self.reused:,} already stored "
                f"from an earlier upload (their labels reused). Of the {self.labelled:,} labelled: {figures}{blank}")


def guess_columns(info: CsvInfo) -> ScreenOptions:
    """The likely text, person and time columns, read from the cells (aio_core/columns.py)."""
    guess = columns.guess_columns(info)
    return ScreenOptions(guess.text_column, guess.person_column, guess.time_column)


def _check_columns(info: CsvInfo, options: ScreenOptions) -> None:
    for role, column in (("text", options.text_column), ("person", options.person_column),
                         ("time", options.time_column)):
        if column is not None and column not in info.header:
            raise UserError(f"{info.name} has no column {column!r} for the {role}; its columns are: "
                            f"{', '.join(info.header)}.")


def _check_times(info: CsvInfo, column: str) -> None:
    for _, line, row in iter_rows(info):
        try:
            parse_time(row[column])
        except (ValueError, OverflowError):
            raise UserError(f"{info.name}, line {line}: {row[column]!r} in column {column!r} is not a date and "
                            "time; use a form like 2024-03-01 14:30 (or leave the cell empty).") from None


def _chunks(info: CsvInfo, skip: int) -> Iterator[list[tuple[int, int, dict[str, str]]]]:
    chunk: list[tuple[int, int, dict[str, str]]] = []
    for number, line, row in iter_rows(info):
        if number <= skip:
            continue
        chunk.append((number, line, row))
        if len(chunk) == CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class OpenBatch:
    """A checked CSV and its batch in the store: `done` rows were stored by earlier runs."""

    info: CsvInfo
    batch_id: int
    done: int
    complete: bool


def open_batch(path: Path | str, options: ScreenOptions, *, model: str, prompt_version: str, db: Database,
               file_name: str | None = None, owner: str | None = None) -> OpenBatch:
    """Check the whole file (encoding, shape, columns, times), then find its batch (same bytes, same columns) or
    create it. Nothing is stored when the file is unusable."""
    info = inspect_csv(path, file_name)
    _check_columns(info, options)
    if options.time_column:
        _check_times(info, options.time_column)
    with writing(db) as session:
        batch = find_batch(session, info.sha256, options.key())
        if batch is None:
            batch = create_batch(session, file_name=info.name, sha256=info.sha256, options=options.key(),
                                 row_count=info.rows, model=model, prompt_version=prompt_version,
                                 header=list(info.header), owner=owner)
        elif batch.status == "cancelled":
            reopen_batch(session, batch.id)
        return OpenBatch(info, batch.id, batch.rows_done, batch.status == "complete")


Chunk = list[tuple[int, int, dict[str, str]]]  # (row number, line, cells by column)


def label_chunk(chunk: Chunk, header: list[str], options: ScreenOptions, batch_id: int, *,
                engine: Engine, progress: Callable[[int], None] | None = None, db: Database | None = None
                ) -> tuple[list[NewMessage], list[int]]:
    """The chunk's non-blank rows labelled, as messages to store, and the lines of its blank texts. `progress` gets
    the number of texts labelled after each forward pass. With `db` (and person and time columns), rows stored
    already by an earlier upload are not labelled again: they go to the store unlabelled, where `store_chunk`
    finds them stored and the batch reuses the stored message (one stored since is labelled later, never lost)."""
    texts = [(n, row) for n, _, row in chunk if row[options.text_column].strip()]
    blank = [line for _, line, row in chunk if not row[options.text_column].strip()]
    messages = [NewMessage(text=row[options.text_column], source="csv",
                           person=(row[options.person_column].strip() or None) if options.person_column else None,
                           created_at=parse_time(row[options.time_column]) if options.time_column else None,
                           batch_id=batch_id, row_index=n,
                           cells=json.dumps([row[c] for c in header], ensure_ascii=False)) for n, row in texts]
    known: set[int] = set()
    if db is not None and _dedups(options):
        with reading(db) as session:
            known = stored_already(session, messages)
    fresh = [i for i in range(len(messages)) if i not in known]
    labels = assess([messages[i].text for i in fresh], engine=engine, progress=progress)
    for i, (sentiment, risk) in zip(fresh, labels, strict=True):
        messages[i] = dataclasses.replace(messages[i], **label_fields(sentiment, engine, risk))
    return messages, blank


def _dedups(options: ScreenOptions) -> bool:
    """Whether rows are matched against stored messages: only a person and a time make a comment the same one."""
    return bool(options.person_column and options.time_column)


def store_chunk(messages: list[NewMessage], options: ScreenOptions, *, db: Database, rule: AlertRule,
                progress: tuple[int, int, int, float] | None = None) -> int:
    """Store one chunk's messages in one transaction; returns how many were duplicates of stored messages.
    `progress` = (batch id, rows, blank rows, seconds): the batch's counter moves in the same transaction, which is
    what lets a killed single-process run resume exactly after its last whole chunk."""
    with writing(db) as session:
        ids = add_messages(session, messages, rule=rule, skip_duplicates=_dedups(options))
        if progress is not None:
            batch_id, rows, blank, seconds = progress
            record_progress(session, batch_id, rows=rows, blank=blank, duplicate=ids.count(None), seconds=seconds)
    return ids.count(None)


def close_batch(opened: OpenBatch, summary: ScreenSummary, *, db: Database, out: Path | str | None,
                started: float) -> ScreenSummary:
    """Mark the batch complete, fill the summary from the store, write the results file."""
    if not opened.complete:
        with writing(db) as session:
            finish_batch(session, opened.batch_id)
    with reading(db) as session:
        counts = batch_counts(session, opened.batch_id)
    summary.labelled, summary.negatives, summary.flagged = counts.labelled, counts.negatives, counts.flagged
    summary.people_alerted, summary.blank = counts.people_alerted, counts.blank
    summary.risky, summary.duplicate = counts.risky, counts.duplicate
    summary.reused, summary.labelled_now = counts.reused, counts.labelled_now
    if out is not None:
        write_results(opened.info, opened.batch_id, db=db, out=out)
    summary.seconds = time.perf_counter() - started
    return summary


def new_summary(opened: OpenBatch) -> ScreenSummary:
    return ScreenSummary(batch_id=opened.batch_id, file_name=opened.info.name, rows=opened.info.rows, labelled=0,
                         negatives=0, flagged=0, resumed_at=0 if opened.complete else opened.done,
                         already_complete=opened.complete)


def screen_file(path: Path | str, options: ScreenOptions, *, engine: Engine, db: Database,
                file_name: str | None = None, out: Path | str | None = None,
                progress: Callable[[int, int], None] | None = None, owner: str | None = None) -> ScreenSummary:
    """Screen one CSV into the store (resuming an interrupted run) and optionally write the results CSV. `owner`:
    the signed-in user who uploaded it. `progress(done, total)` is called once before the first row, then after
    every forward pass; an exception it raises stops the run before the chunk in hand is stored."""
    started = time.perf_counter()
    opened = open_batch(path, options, model=engine.name, prompt_version=engine.prompt.version, db=db,
                        file_name=file_name, owner=owner)
    info, done = opened.info, opened.done
    rule = alert_rule(engine.settings, db)
    summary = new_summary(opened)
    if progress:
        progress(done, info.rows)
    for chunk in ([] if opened.complete else _chunks(info, done)):
        tick = time.perf_counter()
        within = (lambda labelled, at=done: progress(at + labelled, info.rows)) if progress else None
        messages, blank = label_chunk(chunk, list(info.header), options, opened.batch_id, engine=engine,
                                      progress=within, db=db)
        summary.blank_lines.extend(blank[:20 - len(summary.blank_lines)])
        store_chunk(messages, options, db=db, rule=rule,
                    progress=(opened.batch_id, len(chunk), len(blank), time.perf_counter() - tick))
        done += len(chunk)
        if progress:
            progress(done, info.rows)
    return close_batch(opened, summary, db=db, out=out, started=started)


def result_rows(info: CsvInfo, batch_id: int, *, db: Database) -> Iterator[list[object]]:
    """Every input row in file order, each with our columns from the store (empty for blank texts)."""
    with reading(db) as session:
        stored = batch_rows(session, batch_id)
        pending = next(stored, None)
        for number, _, row in iter_rows(info):
            while pending is not None and pending.row < number:
                pending = next(stored, None)
            found = pending if pending is not None and pending.row == number else None
            yield [row[c] for c in info.header] + result_cells(found)


def write_results(info: CsvInfo, batch_id: int, *, db: Database, out: Path | str) -> int:
    return write_csv(out, result_header(info.header), result_rows(info, batch_id, db=db))

