"""The widgets pages share: the language picker and page start, the model's line and readers, label correction and
risk review forms, the people table and the filter bar."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from aio_core.engine import Engine, loaded_engine, refresh_heads
from aio_core.workflows import USER_ERRORS, autofit
from aio_core.workflows.alerts import correct_label, review_risk
from aio_core.workflows.learning import rescore
from app_pages.state import ModelState, act, can, database, flash, model, read, rule, settings, show_flash
from app_pages.strings import text
from app_pages.text import Markdown, md, t
from db.access import PAGES
from db.corrections import zero_shot_count
from db.reports import SOURCES, Filters, groups
from db.users import Viewer


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
        waiting = [t(f"fit_until_{s}") for s in ("label", "risk") if s in status.stages and s not in status.finished]
        st.progress(status.share, text=Markdown(" ".join([t("fit_running", stage=stage, share=status.share),
                                                           *waiting])))
    elif status is not None and status.state == "failed" and can(who, "manage_users"):
        st.error(t("fit_failed", error=md(status.error)))
    fresh = loaded_engine(settings()) or engine  # a fit in this process puts each head in use as it is saved
    if status is not None and status.state == "done" and autofit.missing(fresh):
        fresh = refresh_heads(settings()) or fresh  # fitted by another process (fit-head --missing)
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
            done = act(correct_label, message_id, label, by=who.name, rule=rule(), scope=who.scope)
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
            done = act(review_risk, message_id, level, category, by=who.name, username=who.username, note=note,
                       scope=who.scope)
            if done is not None:
                st.success(t("reviewed", id=message_id, verdict=t(RISK_VERDICTS[level])))


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
