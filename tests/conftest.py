"""Shared fixtures: the real tiny random-weight Qwen2 model (built in-process, never downloaded) and real SQLite
files in a temporary folder."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (gguf_file) import as plain modules

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test must never reach for the network
# The dashboard fits missing heads from the shipped sets in the background (minutes of model time); the tests of that
# (test_autofit.py) turn it on with small sets of their own, every other page and server test runs without it.
os.environ.setdefault("AIO_AUTOFIT", "off")

from helpers import CHROMIUM, PASSWORD, dashboard_env, people, url_of  # noqa: E402

from aio_core.engine import Engine, load_engine  # noqa: E402
from aio_core.settings import Settings  # noqa: E402
from db.rules import AlertRule  # noqa: E402
from db.session import make_db  # noqa: E402

# Tests see the phrase list only unless they fit a risk head on the tiny model (`test_risk_head.py`); and no head a
# developer fitted under ./data can leak into a test.
TINY = Settings(model="tiny-random", dtype="float32", db_url="sqlite://", risk="phrases",
                data_dir=tempfile.mkdtemp(prefix="aio-test-data-"))


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The tiny model, fp32 so that comparisons between code paths can be tight."""
    return load_engine(TINY)


@pytest.fixture(scope="session")
def with_model_risk(engine: Engine) -> Engine:
    """The same loaded tiny model with AIO_RISK=auto (the risk head when one is fitted; none is, by default)."""
    return dataclasses.replace(engine, settings=engine.settings.replace(risk="auto"), risk_note="no risk head fitted")


# AIO_TEST_DB_URL=postgresql+psycopg://... runs every test that uses `db` against that server instead of a SQLite
# file (tests about SQLite itself build their own files). Its tables are dropped before each test.
TEST_DB_URL = os.environ.get("AIO_TEST_DB_URL")


@pytest.fixture
def db(tmp_path: Path):
    if TEST_DB_URL:
        from sqlalchemy import create_engine

        from db.models import Base

        cleaner = create_engine(TEST_DB_URL)
        Base.metadata.drop_all(cleaner)
        cleaner.dispose()
    database = make_db(TEST_DB_URL or f"sqlite:///{tmp_path / 'aio.db'}")
    yield database
    database.dispose()


@pytest.fixture
def rule() -> AlertRule:
    return AlertRule()


@pytest.fixture
def school(db, tmp_path, monkeypatch):
    """The dashboard with sign-in on, two classes of students (`helpers.people`) and an account of each role."""
    from db.session import writing
    from db.users import add_user

    dashboard_env(monkeypatch, tmp_path, url_of(db), auth="local")
    people(db)
    with writing(db) as session:
        add_user(session, "admin", PASSWORD, role="admin", by="test")
        add_user(session, "lee", PASSWORD, role="teacher", by="test", groups=("Class A",))
        add_user(session, "cara", PASSWORD, role="counsellor", by="test", groups=("Class A",))
        add_user(session, "mod", PASSWORD, role="moderator", by="test")
        add_user(session, "ann", PASSWORD, role="student", by="test", groups=("Class A",), person="ann")
    return db


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, which .ci/run installs), driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"])
        yield chromium
        chromium.close()
