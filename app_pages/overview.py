"""Overview: what is stored, who to look at first, activity by day, and the model's state."""

import altair as alt
import pandas as pd
import streamlit as st

from aio_core.workflows import USER_ERRORS
from aio_core.workflows.conversation import label_pending
from aio_core.workflows.demo import fill_demo
from app_pages.state import can, database, flash, loaded_model, model, read, rule
from app_pages.text import md, risk_badge, said, t, window
from app_pages.widgets import filter_bar, page, people_table, readers_panel, show_model_line, show_model_problem
from db.reports import overview_report

who = page("overview")
filters = filter_bar(who, "overview")
report = read(overview_report, scope=who.scope, filters=filters, rule_days=rule().days)
totals = report.totals

columns = st.columns(5)
columns[0].metric(t("messages_stored"), f"{totals.messages:,}")
columns[1].metric(t("negative_share"), f"{totals.negative_share:.0%}" if totals.labelled else "–")
columns[2].metric(t("urgent_metric"), totals.urgent_alerts)
columns[3].metric(t("open_alerts"), totals.open_alerts)
columns[4].metric(t("people"), totals.people)

if report.urgent:  # risk alerts come first, with the message that raised them
    st.subheader(t("urgent_alerts"))
    st.caption(t("choose_row"))
    people_table(pd.DataFrame([{
        t("person"): a.person.display_name, t("col_handle"): a.person.handle,
        t("col_risk"): risk_badge(a.severity, a.category),
        t("col_message"): a.message.text if a.message and who.scope.texts else "", t("at"): a.window_end,
        t("status_col"): t(f"status_{a.status}"),
    } for a in report.urgent]), [a.person.handle for a in report.urgent], "urgent")

if report.unrouted:  # an admin's: alerts that no teacher or counsellor sees, until someone's groups include them
    st.subheader(t("unrouted_alerts"))
    st.caption(t("unrouted_help"))
    people_table(pd.DataFrame([{
        t("person"): a.person.display_name, t("col_handle"): a.person.handle, t("col_group"): a.person.group_name or "",
        t("rule_col"): risk_badge(a.severity, a.category) if a.kind == "risk" else said(a.rule), t("at"): a.window_end,
        t("status_col"): t(f"status_{a.status}"),
    } for a in report.unrouted]), [a.person.handle for a in report.unrouted], "unrouted")

engine = loaded_model()
if engine is not None:
    show_model_line(engine, who)
    readers_panel(engine, who)
else:
    st.caption(t("model_not_loaded"))
    if st.button(t("load_model"), key="load_model"):
        state = model()
        if state.error:
            show_model_problem(state)
        else:
            st.rerun()

if totals.messages == 0 and can(who, "manage_users"):
    st.info(t("empty_store"))
    if st.button(t("fill_demo"), key="fill_demo", type="primary"):
        try:
            flash(fill_demo(database(), rule=rule()))
            st.rerun()
        except USER_ERRORS as error:
            st.error(md(error))

if report.unlabelled:
    st.warning(t("unlabelled", count=report.unlabelled))
    if engine is not None and can(who, "manage_users") and st.button(t("label_now"), key="label_pending"):
        st.success(t("labelled_now", count=label_pending(engine=engine, db=database(), rule=rule())))

st.subheader(t("look_first"))
if report.first_to_look_at:
    st.caption(t("choose_row"))
    people_table(pd.DataFrame([{
        t("person"): p.display_name, t("col_handle"): p.handle, t("group"): p.group or "",
        t("negative_share"): p.negative_share, t("open_alerts"): p.open_alerts,
        t("messages_window", window=window(filters, rule().days)): p.messages,
    } for p in report.first_to_look_at]), [p.handle for p in report.first_to_look_at], "look_first",
        column_config={t("negative_share"): st.column_config.ProgressColumn(format="percent", min_value=0,
                                                                            max_value=1)})
else:
    st.caption(t("nobody_to_look_at"))

if report.activity:
    st.subheader(t("activity"))
    activity = pd.DataFrame(report.activity, columns=["day", "label", "count"]).fillna({"label": "unlabelled"})
    activity["label"] = activity["label"].map(lambda label: t(label) if label != "unlabelled" else
                                              t("unlabelled_badge"))
    st.altair_chart(alt.Chart(activity).mark_bar().encode(
        # Dates as numbers: Vega-Lite's own labels ("Thu 02", "12 PM") are English in every language. One bar and at
        # most one tick per day: on a few days' range ticks every six hours all read the same date.
        x=alt.X("yearmonthdate(day):T", title=None,
                axis=alt.Axis(format="%Y-%m-%d", labelAngle=-30, tickCount="day")),
        y=alt.Y("count:Q", title=t("messages_stored"), axis=alt.Axis(tickMinStep=1, format="d")),  # whole messages
        color=alt.Color("label:N", title=None, scale=alt.Scale(
            domain=[t("positive"), t("negative"), t("unlabelled_badge")], range=["#2e9e5b", "#d64545", "#9e9e9e"])),
        tooltip=[alt.Tooltip("yearmonthdate(day):T", format="%Y-%m-%d"), "label:N", "count:Q"]), width="stretch")
