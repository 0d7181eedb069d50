"""What several test modules share, in one place: the dashboard's test environment (the tiny model, a data folder and
a database of the test's own), a real dashboard server, CSVs of comments, the seeded school, and small readers of
what a page shows. Shared fixtures are in conftest.py; test modules never import each other."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.jobs import list_jobs
from db.models import Message
from db.rules import AlertRule
from db.session import reading, writing
from db.store import NewMessage, add_messages

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# ---- the dashboard in this process (Streamlit's AppTest) ------------------------------------------------------------

def dashboard_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, **settings: str) -> None:
    """The environment every page test runs the dashboard in: the tiny model, the phrase list for risk (the random
    model's risk readout is noise), this test's data folder and database; `settings` adds or overrides AIO_* values
    (auth="off" → AIO_AUTH=off)."""
    values = {"AIO_MODEL": "tiny-random", "AIO_DB_URL": db_url, "AIO_RISK": "phrases",
              "AIO_DATA_DIR": str(tmp_path / "data"), **{f"AIO_{k.upper()}": v for k, v in settings.items()}}
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def url_of(database) -> str:
    """The URL a dashboard or a subprocess opens the same database with (a server's password included)."""
    return database.url.render_as_string(hide_password=False)


def open_app() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()


def signed_in(username: str, password: str = PASSWORD) -> AppTest:
    at = open_app()
    at.text_input(key="signin_user").set_value(username)
    at.text_input(key="signin_password").set_value(password)
    at.button[0].click().run()
    return at


def everything_shown(at: AppTest) -> str:
    parts = [str(e.value) for kind in ("markdown", "caption", "error", "warning", "info", "title") for e in
             getattr(at, kind)]
    parts += [d.value.to_csv() for d in at.dataframe]
    return "\n".join(parts)


def frame(at: AppTest, *columns: str):
    """The first table on the page that has all these columns (AppTest cannot find tables by key)."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def values(elements) -> list[str]:
    return [str(e.value) for e in elements]


def screened(at: AppTest, db) -> AppTest:
    """Press Screen, wait for the background job to end (as a user would watch the progress), then look again."""
    at.button(key="run").click().run()
    assert not at.exception
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with reading(db) as session:
            if not list_jobs(session):
                return at.run()
        time.sleep(0.05)
    pytest.fail("the screening job did not end")


# ---- stored data -----------------------------------------------------------------------------------------------------

def people(db) -> None:
    """Two students in two classes, six negative messages each, the first an urgent risk."""
    start = datetime(2026, 4, 1, 9)
    rows = []
    for handle, group in (("ann", "Class A"), ("ben", "Class B")):
        rows += [NewMessage(f"{handle} secret {i}", "chat", person=handle, group=group, label="negative",
                            confidence=0.9, p_negative=0.9, uncertain=False, risk="urgent" if i == 0 else "none",
                            risk_category="self-harm" if i == 0 else None, created_at=start + timedelta(days=i))
                 for i in range(6)]
    with writing(db) as session:
        add_messages(session, rows, rule=AlertRule())


def comments(path: Path, n: int, *, blank_every: int = 0) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["author", "comment", "posted"])
        for i in range(n):
            good = "很好" if i % 2 else "很差"
            text = "" if blank_every and i % blank_every == 0 else f"comment {i}: 这个产品{good}"
            writer.writerow([f"user{i % 7}", text, f"2026-05-{1 + i % 28:02d} 10:{i % 60:02d}"])
    return path


def stored(db) -> list[int]:
    with reading(db) as session:
        return list(session.scalars(select(Message.row_index).order_by(Message.row_index)))


# ---- real servers ----------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path, what: str, *, seconds: float) -> None:
    """Wait until `url` answers; if it never does, stop the process and fail with the end of its log."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.3)
    process.kill()
    pytest.fail(f"{what} did not start: " + log.read_text()[-2000:])


@contextlib.contextmanager
def serve_dashboard(folder: Path, extra: dict[str, str], *, port: int | None = None,
                    options: tuple[str, ...] = ()):
    """A real `streamlit run dashboard.py` on a free loopback port, stopped afterwards."""
    env = {**os.environ, "AIO_MODEL": "tiny-random", "AIO_RISK": "phrases", "AIO_DATA_DIR": str(folder / "data"),
           "PYTHONPATH": str(ROOT), **extra}
    log = (folder / "streamlit.log").open("w")
    port = port or free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port),
                               "--server.address", "127.0.0.1", "--server.headless", "true", *options],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(f"{base}/_stcore/health", server, folder / "streamlit.log", "the dashboard", seconds=60)
    try:
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def settle(page) -> None:
    """Wait until the script has finished: no spinner, no 'running' status, then a moment for charts to draw."""
    page.wait_for_function("!document.querySelector('[data-testid=\"stSpinner\"]') && "
                           "!document.querySelector('[data-testid=\"stStatusWidget\"] [data-testid*=\"Running\"]')",
                           timeout=90_000)
    page.wait_for_timeout(1500)
