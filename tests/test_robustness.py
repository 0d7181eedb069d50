"""Hostile and messy input, faults and load: the product keeps working, loses nothing and lets nothing execute.
(The browser half of "nothing executes" is tests/test_browser.py; kill-and-resume is tests/test_screening.py.)"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from streamlit.testing.v1 import AppTest

from aio_core.csvfile import inspect_csv, iter_rows
from aio_core.reply import ReplyOptions
from aio_core.workflows.conversation import start_turn
from aio_core.workflows.screening import ScreenOptions, screen_file
from db.errors import StoreError
from db.models import Batch, Message
from db.session import make_db, reading

ROOT = Path(__file__).resolve().parent.parent
LONG = "这家店太让人失望了。" * 10_000  # 100,000 characters
MESSY = [
    'quote " inside, and a comma', "line one\nline two\r\nline three", "😡😡😡", "\u200b\u200d\u2060", "مرحبا بالعالم",
    "\u202eevil.exe\u202c", '=HYPERLINK("http://x.example","click")', "+1+1", "-2", "@SUM(A1)", "\tindent",
    "\rcarriage", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))", LONG,
]


def _write(path: Path, texts: list[str], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(["author", "comment"])
        writer.writerows([f"user{i % 3}", text] for i, text in enumerate(texts))
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_messy_cells_are_stored_verbatim_and_round_trip_through_export(tmp_path, engine, db, encoding):
    texts = MESSY if encoding != "gb18030" else [t for t in MESSY if t.isascii() or "店" in t]
    source = _write(tmp_path / "in.csv", texts, encoding)
    summary = screen_file(source, ScreenOptions("comment", "author"), engine=engine, db=db, out=tmp_path / "out.csv")
    assert summary.labelled == len(texts)
    with reading(db) as session:
        stored = session.scalars(select(Message.text).order_by(Message.row_index)).all()
    assert stored == texts  # verbatim, the 100,000-character message whole
    exported = [row["comment"] for _, _, row in iter_rows(inspect_csv(tmp_path / "out.csv"))]
    for original, cell in zip(texts, exported, strict=True):
        if original.startswith(("=", "+", "-", "@", "\t", "\r")):
            assert cell == "'" + original  # neutralised for spreadsheets
        else:
            assert cell == original


def test_a_100k_character_chat_message_is_stored_whole_and_the_page_answers(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'aio.db'}"
    monkeypatch.setenv("AIO_MODEL", "tiny-random")
    monkeypatch.setenv("AIO_DB_URL", url)
    monkeypatch.setenv("AIO_AUTH", "off")
    monkeypatch.setenv("AIO_RISK", "phrases")
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    at.switch_page("app_pages/chat.py").run()
    at.selectbox(key="person").set_value("\x00new").run()
    at.text_input(key="new_handle").set_value("long").run()
    at.chat_input(key="chat_input").set_value(LONG).run()
    assert not at.exception
    with reading(make_db(url)) as session:
        message = session.scalars(select(Message)).one()
        assert len(message.text) == 100_000 and message.label and message.reply is not None


def _limit_size(db, extra_pages: int) -> None:
    """Make the database 'full' a few pages from now: SQLite then fails exactly as on a full disk (SQLITE_FULL)."""
    with db.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()

    @event.listens_for(db, "connect")
    def _cap(dbapi_connection, _record):
        dbapi_connection.execute(f"PRAGMA max_page_count={pages + extra_pages}")

    db.dispose()


def test_a_full_disk_stops_with_a_sentence_keeps_whole_chunks_and_resumes(tmp_path, engine):
    url = f"sqlite:///{tmp_path / 'aio.db'}"
    db = make_db(url)
    source = _write(tmp_path / "in.csv", [f"comment number {i} " + "很好 " * 30 for i in range(2000)])
    _limit_size(db, extra_pages=40)
    with pytest.raises(StoreError, match="full"):
        screen_file(source, ScreenOptions("comment", "author"), engine=engine, db=db, out=tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    with reading(db) as session:
        batch = session.scalars(select(Batch)).one()
        stored = session.scalar(select(func.count(Message.id)))
        assert batch.status == "running" and stored == batch.rows_done < 2000  # whole chunks only
        assert session.connection().exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    db.dispose()
    roomy = make_db(url)  # space freed: the same command resumes and finishes, every row once
    summary = screen_file(source, ScreenOptions("comment", "author"), engine=engine, db=roomy)
    assert summary.resumed_at == stored and summary.labelled == 2000
    with reading(roomy) as session:
        rows = session.scalars(select(Message.row_index).order_by(Message.row_index)).all()
    assert rows == list(range(1, 2001))


def test_chat_sessions_and_a_screening_job_share_one_model_and_one_file(tmp_path, engine, rule, monkeypatch):
    import aio_core.workflows.conversation as conversation

    db = make_db(f"sqlite:///{tmp_path / 'aio.db'}")
    source = _write(tmp_path / "in.csv", [f"comment {i} 还不错" for i in range(600)])
    errors: list[BaseException] = []
    spoken: dict[str, list[tuple[str, str]]] = {}
    prompts: list[tuple[str, list[dict[str, str]]]] = []  # (session, the history its reply was generated from)
    real_compose = conversation.compose

    def recording_compose(history, **kwargs):
        prompts.append((threading.current_thread().name, [dict(m) for m in history]))
        return real_compose(history, **kwargs)

    monkeypatch.setattr(conversation, "compose", recording_compose)

    def chat() -> None:
        person = threading.current_thread().name
        spoken[person] = []
        try:
            for turn_no in range(5):
                text = f"message {turn_no} from {person}"
                turn = start_turn(text, person=person, engine=engine, db=db, rule=rule,
                                  options=ReplyOptions(seed=turn_no, max_new_tokens=12))
                spoken[person].append((text, "".join(turn.reply)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def screen() -> None:
        try:
            screen_file(source, ScreenOptions("comment", "author"), engine=engine, db=db)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=chat, name=f"session{n}") for n in range(4)]
    threads.append(threading.Thread(target=screen, name="screening"))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:1]
    with reading(db) as session:
        assert session.scalar(select(func.count(Message.id)).where(Message.source == "csv")) == 600
        for person, turns in spoken.items():  # each session stored exactly what it was shown
            stored = session.scalars(select(Message).where(Message.person.has(handle=person))
                                     .order_by(Message.id)).all()
            assert [(m.text, m.reply) for m in stored] == turns
    # Each reply was generated from its own session's conversation, in order, and nobody else's.
    assert len(prompts) == 20
    for person, history in prompts:
        asked = [m["content"] for m in history if m["role"] == "user"]
        answered = [m["content"] for m in history if m["role"] == "assistant"]
        assert asked == [f"message {i} from {person}" for i in range(len(asked))]
        assert answered == [said for _, said in spoken[person][:len(asked) - 1] if said]


def _screen_peak_rss_mb(tmp_path: Path, rows: int) -> float:
    texts = [f"comment {i}: " + ("送得很快，味道不错" if i % 3 else "terrible, cold and late") for i in range(rows)]
    source = _write(tmp_path / f"rows{rows}.csv", texts)
    command = [sys.executable, "-m", "aio_core", "--model", "tiny-random", "--db",
               f"sqlite:///{tmp_path / f'rows{rows}.db'}", "screen", str(source), "--text-column", "comment",
               "--person-column", "author", "-o", str(tmp_path / f"out{rows}.csv")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, process.stderr.read().decode()[-2000:]
    print(f"screen {rows} rows: {process.stdout.read().decode().strip().splitlines()[0]}; "
          f"peak RSS {usage.ru_maxrss / 1024:.0f} MB")
    return usage.ru_maxrss / 1024


@pytest.mark.slow
def test_a_50000_row_csv_is_screened_in_bounded_memory(tmp_path):
    small = _screen_peak_rss_mb(tmp_path, 5_000)
    large = _screen_peak_rss_mb(tmp_path, 50_000)
    assert large < small * 1.25, (small, large)  # ten times the rows, about the same memory
