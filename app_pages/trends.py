"""Trends & alerts: who is most negative lately, one person's messages over time with the rule's flagged windows,
and the alerts to acknowledge or resolve (who and when are kept)."""

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from aio_core.workflows import USER_ERRORS
from aio_core.workflows.alerts import act_on_alert
from aio_core.workflows.exports import alerts_export, person_export, record_download
from aio_core.workflows.privacy import viewed_person
from aio_core.workflows.rules import change_rule
from app_pages.state import act, can, database, flash, read, rule
from app_pages.text import actor, md, risk_badge, said, t, window, words
from app_pages.widgets import correction_form, filter_bar, page, risk_review_form
from db.alerts import ACTIVE, STATUSES, list_alerts
from db.reports import person_names, person_report, rank_people
from db.rules import AlertRule

who = page("trends")
filters = filter_bar(who, "trends")
ranked = read(rank_people, days=rule().days, limit=500, scope=who.scope, filters=filters)
if not ranked:
    st.info(t("no_people"))
    st.stop()
handles = [p.handle for p in ranked]
names = person_names((p.handle, p.display_name) for p in ranked)


def choose(table: str, handle_of: list[str], alert_ids: list[int] | None = None) -> None:
    """A row chosen in one of this page's tables: that person (and that alert) below. Runs before the page is drawn
    again, so the selectors below start on the choice."""
    rows = st.session_state[table].selection.rows
    if rows:
        st.session_state["trend_person"] = handle_of[rows[0]]
        if alert_ids is not None:
            st.session_state["alert_id"] = alert_ids[rows[0]]


span = window(filters, rule().days)  # what every figure below covers, said in each title that has a figure
st.subheader(t("ranked", window=span))
st.caption(t("choose_row"))
# The columns in the order the rows are ranked by, so the ranking can be read off the figures shown.
st.dataframe(pd.DataFrame([{t("person"): p.display_name, t("col_handle"): p.handle, t("group"): p.group or "",
                            t("col_urgent"): "⚠" if p.urgent else "", t("open_alerts"): p.open_alerts,
                            t("col_risk_messages"): p.risky, t("negative_share"): p.negative_share,
                            t("negative"): p.negatives, t("messages_window", window=span): p.messages}
                           for p in ranked]),
             hide_index=True, key="ranked", on_select=lambda: choose("ranked", handles), selection_mode="single-row",
             column_config={t("negative_share"): st.column_config.ProgressColumn(format="percent", min_value=0,
                                                                                 max_value=1)})

with st.expander(t("rule")):
    default = rule()
    columns = st.columns(5)
    last_n = columns[0].number_input(t("rule_n"), 1, 50, default.last_n, key="rule_n")
    last_k = columns[1].number_input(t("rule_k"), 1, 50, min(default.last_k, last_n), key="rule_k")
    days = columns[2].number_input(t("rule_d"), 1, 90, default.days, key="rule_days")
    share = columns[3].slider(t("rule_share"), 0.1, 1.0, default.share, 0.05, key="rule_share")
    minimum = columns[4].number_input(t("rule_m"), 1, 100, default.min_messages, key="rule_min")
    chosen = AlertRule(int(last_n), int(min(last_k, last_n)), int(days), float(share), int(minimum))
    st.caption(t("rule_sentence", k=chosen.last_k, n=chosen.last_n, share=chosen.share, m=chosen.min_messages,
                 d=chosen.days))
    if can(who, "change_settings"):  # everyone previews a rule on the chart; only an admin puts one in force
        if st.button(t("apply_rule"), key="apply_rule"):
            try:
                checked = change_rule(database(), chosen, by=who.username, scope=who.scope,
                                      may_change=can(who, "change_settings"))
            except USER_ERRORS as error:
                st.error(md(error))
            else:
                st.success(t("rule_applied", count=checked))

# A row chosen on another page names the person to open (kept out of the address: a handle can be a child's name,
# and addresses end up in browser histories and proxy logs).
wanted = st.session_state.pop("open_person", None)
if wanted in handles:
    st.session_state["trend_person"] = wanted
elif wanted:
    st.info(t("person_not_listed", handle=wanted))
handle = st.selectbox(t("person"), handles, key="trend_person",
                      format_func=names.get)
report = read(person_report, handle, chosen, scope=who.scope, filters=filters)
if report is None:
    st.error(t("not_allowed"))
    st.stop()
if st.session_state.get("_viewed") != (who.username, handle):  # each person a viewer opens is logged once
    act(viewed_person, who.username, handle)
    st.session_state["_viewed"] = (who.username, handle)

st.subheader(t("messages_over_time"))
if not report.points:
    st.caption(t("no_messages"))
else:
    points = pd.DataFrame([{"at": p.at, "text": p.text, "label": t(p.label) if p.label else t("unlabelled_badge"),
                            "p_negative": (float(p.label == "negative") if p.corrected else p.p_negative)
                            if p.label else 0.5, "confidence": p.confidence,
                            "rolling": p.rolling_negative_share} for p in report.points])
    # Dates as numbers (Vega-Lite's own labels are English); within two days every tick would read the same date,
    # so there the hours are shown too.
    ticks = "%m-%d %H:%M" if report.points[-1].at - report.points[0].at < timedelta(days=2) else "%Y-%m-%d"
    colour = alt.Color("label:N", title=None, scale=alt.Scale(
        domain=[t("positive"), t("negative"), t("unlabelled_badge")], range=["#2e9e5b", "#d64545", "#9e9e9e"]))
    layers = []
    if report.flagged:
        windows = pd.DataFrame(report.flagged, columns=["start", "end"])
        layers.append(alt.Chart(windows).mark_rect(color="#d64545", opacity=0.12).encode(x="start:T", x2="end:T"))
    layers.append(alt.Chart(points).mark_line(color="#555").encode(
        x=alt.X("at:T", title=None, axis=alt.Axis(format=ticks, labelAngle=-30)),
        y=alt.Y("rolling:Q", title=t("chart_axis"), scale=alt.Scale(domain=[0, 1]))))
    layers.append(alt.Chart(points).mark_circle(size=70, opacity=0.85).encode(
        x="at:T", y="p_negative:Q", color=colour,
        tooltip=[alt.Tooltip("at:T", title=t("at"), format="%Y-%m-%d %H:%M"),
                 alt.Tooltip("label:N", title=t("col_label")),
                 alt.Tooltip("confidence:Q", title=t("col_confidence"), format=".2f"),
                 alt.Tooltip("text:N", title=t("col_text"))]))
    st.altair_chart(alt.layer(*layers), width="stretch")
    st.caption(t("chart_help"))
    if who.scope.texts:  # the messages themselves, to read (a dataframe shows its cells as plain text, never HTML)
        with st.expander(t("person_messages", count=len(report.points)), expanded=True):
            st.dataframe(pd.DataFrame([{
                t("at"): p.at, t("col_message"): p.text or "",
                t("col_label"): t(p.label) if p.label else t("unlabelled_badge"),
                t("col_risk"): risk_badge(p.risk, p.risk_category),
                t("col_correction"): t("model_said", label=t(p.model_label)) if p.corrected and p.model_label
                else t("corrected_mark") if p.corrected else "",
            } for p in reversed(report.points)]), hide_index=True, key="person_messages")
    correction_form("trend_fix", {p.message_id: words("fix_choice", at=f"{p.at:%Y-%m-%d %H:%M}",
                                                      text=(p.text or "")[:60], label=words(p.label))
                                  for p in reversed(report.points) if p.label}, who)
    risk_review_form("trend_risk", {p.message_id: f"{p.at:%Y-%m-%d %H:%M} {(p.text or '')[:60]} "
                                    f"({risk_badge(p.risk, p.risk_category) or t('not_a_risk')})"
                                    for p in reversed(report.points)}, who)

person_file = person_export(report)
st.download_button(t("export_person_report", name=report.person.display_name), person_file.data,
                   file_name=person_file.file_name, mime="text/csv", key="export_person",
                   on_click=lambda: act(record_download, who.username, person_file))

st.subheader(t("alerts_window", window=span) if filters.dated else t("alerts"))
statuses = st.multiselect(t("status"), list(STATUSES), default=list(ACTIVE), key="alert_status",
                          format_func=lambda s: words(f"status_{s}"), placeholder=t("choose_options"))
alerts = read(list_alerts, tuple(statuses), person_ids=[p.person_id for p in ranked], since=filters.since,
              until=filters.until)
alerts.sort(key=lambda a: a.person.handle != handle)  # the viewed person's alerts first, in the usual order
if not alerts:
    st.caption(t("no_alerts"))
    st.stop()
st.dataframe(pd.DataFrame([{t("col_id"): a.id, t("person"): a.person.display_name,
                            t("status_col"): t(f"status_{a.status}"),
                            t("rule_col"): risk_badge(a.severity, a.category) if a.kind == "risk" else said(a.rule),
                            t("message"): a.message.text if a.kind == "risk" and a.message and who.scope.texts
                            else "",
                            # A risk alert is one message, not a share of negatives: blank, not a false 0.
                            t("negative_share"): round(a.negative_share, 2) if a.kind == "sentiment" else None,
                            t("from"): a.window_start,
                            t("to"): a.window_end, t("updated"): a.updated_at, t("by"): actor(a.updated_by),
                            t("note"): a.note or ""} for a in alerts]), hide_index=True, key="alerts",
             on_select=lambda: choose("alerts", [a.person.handle for a in alerts], [a.id for a in alerts]),
             selection_mode="single-row")
alerts_file = alerts_export(alerts, who.scope)
st.download_button(t("export_alerts"), alerts_file.data, file_name=alerts_file.file_name, mime="text/csv",
                   key="export_alerts", on_click=lambda: act(record_download, who.username, alerts_file))


def move_alert(alert_id: int, status: str) -> None:
    """Runs before the page is drawn again, so the table, the selector and the history show the new state."""
    note = st.session_state.get("alert_note", "")
    if act(act_on_alert, alert_id, status, by=who.name, username=who.username, note=note) is not None:
        st.session_state["alert_note"] = ""
        # Set again so the next run sends the picker's label with the new status: the browser otherwise keeps
        # showing the label it had ("#4 … (open)"), since it holds the chosen label rather than the alert's id.
        st.session_state["alert_id"] = alert_id
        flash(t("alert_updated", id=alert_id, status=t(f"status_{status}")))


if can(who, "act_on_alerts"):  # a picker only for those who can act on what they pick
    alert_id = st.selectbox(t("act_on"), [a.id for a in alerts], key="alert_id",
                            format_func=lambda i: next(f"#{i} {names.get(a.person.handle, a.person.display_name)}"
                                                       f" ({t('status_' + a.status)})" for a in alerts if a.id == i))
    st.text_area(t("note"), key="alert_note")
    buttons = st.columns(3)
    for column, (status, label) in zip(buttons, (("acknowledged", "acknowledge"), ("resolved", "resolve"),
                                                 ("open", "reopen")), strict=True):
        column.button(t(label), key=f"alert_{status}", on_click=move_alert, args=(alert_id, status))
else:  # the others read the history of the alert whose row they chose in the table
    alert_id = st.session_state.get("alert_id", alerts[0].id)
selected = next((a for a in alerts if a.id == alert_id), alerts[0])
with st.expander(t("history_of", id=selected.id)):
    st.dataframe(pd.DataFrame([{t("at"): e.at,
                                t("from_status"): t(f"status_{e.from_status}") if e.from_status else "",
                                t("to_status"): t(f"status_{e.to_status}"), t("by"): actor(e.by),
                                t("note"): said(e.note)}
                               for e in selected.events]), hide_index=True, key="alert_history")
