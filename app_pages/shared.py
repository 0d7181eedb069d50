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
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import streamlit as st
from sqlalchemy import Engine as Database

from aio_core.classify import badge
from aio_core.engine import Engine, get_engine, loaded_engine
from aio_core.settings import Settings
from aio_core.workflows import USER_ERRORS, alert_rule
from aio_core.workflows.jobs import start_worker
from app_pages.strings import text
from db.access import ACTIONS, EVERYTHING, PAGES
from db.corrections import correct_label
from db.privacy import apply_retention, audit
from db.reports import SOURCES, Filters, groups
from db.rules import AlertRule
from db.session import make_db, reading, writing
from db.users import (
    SignInError,
    Viewer,
    add_user,
    count_users,
    get_setting,
    sign_in,
    sign_in_oidc,
    sign_out,
    viewer_for,
)

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


def language_picker() -> None:
    """The sidebar's language choice, kept in a plain session key (not the widget's), so it holds on every page and
    every rerun of this browser session."""
    default = settings().ui_lang
    st.session_state.setdefault("lang", default)

    def chosen() -> None:
        st.session_state["lang"] = st.session_state["lang_picker"]

    st.sidebar.selectbox(text("language", default), ["en", "zh"], key="lang_picker",
                         index=["en", "zh"].index(st.session_state["lang"]), on_change=chosen,
                         format_func=lambda code: {"en": "English", "zh": "中文"}[code])


def page(title_key: str) -> Viewer:
    """Common page start: who is signed in (a page their role may not open stops here, whatever the URL), the
    language picker and the page title. Returns the viewer."""
    who = st.session_state.get("_viewer") or viewer()  # dashboard.py signed in on this run
    if title_key not in PAGES[who.role]:
        st.error(t("not_allowed"))
        st.stop()
    st.title(t(title_key))
    show_flash()
    return who


# ---- sign-in --------------------------------------------------------------------------------------------------------

LAPTOP = Viewer("local", "Local user", "admin", frozenset(), None, EVERYTHING)


def viewer() -> Viewer:
    """The signed-in user, or the sign-in form (and a stop). With AIO_AUTH=off, the single local user."""
    st.session_state.pop("_viewer", None)
    if settings().auth == "off":
        st.sidebar.warning(t("auth_off"))
        st.session_state["_viewer"] = LAPTOP
        return LAPTOP
    token = st.session_state.get("auth_token")
    if token:
        try:
            with writing(database()) as session:
                found = viewer_for(session, token)
        except SignInError as error:
            st.session_state.pop("auth_token", None)
            st.session_state["auth_message"] = str(error)
            if school_signed_in():  # the provider's sign-in outlived ours: end it too, so sign-in is asked again
                st.logout()
                st.stop()
        else:
            st.sidebar.caption(t("signed_in_as", name=found.display_name, role=t(f"role_{found.role}")))
            st.sidebar.button(t("sign_out"), key="sign_out", on_click=_sign_out, args=(token, found.username))
            st.session_state["_viewer"] = found
            return found
    elif school_signed_in() and not st.session_state.get("school_refused"):
        # Back from the school's identity provider: its verified address picks the account, if there is one.
        hours = timedelta(hours=settings().session_hours)
        with writing(database()) as session:  # a refusal is logged, so this commits either way
            token, problem = sign_in_oidc(session, st.user.get("email") if st.user.get("email_verified", True)
                                          else None, issuer=str(st.user.get("iss", "")), lifetime=hours)
        if token:
            st.session_state["auth_token"] = token
            st.rerun()
        st.session_state["school_refused"] = problem
    sign_in_form()
    st.stop()


def _sign_out(token: str, username: str) -> None:
    """The Sign out button's callback (a callback, because the click's own rerun does not reach a widget in the
    entry point's sidebar before st.navigation in Streamlit 1.67)."""
    with writing(database()) as session:
        sign_out(session, token)
        audit(session, username, "signout")
    st.session_state.pop("auth_token", None)
    if school_signed_in():
        st.logout()  # ends the provider's sign-in too (its own sign-out page), then back here in a new session


def school_sign_in() -> bool:
    """Whether sign-in through the school's identity provider (Streamlit's st.login, OIDC) is configured: an
    `[auth]` section in .streamlit/secrets.toml (README, Security)."""
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return False


def school_signed_in() -> bool:
    return school_sign_in() and bool(st.user.is_logged_in)


def sign_in_form() -> None:
    st.title(t("app_title"))
    if read(count_users) == 0:
        first_admin_form()
        return
    if st.session_state.get("auth_message"):
        st.info(st.session_state.pop("auth_message"))
    if school_sign_in():
        refused = st.session_state.get("school_refused")
        if refused:
            st.error(refused)
            if st.button(t("oidc_other_account"), key="school_other"):
                st.session_state.pop("school_refused", None)
                st.logout()
        elif st.button(t("oidc_sign_in"), key="school_sign_in", type="primary"):
            st.login()
        st.caption(t("oidc_or_local"))
    with st.form("sign_in"):
        username = st.text_input(t("username"), key="signin_user")
        password = st.text_input(t("password"), type="password", key="signin_password")
        pressed = st.form_submit_button(t("sign_in"))
    if pressed:
        hours = timedelta(hours=settings().session_hours)
        with writing(database()) as session:  # a failed attempt is counted and logged, so this commits either way
            token, problem = sign_in(session, username, password, lifetime=hours)
        if problem:
            st.error(problem)
            return
        st.session_state["auth_token"] = token
        st.rerun()


def first_admin_form() -> None:
    st.info(t("first_admin"))
    with st.form("first_admin"):
        username = st.text_input(t("username"), key="first_user")
        display = st.text_input(t("display_name"), key="first_display")
        password = st.text_input(t("password"), type="password", key="first_password")
        again = st.text_input(t("password_again"), type="password", key="first_again")
        pressed = st.form_submit_button(t("create_admin"))
    if pressed:
        if password != again:
            st.error(t("passwords_differ"))
            return
        with writing(database()) as session:
            if count_users(session) == 0:  # another browser may have been quicker
                try:
                    add_user(session, username, password, role="admin", by="first start", display_name=display)
                except USER_ERRORS as error:
                    st.error(str(error))
                    return
        st.success(t("admin_created"))
        st.rerun()


def can(who: Viewer, action: str) -> bool:
    return action in ACTIONS[who.role]


@st.cache_resource(show_spinner=False)
def _database(url: str) -> Database:
    return make_db(url)


def database() -> Database:
    try:
        return _database(settings().db_url)
    except USER_ERRORS as error:
        st.error(str(error))
        st.stop()


@st.cache_resource(show_spinner=False)
def _jobs_resumed(url: str) -> bool:
    return start_worker(settings(), database())


def resume_jobs() -> None:
    """On the first page view after the server starts: screenings its previous run left unfinished carry on (the
    worker thread takes back jobs whose process is gone, and resumes them from their last stored chunk)."""
    _jobs_resumed(settings().db_url)


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


def model_name(engine: Engine) -> tuple[str, str]:
    """The model as a person knows it (its hub id, or the folder's name), and where it was loaded from."""
    name = engine.profile.hub_id or Path(engine.name).name
    return name, engine.description


def show_model_line(engine: Engine) -> None:
    name, where = model_name(engine)
    st.caption(t("model_ready", name=name) + f" · {where}")
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


def correction_form(key: str, choices: dict[int, str], who: Viewer) -> None:
    """Correct one shown message's label ({message id: how it is shown}). Stored with who and when; the model's label
    is kept, and from now on the effective label (alerts, trends, exports) is the person's."""
    if not choices or not can(who, "correct_labels"):
        return
    with st.expander(t("correct_label")):
        message_id = st.selectbox(t("message"), list(choices), key=f"{key}_message", format_func=choices.get)
        label = st.radio(t("right_label"), ["positive", "negative"], key=f"{key}_label", format_func=t,
                         horizontal=True)
        if st.button(t("save_correction"), key=f"{key}_save"):
            done = write(correct_label, message_id, label, by=who.name, rule=rule(), scope=who.scope)
            if done is not None:
                st.success(t("corrected", id=message_id, label=t(label)))


_RETENTION_DAY: dict[str, object] = {}


def daily_retention() -> None:
    """Delete messages older than the admin's retention setting: on the first page view of each day (so on start
    and daily), logged in the audit trail."""
    today = date.today()
    if _RETENTION_DAY.get(settings().db_url) == today:
        return
    _RETENTION_DAY[settings().db_url] = today
    with writing(database()) as session:
        days = int(get_setting(session, "retention_days"))
        if days > 0:
            removed = apply_retention(session, days)
            audit(session, "retention", "retention.apply", None, f"{removed} messages older than {days} days")


def flash(message: str) -> None:
    """A success message that survives the rerun an action ends with."""
    st.session_state["_flash"] = message


def show_flash() -> None:
    if "_flash" in st.session_state:
        st.success(st.session_state.pop("_flash"))


def people_table(frame: object, handles: list[str], key: str, **options: object) -> None:
    """A table whose rows are people (in `handles` order): choosing a row opens that person's page."""
    event = st.dataframe(frame, hide_index=True, key=key, on_select="rerun", selection_mode="single-row", **options)
    if event.selection.rows:
        st.session_state["open_person"] = handles[event.selection.rows[0]]
        st.switch_page("app_pages/trends.py")


def filter_bar(who: Viewer, key: str) -> Filters:
    """What the viewer asked to see: groups, sources, a date range and a search over names and texts. The same
    `Filters` go to every query of the page, so every figure on it follows them."""
    with st.expander(t("filters"), expanded=False):
        columns = st.columns(4)
        chosen_groups = columns[0].multiselect(t("groups"), read(groups, who.scope), key=f"{key}_groups")
        sources = columns[1].multiselect(t("sources"), list(SOURCES), key=f"{key}_sources",
                                         format_func=lambda s: t(f"source_{s}"))
        days = columns[2].date_input(t("date_range"), value=(), key=f"{key}_dates")
        search = columns[3].text_input(t("search"), key=f"{key}_search")
    since = until = None
    if len(days) == 2:
        since = datetime.combine(days[0], datetime.min.time())
        until = datetime.combine(days[1], datetime.max.time())
    return Filters(groups=tuple(chosen_groups), sources=tuple(sources), since=since, until=until, search=search)
