"""Bulk screening end to end on the tiny model and real SQLite files, including a run killed half-way."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import comments, stored
from sqlalchemy import func, select

from aio_core.csvfile import inspect_csv, iter_rows
from aio_core.errors import UserError
from aio_core.workflows import screening
from aio_core.workflows.exports import batch_export
from aio_core.workflows.screening import ScreenOptions, screen_file
from db.batches import BatchView, batch_rows
from db.models import Batch, Message
from db.session import reading

ROOT = Path(__file__).resolve().parent.parent


def test_every_row_is_stored_once_with_its_label_and_the_results_file_matches(tmp_path, engine, db):
    source = comments(tmp_path / "in.csv", 300, blank_every=50)
    summary = screen_file(source, ScreenOptions("comment", "author", "posted"), engine=engine, db=db,
                          out=tmp_path / "out.csv")
    assert (summary.rows, summary.labelled, summary.blank) == (300, 294, 6)
    assert summary.blank_lines == [2, 52, 102, 152, 202, 252]
    assert stored(db) == [n for n in range(1, 301) if (n - 1) % 50]
    with reading(db) as session:
        first = session.scalar(select(Message).where(Message.row_index == 2))
        assert first.text == "comment 1: 这个产品很好" and first.person.handle == "comment:user1"  # a commenter
        assert (first.person.kind, first.person.display_name) == ("commenter", "user1")
        assert first.created_at.isoformat() == "2026-05-02T10:01:00" and first.source == "csv"
        assert first.prompt_version == engine.prompt.version
    out = inspect_csv(tmp_path / "out.csv")
    assert out.header == ("author", "comment", "posted", "label", "confidence", "uncertain", "risk", "risk_category",
                          "flagged")
    rows = [row for _, _, row in iter_rows(out)]
    assert len(rows) == 300 and rows[0]["label"] == "" and rows[1]["label"] in ("positive", "negative")
    assert all(r["risk"] == "none" for r in rows if r["label"])
    assert all(r["flagged"] == str(r["label"] == "negative" and r["uncertain"] == "false").lower()
               for r in rows if r["label"])
    assert "Screened 300 rows" in summary.line() and "6 blank text(s) skipped (lines 2, 52" in summary.line()


def test_running_the_same_file_again_stores_nothing_twice(tmp_path, engine, db):
    source = comments(tmp_path / "in.csv", 40)
    options = ScreenOptions("comment", "author")
    first = screen_file(source, options, engine=engine, db=db)
    again = screen_file(source, options, engine=engine, db=db, out=tmp_path / "again.csv")
    assert again.already_complete and again.batch_id == first.batch_id
    assert len(stored(db)) == 40
    assert len(list(iter_rows(inspect_csv(tmp_path / "again.csv")))) == 40
    # Other column choices on the same file are another batch.
    other = screen_file(source, ScreenOptions("author"), engine=engine, db=db)
    assert other.batch_id != first.batch_id


@pytest.mark.parametrize("options, words", [
    (ScreenOptions("missing"), "no column 'missing'"),
    (ScreenOptions("comment", person_column="who"), "no column 'who'"),
])
def test_unknown_columns_store_nothing(tmp_path, engine, db, options, words):
    source = comments(tmp_path / "in.csv", 10)
    with pytest.raises(UserError, match=words):
        screen_file(source, options, engine=engine, db=db)
    with reading(db) as session:
        assert session.scalar(select(func.count(Batch.id))) == 0


def test_an_unreadable_time_stores_nothing_and_names_the_line(tmp_path, engine, db):
    source = comments(tmp_path / "in.csv", 10)
    text = source.read_text().replace("2026-05-06 10:05", "next tuesday-ish")
    source.write_text(text)
    with pytest.raises(UserError, match="line 7: 'next tuesday-ish'"):
        screen_file(source, ScreenOptions("comment", "author", "posted"), engine=engine, db=db)
    assert stored(db) == []


def test_a_run_killed_half_way_resumes_with_every_row_once(tmp_path):
    source = comments(tmp_path / "big.csv", 300, blank_every=97)
    path = tmp_path / "aio.db"
    command = [sys.executable, "-m", "aio_core", "--model", "tiny-random", "--db", f"sqlite:///{path}",
               "screen", str(source), "--text-column", "comment", "--person-column", "author",
               "--batch-size", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        if path.exists():
            try:
                with sqlite3.connect(path, timeout=1) as connection:
                    done = connection.execute("SELECT coalesce(max(rows_done), 0) FROM batches").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if 0 < done < 300:  # one chunk of 256 rows stored, the rest not yet
                process.send_signal(signal.SIGKILL)
                break
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed half-way"
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "resumed after row" in finished.stdout
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = [r[0] for r in connection.execute("SELECT row_index FROM messages ORDER BY row_index")]
        status = connection.execute("SELECT status, rows_done, rows_blank FROM batches").fetchall()
    expected = [n for n in range(1, 301) if (n - 1) % 97]
    assert rows == expected  # each non-blank row exactly once
    assert status == [("complete", 300, 300 - len(expected))]


@pytest.mark.parametrize("header, rows, expected", [
    (["author", "comment", "posted"], [["a", "hello there", "2026-01-01"]], ("comment", "author", "posted")),
    (["用户昵称", "评论内容", "发布时间"], [["a", "很好", "2026-01-01"]], ("评论内容", "用户昵称", "发布时间")),
    (["id", "x", "y"], [["1", "a long piece of text here", "b"]], ("x", None, None)),
    # Names mislead: "posted_at" is a time, not the post; the position of a column never decides.
    (["id", "platform", "author", "posted_at", "comment", "likes"],
     [["101", "weibo", "amy", "2026-05-01T10:00:00Z", "the parcel came two days late and support never answered", "3"],
      ["102", "douyin", "bo", "2026-05-02T11:30:00Z", "quick delivery, well packed, would order again", "12"],
      ["103", "weibo", "cy", "1746093600", "太慢了，客服也不回消息，很失望", "0"]],
     ("comment", "author", "posted_at")),
    (["likes", "body_id", "created", "nick", "t"],
     [["3", "9007199254740993", "2026-01-01 10:00", "a", "这个产品真的很好用，推荐给大家"],
      ["5", "9007199254740994", "2026-01-02 10:00", "b", "完全不能用，退货了"]],
     ("t", "nick", "created")),
])
def test_columns_are_guessed_from_names_or_lengths(tmp_path, header, rows, expected):
    path = tmp_path / "g.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    from aio_core.workflows.screening import guess_columns

    guess = guess_columns(inspect_csv(path))
    assert (guess.text_column, guess.person_column, guess.time_column) == expected


def test_an_overlapping_export_stores_each_message_once_and_says_so(tmp_path, engine, db, monkeypatch):
    """Moderators export the last 30 days every week: the rows both files hold (same author, time and text) are
    stored once, and the summary counts them."""
    first = comments(tmp_path / "week1.csv", 40)
    screen_file(first, ScreenOptions("comment", "author", "posted"), engine=engine, db=db)
    second = tmp_path / "week2.csv"
    with second.open("w", newline="", encoding="utf-8") as handle:
        lines = first.read_text(encoding="utf-8").splitlines()
        handle.write("\n".join([lines[0], *lines[21:], "user9,a brand new comment,2026-06-01 09:00"]) + "\n")
    sent: list[str] = []  # what reached the model: the rows stored already must not be labelled again
    real = screening.assess
    monkeypatch.setattr(screening, "assess", lambda texts, **kw: sent.extend(texts) or real(texts, **kw))
    summary = screen_file(second, ScreenOptions("comment", "author", "posted"), engine=engine, db=db,
                          out=tmp_path / "out.csv")
    assert summary.duplicate == summary.reused == 20 and (summary.labelled_now, summary.labelled) == (1, 21)
    assert ("21 rows: 1 labelled now, 20 already stored from an earlier upload (their labels reused)."
            in summary.line())
    assert sent == ["a brand new comment"] and len(stored(db)) == 41
    # The results file and the batch hold every row of the second file, in its order, with the stored labels.
    with reading(db) as session:
        earlier = {m.text: m.label for m in session.scalars(select(Message))}
        rows = list(batch_rows(session, summary.batch_id))
    assert [r.row for r in rows] == list(range(1, 22)) and [r.reused for r in rows] == [True] * 20 + [False]
    written = [row for _, _, row in iter_rows(inspect_csv(tmp_path / "out.csv"))]
    assert [r["comment"] for r in written] == [r.text for r in rows]
    assert all(r["label"] == earlier[r["comment"]] for r in written)


def test_the_download_is_exactly_the_view_on_screen(tmp_path, engine, db):
    """Flagged only, the threshold and the order the reviewer chose are what the CSV holds, with the file's own
    columns: the page's table and the download come from one query."""
    source = tmp_path / "in.csv"
    source.write_text("id,comment\n1,I want to kill myself\n2,lovely day\n3,this is terrible\n4,great stuff\n",
                      encoding="utf-8")
    summary = screen_file(source, ScreenOptions("comment"), engine=engine, db=db)
    assert summary.risky == 1
    everything = [r for _, _, r in iter_rows(inspect_csv_bytes(tmp_path, batch_export(db, summary.batch_id).data))]
    assert [r["id"] for r in everything] == ["1", "2", "3", "4"] and everything[0]["risk"] == "urgent"
    view = BatchView(flagged_only=True, order="risk")
    flagged = [r for _, _, r in iter_rows(inspect_csv_bytes(tmp_path, batch_export(db, summary.batch_id, view).data))]
    with reading(db) as session:
        expected = [str(r.cells[0]) for r in batch_rows(session, summary.batch_id, view)]
    assert [r["id"] for r in flagged] == expected and expected[0] == "1"
    assert all(r["flagged"] == "true" for r in flagged)


def inspect_csv_bytes(folder: Path, data: bytes):
    path = folder / "download.csv"
    path.write_bytes(data)
    return inspect_csv(path)
