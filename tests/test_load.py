"""Under load nothing fails (`pytest -m slow -s tests/test_load.py`, figures in the README's Reliability section).

One SQLite file (or AIO_TEST_DB_URL), at the same time: 4 `screen` processes of 5,000 rows each, 3 threads chatting
(label, store, reply, store the reply), and a reader running the Overview and Trends queries every second. Checked:
every process and thread finished without an error, every batch holds exactly its file's rows once, and the database
passes its integrity check. Printed: each chat turn's store latency (p50/p99), the longest write-lock hold in this
process and in the screen processes, and the rows/s of each screen. Timings are reported, never asserted.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text

from aio_core.reply import ReplyOptions
from aio_core.workflows.conversation import start_turn
from db.models import Batch, Message
from db.reports import overview_report, person_report, rank_people
from db.rules import AlertRule
from db.session import WriteHolds, make_db, reading

ROOT = Path(__file__).resolve().parent.parent
ROWS = 5_000
pytestmark = pytest.mark.slow


def comments(path: Path, seed: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["author", "comment", "posted"])
        for i in range(ROWS):
            writer.writerow([f"u{seed}-{i % 300}", f"file {seed} comment {i}: {'great' if i % 3 else 'awful'} stuff",
                             f"2026-0{1 + seed}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{seed:02d}"])
    return path


def test_four_screens_three_chats_and_a_reader_on_one_database(tmp_path, engine):
    url = os.environ.get("AIO_TEST_DB_URL") or f"sqlite:///{tmp_path / 'load.db'}"
    db = make_db(url)
    files = [comments(tmp_path / f"c{i}.csv", i) for i in range(4)]
    env = {**os.environ, "AIO_RISK": "phrases", "AIO_DATA_DIR": str(tmp_path / "data"), "AIO_REPORT_WRITE_HOLDS": "1",
           "AIO_THREADS": "1"}
    screens = [subprocess.Popen([sys.executable, "-m", "aio_core", "--model", "tiny-random", "--db", url, "screen",
                                 str(f), "--text-column", "comment", "--person-column", "author", "--time-column",
                                 "posted"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for f in files]
    done = threading.Event()
    errors: list[BaseException] = []
    latencies: list[float] = []
    reads: list[float] = []
    rule = AlertRule()

    def chat(n: int) -> None:
        turn = 0
        try:
            while not done.is_set():
                started = time.perf_counter()
                found = start_turn(f"chat {n} turn {turn}: today was {'fine' if turn % 2 else 'rough'}",
                                   person=f"chatter{n}", engine=engine, db=db, rule=rule,
                                   options=ReplyOptions(max_new_tokens=3, seed=turn))
                latencies.append(time.perf_counter() - started)
                "".join(found.reply)
                turn += 1
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def reader() -> None:
        try:
            while not done.is_set():
                started = time.perf_counter()
                with reading(db) as session:
                    overview_report(session)
                    ranked = rank_people(session, limit=20)
                    if ranked:
                        person_report(session, ranked[0].handle, rule)
                reads.append(time.perf_counter() - started)
                time.sleep(1)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=chat, args=(n,)) for n in range(3)] + [threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    outputs = []
    try:
        for process in screens:
            outputs.append(process.communicate(timeout=900))
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=120)
    assert errors == []
    for process, (_, err) in zip(screens, outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
    with reading(db) as session:
        for batch in session.scalars(select(Batch)):
            count, distinct = session.execute(select(func.count(Message.id), func.count(func.distinct(
                Message.row_index))).where(Message.batch_id == batch.id)).one()
            assert (count, distinct, batch.rows_done, batch.status) == (ROWS, ROWS, ROWS, "complete")
        assert session.scalar(select(func.count(Batch.id))) == 4
        if db.dialect.name == "sqlite":
            assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    holds = [json.loads(line.split("write-holds ", 1)[1]) for _, err in outputs for line in err.splitlines()
             if line.startswith("write-holds ")]
    rates = [line for out, _ in outputs for line in out.splitlines() if line.startswith("Screened")]
    figures = {
        "chat_turns": len(latencies),
        "chat_turn_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "chat_turn_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
        "reader_p99_ms": round(1000 * float(np.percentile(reads, 99)), 1) if reads else None,
        "longest_write_hold_ms_chat_process": round(1000 * WriteHolds.longest, 1),
        "longest_write_hold_ms_screens": max(round(1000 * h["longest"], 1) for h in holds) if holds else None,
        "screen_rows_per_s": [line.split("(")[1].split(" rows/s")[0] for line in rates],
    }
    print("\nload figures:", json.dumps(figures))
    assert len(latencies) > 0 and len(rates) == 4
