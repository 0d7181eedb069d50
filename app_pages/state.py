"""Streamlit glue for every page's state: settings, the one cached database and engine, reading the store and running
a workflow (pages change nothing themselves), the alert rule in force, uploads as temporary files, messages that
survive a rerun, and what the serving process keeps running."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import streamlit as st
from sqlalchemy import Engine as Database

from aio_core.engine import Engine, get_engine, loaded_engine
from aio_core.settings import Settings
from aio_core.workflows import USER_ERRORS, alert_rule, autofit, startup
from aio_core.workflows.startup import UPLOAD_PREFIX, uploads_dir
from app_pages.text import md, t
from db.access import ACTIONS
from db.rules import AlertRule
from db.session import make_db, reading
from db.users import Viewer

T = TypeVar("T")


def settings() -> Settings:
    try:
        return Settings.from_env()
    except USER_ERRORS as error:
        st.error(md(error))
        st.stop()


@st.cache_resource(show_spinner=False)
def _database(url: str) -> Database:
    return make_db(url)


def database() -> Database:
    try:
        return _database(settings().db_url)
    except USER_ERRORS as error:
        st.error(md(error))
        st.stop()


def read(query: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run one store query in a read transaction; a database problem is shown as its sentence and stops the page."""
    try:
        with reading(database()) as session:
            return query(session, *args, **kwargs)
    except USER_ERRORS as error:
        st.error(md(error))
        st.stop()


def act(workflow: Callable[..., T], *args: object, **kwargs: object) -> T | None:
    """Run one use-case of `aio_core.workflows` on the page's database (pages change nothing themselves); on a
    problem show its sentence and return None (the workflow's transaction left nothing half-written)."""
    try:
        return workflow(database(), *args, **kwargs)
    except USER_ERRORS as error:
        st.error(md(error))
        return None


@dataclass(frozen=True)
class ModelState:
    engine: Engine | None
    error: str | None


def model(*, retry: bool = False) -> ModelState:
    """The engine, loaded once for all sessions (spinner the first time); its error sentence if it cannot load."""
    config = settings()
    try:
        if loaded_engine(config) is None:
            with st.spinner(t("model_loading")):
                engine = get_engine(config, retry=retry)
        else:
            engine = get_engine(config)
        autofit.start(engine)  # the heads these weights lack are fitted in the background (once per process)
        return ModelState(engine, None)
    except USER_ERRORS as error:
        return ModelState(None, str(error))


def loaded_model() -> Engine | None:
    """The engine if this process has already loaded it, without loading it."""
    return loaded_engine(settings())


def rule() -> AlertRule:
    """The alert rule in force: the one an admin saved, else the AIO_ALERT_* settings."""
    return alert_rule(settings(), database())


@contextlib.contextmanager
def uploaded_path(upload: object) -> Iterator[Path]:
    """The uploaded bytes as a temporary file for the duration of one operation, then deleted: no copy of an
    uploaded file is left on disk (the store keeps the rows it needs; `sweep_uploads` removes what a killed process
    left)."""
    handle, name = tempfile.mkstemp(suffix=".csv", prefix=UPLOAD_PREFIX, dir=uploads_dir(settings()))
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(upload.getvalue())
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def flash(message: str) -> None:
    """A success message that survives the rerun an action ends with."""
    st.session_state["_flash"] = message


def show_flash() -> None:
    if "_flash" in st.session_state:
        st.success(md(st.session_state.pop("_flash")))


def can(who: Viewer, action: str) -> bool:
    return action in ACTIONS[who.role]


def keep_up() -> None:
    """On every page view: what the serving process keeps running (workflows/startup.py: the job worker, the
    notification sender, daily retention, the sweep of stale uploads); a problem is shown as its sentence."""
    try:
        startup.keep_up(settings(), database())
    except USER_ERRORS as error:
        st.error(md(error))
