"""Streamlit glue for every page: settings, the one cached engine and database, UI language, and safe text.

User text and model output are rendered through `plain()`: every ASCII punctuation mark is backslash-escaped, so
markdown links (`[x](javascript:...)`), images, HTML, LaTeX and Streamlit's `:red[...]` directives all show as the
literal characters that were typed. Nothing here passes `unsafe_allow_html`.
"""

from __future__ import annotations

import contextlib
import os
import string
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import streamlit as st
from sqlalchemy import Engine as Database

from aio_core.classify import badge
from aio_core.engine import Engine, get_engine, loaded_engine
from aio_core.settings import Settings
from aio_core.workflows import USER_ERRORS, alert_rule
from db.corrections import correct_label
from db.rules import AlertRule
from db.session import make_db, reading, writing
from pages.strings import text

T = TypeVar("T")


def settings() -> Settings:
    try:
        return Settings.from_env()
    except USER_ERRORS as error:
        st.error(str(error))
        st.stop()


def lang() -> str:
    return st.session_state.get("lang") or settings().ui_lang


def t(key: str, **values: object) -> str:
    return text(key, lang(), **values)


def page(title_key: str) -> str:
    """Common page start: the language picker in the sidebar and the page title. Returns the language."""
    default = settings().ui_lang
    st.sidebar.selectbox(text("language", default), ["en", "zh"], key="lang",
                         index=["en", "zh"].index(st.session_state.get("lang", default)),
                         format_func=lambda code: {"en": "English", "zh": "中文"}[code])
    st.title(t(title_key))
    return lang()


@st.cache_resource(show_spinner=False)
def _database(url: str) -> Database:
    return make_db(url)


def database() -> Database:
    try:
        return _database(settings().db_url)
    except USER_ERRORS as error:
        st.error(str(error))
        st.stop()


def read(query: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run one store query in a read transaction; a database problem is shown as its sentence and stops the page."""
    try:
        with reading(database()) as session:
            return query(session, *args, **kwargs)
    except USER_ERRORS as error:
        st.error(str(error))
        st.stop()


def write(change: Callable[..., T], *args: object, **kwargs: object) -> T | None:
    """Run one store change in a write transaction; on a problem show its sentence (nothing half-written)."""
    try:
        with writing(database()) as session:
            return change(session, *args, **kwargs)
    except USER_ERRORS as error:
        st.error(str(error))
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
                return ModelState(get_engine(config, retry=retry), None)
        return ModelState(get_engine(config), None)
    except USER_ERRORS as error:
        return ModelState(None, str(error))


def loaded_model() -> Engine | None:
    """The engine if this process has already loaded it, without loading it."""
    return loaded_engine(settings())


def show_model_problem(state: ModelState) -> None:
    st.error(t("model_failed", error=state.error))
    if st.button(t("retry_model"), key="retry_model"):
        model(retry=True)
        st.rerun()


def show_model_line(engine: Engine) -> None:
    st.caption(t("model_ready", name=engine.description))
    if engine.is_random:
        st.warning(t("model_random"))


def rule() -> AlertRule:
    return alert_rule(settings())


@contextlib.contextmanager
def uploaded_path(upload: object) -> Iterator[Path]:
    """The uploaded bytes as a temporary file for the duration of one operation, then deleted: no copy of an
    uploaded file is left on disk (the store keeps the rows it needs)."""
    handle, name = tempfile.mkstemp(suffix=".csv", prefix="aio-upload-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(upload.getvalue())
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


_MARKDOWN_SPECIAL = set(string.punctuation)


def plain(value: object) -> str:
    """Text that markdown shows exactly as written: punctuation escaped, line breaks kept."""
    escaped = "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in str(value))
    return escaped.replace("\r\n", "\n").replace("\n", "  \n")


def plain_stream(pieces: Iterable[str]) -> Iterator[str]:
    """`plain()` for a streamed reply, piece by piece (each character is escaped on its own)."""
    for piece in pieces:
        yield plain(piece)


def label_badge(label: str | None, confidence: float | None, uncertain: bool | None) -> str:
    """A stored label's badge in the page's language; messages stored without a model say so."""
    return "⏳ " + t("unlabelled_badge") if label is None else badge(label, confidence, bool(uncertain), lang())


def risk_badge(level: str | None, category: str | None) -> str:
    """A stored risk assessment's badge in the page's language; empty when there is no risk."""
    if level not in ("concern", "urgent"):
        return ""
    return t(f"risk_{level}", category=t(category) if category else "?")


def correction_form(key: str, choices: dict[int, str]) -> None:
    """Correct one shown message's label ({message id: how it is shown}). Stored with who and when; the model's label
    is kept, and from now on the effective label (alerts, trends, exports) is the person's."""
    if not choices:
        return
    with st.expander(t("correct_label")):
        message_id = st.selectbox(t("message"), list(choices), key=f"{key}_message", format_func=choices.get)
        columns = st.columns(2)
        label = columns[0].radio(t("right_label"), ["positive", "negative"], key=f"{key}_label", format_func=t,
                                 horizontal=True)
        who = columns[1].text_input(t("your_name"), key=f"{key}_who")
        if st.button(t("save_correction"), key=f"{key}_save"):
            done = write(correct_label, message_id, label, by=who, rule=rule())
            if done is not None:
                st.success(t("corrected", id=message_id, label=t(label)))
