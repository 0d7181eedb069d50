"""Screen comments: upload a CSV, check the guessed columns, run it through the model, filter and download."""

import pandas as pd
import streamlit as st

from aio_core.backends import missing_model
from aio_core.columns import column_samples
from aio_core.csvfile import inspect_csv, iter_rows
from aio_core.workflows import USER_ERRORS
from aio_core.workflows.exports import batch_export, record_batch_download
from aio_core.workflows.jobs import cancel_for, may_cancel, submit
from aio_core.workflows.screening import ScreenOptions, guess_columns
from app_pages.state import act, database, loaded_model, model, read, settings, uploaded_path
from app_pages.text import duration, md, t, words
from app_pages.widgets import correction_form, page, show_model_line, show_model_problem
from db.batches import BatchView, batch_rows, count_rows, list_batches
from db.jobs import JobView, list_jobs

who = page("screen")
config = settings()
model_shown = loaded_model() is not None
if not model_shown:
    missing = missing_model(config)  # a path that is not there is said now, not after Run is pressed
    if missing:
        st.error(t("model_failed", error=missing))
    else:
        st.caption(t("model_loads_on_run"))
else:
    show_model_line(loaded_model(), who)
upload = st.file_uploader(t("upload", mb=config.upload_mb), type=["csv", "tsv", "txt"], key="upload",
                          max_upload_size=config.upload_mb)
info = None
if upload is not None:
    if upload.size > config.upload_mb * 2**20:
        st.error(t("too_big", name=upload.name, size=upload.size / 2**20, mb=config.upload_mb))
        st.stop()
    try:
        with uploaded_path(upload) as path:
            info = inspect_csv(path, upload.name)
            guess = guess_columns(info)
            samples = column_samples(info)
            preview = pd.DataFrame([row for n, _, row in iter_rows(info) if n <= 20], columns=list(info.header))
    except USER_ERRORS as error:
        st.error(md(error))
        st.stop()
    st.caption(t("preview", rows=info.rows, encoding=info.encoding))
    st.dataframe(preview, hide_index=True, key="preview")
    optional = [None, *info.header]
    columns = st.columns(3)
    text_column = columns[0].selectbox(t("text_column"), info.header, key="text_column",
                                       index=info.header.index(guess.text_column))
    person_column = columns[1].selectbox(t("person_column"), optional, key="person_column",
                                         index=optional.index(guess.person_column),
                                         format_func=lambda c: t("none") if c is None else c)
    time_column = columns[2].selectbox(t("time_column"), optional, key="time_column",
                                       index=optional.index(guess.time_column),
                                       format_func=lambda c: t("none") if c is None else c)
    st.caption(md(t("text_sample", column=text_column,
                    values=" · ".join(f"“{v[:120]}”" for v in samples[text_column]) or t("none"))))
    if st.button(t("run_screening", rows=info.rows), key="run", type="primary"):
        state = model()
        if state.engine is None:
            show_model_problem(state)
            st.stop()
        if not model_shown:  # the line at the top already says which model, when it was loaded before
            show_model_line(state.engine, who)
        try:
            with uploaded_path(upload) as path:
                submitted = submit(path, ScreenOptions(text_column, person_column, time_column), engine=state.engine,
                                   db=database(), settings=config, file_name=upload.name, owner=who.username)
        except USER_ERRORS as error:
            st.error(md(error))
            st.stop()
        st.session_state["show_batch"] = submitted.batch_id  # the results below are this file's batch
        if submitted.job_id is None:
            st.success(md(submitted.message))


def announce(job: JobView) -> None:
    """How a job this browser session watched has ended, once."""
    if job.status == "complete":
        st.success(md(job.summary))
    elif job.status == "cancelled":
        st.info(t("job_cancelled", name=job.file_name, stored=job.rows_stored, total=job.rows,
                  next=job.rows_stored + 1))
    else:
        st.error(t("job_failed", name=job.file_name, error=job.error))


def show_job(job: JobView) -> None:
    if job.status == "queued":
        line = t("job_queued", name=job.file_name)
    elif job.status == "cancelling":
        line = t("job_cancelling", name=job.file_name)
    elif job.rows_per_second is None:
        line = t("job_starting", name=job.file_name, stored=job.rows_stored, total=job.rows)
    else:
        line = t("job_progress", name=job.file_name, stored=job.rows_stored, total=job.rows, done=job.rows_done,
                 rate=job.rows_per_second, left=duration(job.seconds_left))
    columns = st.columns([6, 1], vertical_alignment="bottom")
    # The bar is what is kept: rows stored in whole chunks, the number a cancel reports; labelling runs ahead of it.
    columns[0].progress(job.rows_stored / max(job.rows, 1), text=line)
    if job.status in ("queued", "running") and may_cancel(who.role, who.username, job.owner):
        columns[1].button(t("job_cancel"), key=f"cancel_job_{job.id}", on_click=act, args=(cancel_for, job.id),
                          kwargs={"role": who.role, "username": who.username})


POLL_SECONDS = 1.0  # how often a running job's progress is read from the store

# Jobs this browser session has seen running: their end is announced here once, wherever the session was meanwhile.
watching: set[int] = st.session_state.setdefault("watching_jobs", set())
jobs = read(list_jobs, who.scope, ids=tuple(watching))
for job in jobs:
    if job.active:
        watching.add(job.id)
    elif job.id in watching:
        watching.discard(job.id)
        announce(job)
        if job.batch_id is not None:
            st.session_state.setdefault("show_batch", job.batch_id)


@st.fragment(run_every=POLL_SECONDS if any(job.active for job in jobs) else None)
def running_jobs() -> None:
    """The jobs in progress, read from the store every second; the whole page is drawn again when one ends."""
    current = [job for job in read(list_jobs, who.scope, ids=tuple(watching)) if job.active or job.id in watching]
    if any(not job.active for job in current):
        st.rerun()
    if current:
        st.subheader(t("jobs_running"))
        st.caption(t("jobs_help"))
    for job in current:
        watching.add(job.id)
        show_job(job)


running_jobs()

st.subheader(t("earlier_batches"))
batches = read(list_batches, who.scope)
if not batches:
    st.caption(t("no_batches"))
    st.stop()
st.dataframe(pd.DataFrame([{t("col_batch"): b.id, t("col_file"): b.file_name, t("col_rows"): b.row_count,
                            t("status_col"): t(f"batch_{b.status}"), t("col_model"): b.model,
                            t("col_prompt"): b.prompt_version, t("col_started"): b.started_at,
                            t("col_seconds"): round(b.seconds, 1)} for b in batches]), hide_index=True, key="batches")
ids = [b.id for b in batches]
if st.session_state.get("show_batch") not in ids:
    st.session_state["show_batch"] = ids[0]
batch_id = st.selectbox(t("show_batch"), ids, key="show_batch",
                        format_func=lambda i: next(f"#{b.id} {b.file_name}" for b in batches if b.id == i))
batch = next(b for b in batches if b.id == batch_id)

st.subheader(t("results", id=batch.id, name=batch.file_name))
controls = st.columns(3)
flagged_only = controls[0].toggle(t("flagged_only"), key="flagged_only")
threshold = controls[1].slider(t("threshold"), 0.5, 1.0, float(config.uncertain_below), 0.01, key="threshold")
ORDER_NAMES = {"row": "sort_row", "negative": "sort_negative", "risk": "sort_risk"}
order = controls[2].selectbox(t("sort_by"), list(ORDER_NAMES), key="sort", format_func=lambda o: t(ORDER_NAMES[o]))
# What the reviewer asked to see, as one query: the table shows it and the download writes exactly it.
view = BatchView(flagged_only=flagged_only, threshold=threshold, order=order)
SHOWN = 5000
rows = read(lambda session: list(batch_rows(session, batch_id, view, limit=SHOWN)))
total = read(count_rows, batch_id, view)
COLUMNS = ("row", "person", "text", "label", "confidence", "uncertain", "risk", "flagged")
table = pd.DataFrame([{"row": r.row, "person": r.person, "text": r.text, "label": t(r.label) if r.label else None,
                       "confidence": r.confidence, "uncertain": r.uncertain,
                       "risk": words("risk_none" if r.risk == "none" else f"level_{r.risk}") if r.risk else None,
                       "flagged": r.flagged} for r in rows], columns=list(COLUMNS))
table.columns = [t(f"col_{c}") for c in COLUMNS]  # the headers in the reader's language; the download keeps ours
st.caption(t("rows_shown", shown=len(table), total=total))
count_rows_shown = len(table)
st.dataframe(table, hide_index=True, key="results",
             column_config={t("col_confidence"): st.column_config.NumberColumn(format="%.2f")})

correction_form("screen_fix", {r.message_id: words(
    "fix_choice_row", row=r.row, text=r.text[:60], label=words(r.label) if r.label else words("unlabelled_badge"))
    for r in rows}, who)

db = database()
st.download_button(t("download"), data=lambda: batch_export(db, batch_id, view).data,
                   file_name=f"screened-{batch.file_name.rsplit('.', 1)[0]}.csv", mime="text/csv", key="download",
                   on_click=lambda: act(record_batch_download, who.username, batch_id, count_rows_shown))
