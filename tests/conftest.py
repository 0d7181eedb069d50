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
