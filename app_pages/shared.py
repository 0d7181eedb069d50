"""Streamlit glue for every page: settings, the one cached engine and database, UI language, and safe text.

Streamlit renders markdown in nearly every string it shows: messages, captions, subheaders, and the labels of
buttons, inputs and expanders. So text from a user, a file or the model is never put there as it is:

- `t(key, **values)` is the product's own sentence with each value made `inert()`: the characters that make links
  (`[x](javascript:...)`, `<http://...>`, bare `www.` and e-mail autolinks), images, Streamlit's `:red[...]`
  directives and LaTeX backslash-escaped, so a file name, a handle or a person's name shows as it was typed;
- `md(text)` is any other sentence (an error that names a file, a job's summary) made inert the same way;
- `plain(text)` escapes every ASCII punctuation mark, for what people and the model wrote (messages, replies).

`t` and `md` return `Markdown`, which is never escaped twice. Nothing here passes `unsafe_allow_html`.
"""

from __future__ import annotations

import contextlib
import os
import re
import string
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TypeVar

import streamlit as st
from sqlalchemy import Engine as Database

from aio_core.classify import badge
from aio_core.engine import Engine, get_engine, loaded_engine, refresh_heads
from aio_core.settings import Settings
from aio_core.workflows import USER_ERRORS, alert_rule, autofit
from aio_core.workflows.jobs import start_worker
from aio_core.workflows.learning import rescore
from aio_core.workflows.notify import start_sender
from aio_core.workflows.privacy import apply_retention
from app_pages.strings import STRINGS, text
from db.access import ACTIONS, PAGES
from db.alerts import RULE
from db.corrections import correct_label, review_risk, zero_shot_count
from db.phrases import read_phrase
from db.privacy import audit
from db.reports import SOURCES, Filters, groups
from db.rules import AlertRule
from db.session import make_db, reading, writing
from db.users import Viewer, get_setting

T = TypeVar("T")


def settings() -> Settings:
    try:
        return Settings.from_env()
    except USER_ERRORS as error:
        st.error(md(error))
        st.stop()


def lang() -> str:
    return st.session_state.get("lang") or settings().ui_lang


class Markdown(str):
    """Text that is safe to render as markdown: escaped where it came from anyone but the product."""


class _Escaped:
    """A value in a translated sentence: formatted as its placeholder asks ({rows:,}), then escaped."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        return inert(format(self.value, spec))


def t(key: str, **values: object) -> Markdown:
    """The sentence `key` in the page's language, with every value escaped (see the module's docstring)."""
    return Markdown(text(key, lang(), **{name: value if isinstance(value, Markdown) else _Escaped(value)
                                         for name, value in values.items()}))


def words(key: str, **values: object) -> str:
    """The sentence `key` in the page's language, not escaped: for what Streamlit shows as plain text (a select
    box's options, a table's cells), where an escape would show as a backslash."""
    return text(key, lang(), **values)


# Values inside the store's own sentences that are words of ours, not someone's text (db/phrases.py).
_PHRASE_WORDS = {"level": lambda v: f"level_{v}", "category": lambda v: v}


def said(stored: str | None) -> str:
    """A sentence the store wrote itself (the rule that fired, a note in an alert's history) in the reader's
    language; anything else (a person's own note) as it was written. Plain text, for table cells."""
    found = read_phrase(stored)
    if found is None:
        return stored or ""
    key, values = found
    shown = {}
    for name, value in values.items():
        if name == "rule":
            shown[name] = said(value)
        elif name in _PHRASE_WORDS and _PHRASE_WORDS[name](value) in STRINGS:
            shown[name] = words(_PHRASE_WORDS[name](value))
        else:
            shown[name] = value
    return words(key, **shown)


def actor(by: str | None) -> str:
    """Who made a change: a person's name, or the product itself (the rule) in the reader's language."""
    return words("actor_rule") if by == RULE else by or ""


def md(value: object) -> Markdown:
    """Any text made safe to show where Streamlit renders markdown (already safe text is left as it is)."""
    return value if isinstance(value, Markdown) else Markdown(inert(value))


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
    if "_viewer" not in st.session_state:  # a page run on its own (dashboard.py signs in on every run)
        from app_pages.signin import viewer

        viewer()
    who = st.session_state["_viewer"]
    if title_key not in PAGES[who.role]:
        st.error(t("not_allowed"))
        st.stop()
    st.title(t(title_key))
    show_flash()
    return who


def can(who: Viewer, action: str) -> bool:
    return action in ACTIONS[who.role]


@st.cache_resource(show_spinner=False)
def _database(url: str) -> Database:
    return make_db(url)


def database() -> Database:
    try:
        return _database(settings().db_url)
    except USER_ERRORS as error:
        st.error(md(error))
        st.stop()


@st.cache_resource(show_spinner=False)
def _jobs_resumed(url: str) -> bool:
    return start_worker(settings(), database())


def resume_jobs() -> None:
    """On the first page view after the server starts: screenings its previous run left unfinished carry on (the
    worker thread takes back jobs whose process is gone, and resumes them from their last stored chunk)."""
    _jobs_resumed(settings().db_url)


def resume_notifications() -> None:
    """On every page view: make sure this process sends the store's notifications (a thread, started once; again
    if it ever stopped), when a channel is set up (AIO_SMTP_URL or AIO_WEBHOOK_URL)."""
    start_sender(settings(), database())


def read(query: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run one store query in a read transaction; a database problem is shown as its sentence and stops the page."""
    try:
        with reading(database()) as session:
            return query(session, *args, **kwargs)
    except USER_ERRORS as error:
        st.error(md(error))
        st.stop()


def write(change: Callable[..., T], *args: object, **kwargs: object) -> T | None:
    """Run one store change in a write transaction; on a problem show its sentence (nothing half-written)."""
    try:
        with writing(database()) as session:
            return change(session, *args, **kwargs)
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


def show_model_problem(state: ModelState) -> None:
    st.error(t("model_failed", error=state.error))
    if st.button(t("retry_model"), key="retry_model"):
        model(retry=True)
        st.rerun()


def show_model_line(engine: Engine, who: Viewer) -> None:
    """The model by its own name and how it runs, in the reader's language; where its files are (a path on the
    server, a server's address) only to an admin."""
    line = t("model_ready", name=engine.title)
    source = t(f"model_source_{engine.source}")
    runtime = engine.runtime
    line += md(" · ") + (source if engine.source == "openai" else t(
        "model_how", source=source, dtype=runtime["dtype"], device=str(runtime["device"]).upper()))
    if can(who, "see_model_files") and engine.name != engine.title:
        line += md(" · ") + t("model_where", path=engine.name)
    if engine.head is not None:
        line += md(" · ") + t("labels_by_head_shipped" if engine.head.meta.get("fitting_set") == "shipped"
                              else "labels_by_head_own")
    else:
        line += md(" · ") + t("labels_zero_shot")
    st.caption(line)
    if engine.is_random:
        st.warning(t("model_random"))


def readers_panel(engine: Engine, who: Viewer) -> None:
    """The background fit of this model's readers (autofit.py): its progress while it runs (labels stay zero-shot
    and the page says so), its error if it failed, and, once the label head is in use, the offer to re-score what
    was labelled zero-shot before (an admin's)."""
    autofit.start(engine)  # a fit a restart stopped carries on; nothing when every head is there
    status = autofit.read_status(engine.settings, engine.fingerprint, engine.prompt.version)
    if status is not None and status.active:
        stage = t(f"reader_{status.stage or status.stages[0]}")
        st.progress(status.share, text=t("fit_running", stage=stage, share=status.share))
    elif status is not None and status.state == "failed" and can(who, "manage_users"):
        st.error(t("fit_failed", error=md(status.error)))
    fresh = refresh_heads(settings()) or engine
    if fresh.head is None or not can(who, "manage_users"):
        return
    waiting = read(zero_shot_count, fresh.fingerprint)
    if waiting:
        st.info(t("rescore_offer", count=waiting))
        if st.button(t("rescore_zero_shot"), key="rescore_zero_shot"):
            try:
                rows, changed = rescore(engine=fresh, db=database(), by=who.name, zero_shot=True)
            except USER_ERRORS as error:
                st.error(md(error))
            else:
                flash(t("rescored", rows=rows, changed=changed))
                st.rerun()


def rule() -> AlertRule:
    """The alert rule in force: the one an admin saved, else the AIO_ALERT_* settings."""
    return alert_rule(settings(), database())


UPLOAD_PREFIX = "aio-upload-"
STALE_UPLOAD = 3600  # seconds: no preview or submit holds its copy this long; an older one was left by a crash


def uploads_dir() -> Path:
    """Where an upload is copied while one operation reads it: the data folder, owner-only."""
    folder = Path(settings().data_dir) / "uploads"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


@contextlib.contextmanager
def uploaded_path(upload: object) -> Iterator[Path]:
    """The uploaded bytes as a temporary file for the duration of one operation, then deleted: no copy of an
    uploaded file is left on disk (the store keeps the rows it needs; `sweep_uploads` removes what a killed process
    left)."""
    handle, name = tempfile.mkstemp(suffix=".csv", prefix=UPLOAD_PREFIX, dir=uploads_dir())
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(upload.getvalue())
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


_MARKDOWN_SPECIAL = set(string.punctuation)
# What can turn text into something else than text: links and images ([ ] ( ) < > !), Streamlit's
# :directives[...] and :icons: (:), LaTeX ($), code (`), and the backslash itself. Ordinary punctuation of a sentence
# (. , ; ' " - / = % @) is left alone, so sentences read as written wherever they are shown.
_INERT = set("\\[]()<>!:$`")
# Bare web addresses become links after escapes are read (GFM's autolink literals: http://..., www....), so an
# invisible word joiner is put inside each: it shows the same, and no longer reads as an address. (An e-mail
# address still becomes a mailto: link, which opens no page and loads nothing.)
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)", re.IGNORECASE)


def inert(value: object) -> str:
    """Text that markdown cannot turn into a link, an image, a directive or a formula (see _INERT)."""
    escaped = "".join("\\" + c if c in _INERT else c for c in str(value))
    return _AUTOLINK.sub("\u2060", escaped).replace("\r\n", "\n").replace("\n", "  \n")


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
    is kept, and from now on the effective label (alerts, trends, exports) is the person's. Only for a viewer who
    may read the texts: a label cannot be judged from a time and the label itself."""
    if not choices or not can(who, "correct_labels") or not who.scope.texts:
        return
    with st.expander(t("correct_label")):
        message_id = st.selectbox(t("message"), list(choices), key=f"{key}_message", format_func=choices.get)
        label = st.radio(t("right_label"), ["positive", "negative"], key=f"{key}_label", format_func=t,
                         horizontal=True)
        if st.button(t("save_correction"), key=f"{key}_save"):
            done = write(correct_label, message_id, label, by=who.name, rule=rule(), scope=who.scope)
            if done is not None:
                st.success(t("corrected", id=message_id, label=t(label)))


RISK_VERDICTS = {"none": "not_a_risk", "concern": "risk_level_concern", "urgent": "risk_level_urgent"}
RISK_CATEGORIES = ("self-harm", "harm-to-others", "abuse", "bullying")


def risk_review_form(key: str, choices: dict[int, str], who: Viewer) -> None:
    """A counsellor's review of one shown message's risk ({message id: how it is shown}): "not a risk", or a risk
    with its level and category. Stored with who and when beside the assessment; its alert opens or closes at once,
    and the next `fit-head --risk --with-corrections` learns from it."""
    if not choices or not can(who, "review_risk") or not who.scope.texts:
        return
    with st.expander(t("review_risk")):
        message_id = st.selectbox(t("message"), list(choices), key=f"{key}_message", format_func=choices.get)
        level = st.radio(t("risk_verdict"), list(RISK_VERDICTS), key=f"{key}_level",
                         format_func=lambda v: t(RISK_VERDICTS[v]), horizontal=True)
        category = None if level == "none" else st.selectbox(t("risk_category"), RISK_CATEGORIES,
                                                                key=f"{key}_category", format_func=t)
        note = st.text_input(t("note"), key=f"{key}_note")
        if st.button(t("save_review"), key=f"{key}_save"):
            done = write(review_risk, message_id, level, category, by=who.name, note=note, scope=who.scope)
            if done is not None:
                write(audit, who.username, "risk.review", str(message_id), f"{level} {category or ''}".strip())
                st.success(t("reviewed", id=message_id, verdict=t(RISK_VERDICTS[level])))


_RETENTION_DAY: dict[str, object] = {}
_SWEPT: dict[str, float] = {}


def daily_retention() -> None:
    """Delete messages older than the admin's retention setting: on the first page view of each day (so on start
    and daily), logged in the audit trail, the files compacted so no copy of them remains."""
    today = date.today()
    if _RETENTION_DAY.get(settings().db_url) == today:
        return
    _RETENTION_DAY[settings().db_url] = today
    days = int(read(get_setting, "retention_days"))
    if days > 0:
        apply_retention(database(), days, by="retention")


def sweep_uploads() -> None:
    """Delete upload copies older than an hour that a killed process left behind (here, and where versions before
    this one kept them: the system's temporary folder). At start, then hourly."""
    folder = str(uploads_dir())
    if time.monotonic() - _SWEPT.get(folder, -STALE_UPLOAD) < STALE_UPLOAD:
        return
    _SWEPT[folder] = time.monotonic()
    for place in (Path(folder), Path(tempfile.gettempdir())):
        for file in place.glob(f"{UPLOAD_PREFIX}*.csv"):
            with contextlib.suppress(OSError):  # another process's file, or gone meanwhile
                if time.time() - file.stat().st_mtime > STALE_UPLOAD and file.stat().st_uid == os.getuid():
                    file.unlink()


def flash(message: str) -> None:
    """A success message that survives the rerun an action ends with."""
    st.session_state["_flash"] = message


def show_flash() -> None:
    if "_flash" in st.session_state:
        st.success(md(st.session_state.pop("_flash")))


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
        chosen_groups = columns[0].multiselect(t("groups"), read(groups, who.scope), key=f"{key}_groups",
                                               placeholder=t("choose_options"))
        sources = columns[1].multiselect(t("sources"), list(SOURCES), key=f"{key}_sources",
                                         format_func=lambda s: t(f"source_{s}"), placeholder=t("choose_options"))
        days = columns[2].date_input(t("date_range"), value=(), key=f"{key}_dates")
        search = columns[3].text_input(t("search" if who.scope.texts else "search_names"), key=f"{key}_search")
        # Students and the authors of uploaded comments are two populations; only a viewer who reads every group
        # can see commenters at all, and then only when asked.
        commenters = who.scope.groups is None and who.scope.people and st.toggle(
            t("include_commenters"), key=f"{key}_commenters", help=t("include_commenters_help"))
    since = until = None
    if len(days) == 2:
        since = datetime.combine(days[0], datetime.min.time())
        until = datetime.combine(days[1], datetime.max.time())
    return Filters(groups=tuple(chosen_groups), sources=tuple(sources), since=since, until=until, search=search,
                   commenters=bool(commenters))


def window(filters: Filters, days: int) -> Markdown:
    """The span the people figures cover, in words: the chosen date range, else the rule's last `days` days."""
    if filters.dated:
        return t("window_range", since=filters.since or datetime.min, until=filters.until or datetime.max)
    return t("window_days", days=days)
