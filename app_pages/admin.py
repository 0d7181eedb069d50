"""Admin: accounts and roles, what teachers may read, how long messages are kept, notifications (channels, escalation
lists, digests, the outbox), privacy requests (export, erase) and the audit log. Every change here is logged with the
signed-in admin's name."""

from datetime import datetime

import pandas as pd
import streamlit as st

from aio_core.workflows import USER_ERRORS
from aio_core.workflows.accounts import add_account, change_account, save_setting
from aio_core.workflows.exports import audit_export, audit_rows, record_download
from aio_core.workflows.learning import LEARN_FOLDS, learn_from_corrections
from aio_core.workflows.notify_setup import notify_status, save_escalation_list, save_notification_settings
from aio_core.workflows.privacy import apply_retention, erase, person_export
from app_pages.state import act, database, flash, loaded_model, read, settings
from app_pages.strings import STRINGS
from app_pages.text import md, t, words
from app_pages.widgets import page, readers_panel, show_model_line
from db.access import ROLES
from db.corrections import corrections_count
from db.reports import groups
from db.users import get_setting, list_users

who = page("admin")

st.subheader(t("readers"))
engine = loaded_model()
if engine is None:
    st.caption(t("model_not_loaded"))
else:
    show_model_line(engine, who)
    readers_panel(engine, who)
    engine = loaded_model() or engine  # a fit that just ended is in use from here on
    taught = read(corrections_count)
    st.caption(t("learn_help", count=taught, folds=LEARN_FOLDS))
    if st.button(t("learn_button"), key="learn", disabled=taught == 0):
        try:
            with st.spinner(t("learn_title")):
                learned = learn_from_corrections(engine=engine, db=database(), by=who.username)
        except USER_ERRORS as error:
            st.error(md(error))
        else:
            st.success(t("learned", before=learned.before, after=learned.after, count=learned.corrections,
                         folds=learned.folds))
            st.dataframe(pd.DataFrame([{t("curve_used"): n, t("curve_right"): accuracy}
                                       for n, accuracy in learned.curve.items()]), hide_index=True, key="curve")

st.subheader(t("users"))
users = read(list_users)
st.dataframe(pd.DataFrame([[u.username, u.display_name, t(f"role_{u.role}"), ", ".join(g), u.email or "",
                            u.person_handle or "", u.disabled] for u, g in users],
                          columns=[t(k) for k in ("username", "display_name", "role", "groups", "col_email",
                                                  "col_person", "col_disabled")]),
             hide_index=True, key="users")
known_groups = read(groups)
NEW_USER_FIELDS = {"new_user": "", "new_user_display": "", "new_user_password": "", "new_user_email": "",
                   "new_user_groups": [], "new_user_person": ""}
if st.session_state.pop("_new_user_added", False):  # an empty form after an account was added (set before drawing)
    st.session_state.update(NEW_USER_FIELDS)
with st.expander(t("add_user")):
    with st.form("add_user"):
        columns = st.columns(3)
        username = columns[0].text_input(t("username"), key="new_user")
        display = columns[1].text_input(t("display_name"), key="new_user_display")
        role = columns[2].selectbox(t("role"), ROLES, key="new_user_role", format_func=lambda r: t(f"role_{r}"))
        columns = st.columns(2)
        password = columns[0].text_input(t("password"), type="password", key="new_user_password")
        email = columns[1].text_input(t("school_email"), key="new_user_email")
        chosen = st.multiselect(t("groups"), known_groups, key="new_user_groups", accept_new_options=True,
                                placeholder=t("choose_options"))
        person = st.text_input(t("student_person"), key="new_user_person")
        if st.form_submit_button(t("add_user")) and act(
                add_account, username, password or (None if email.strip() else ""), role=role, by=who.username,
                display_name=display, groups=tuple(chosen), person=person.strip() or None,
                email=email.strip() or None) is not None:
            # Drawn again, so the accounts table above lists the new account; the form is emptied (the password
            # above all), while a refused form keeps what was typed, to be corrected.
            st.session_state["_new_user_added"] = True
            flash(t("user_added", name=username.strip().lower()))
            st.rerun()
if users:
    with st.expander(t("change_user")):
        accounts = {u.username: (u, g) for u, g in users}
        name = st.selectbox(t("username"), list(accounts), key="change_user")
        user, current = accounts[name]
        if st.session_state.get("_account_loaded") != name:  # another account chosen: its own role and groups
            st.session_state["change_role"], st.session_state["change_groups"] = user.role, list(current)
            st.session_state["_account_loaded"] = name
        columns = st.columns(3)
        new_role = columns[0].selectbox(t("role"), ROLES, key="change_role", format_func=lambda r: t(f"role_{r}"))
        new_groups = columns[1].multiselect(t("groups"), sorted(set(known_groups) | set(current)),
                                            key="change_groups", accept_new_options=True,
                                            placeholder=t("choose_options"))
        changes = []
        if new_role != user.role:
            changes.append(t("change_role_to", old=t(f"role_{user.role}"), new=t(f"role_{new_role}")))
        if sorted(new_groups) != sorted(current):
            changes.append(t("change_groups_to", old=", ".join(current) or "–", new=", ".join(new_groups) or "–"))
        st.caption(t("will_change", name=name, what="; ".join(changes)) if changes else t("nothing_to_change"))
        if columns[2].button(t("save"), key="save_user", disabled=not changes):
            act(change_account, name, by=who.username, role=new_role if new_role != user.role else None,
                groups=tuple(new_groups) if sorted(new_groups) != sorted(current) else None)
            st.rerun()
        if name != who.username and st.button(t("enable") if user.disabled else t("disable"), key="toggle_user"):
            act(change_account, name, by=who.username, disabled=not user.disabled)
            st.rerun()

st.subheader(t("privacy_settings"))
columns = st.columns(2)
teachers_read = columns[0].toggle(t("teachers_read"), value=read(get_setting, "teachers_read_messages") == "yes",
                                  key="teachers_read")
retention = columns[1].number_input(t("retention_days"), 0, 36500, int(read(get_setting, "retention_days")),
                                    key="retention_days")
if st.button(t("save"), key="save_settings"):
    act(save_setting, "teachers_read_messages", "yes" if teachers_read else "no", by=who.username)
    act(save_setting, "retention_days", str(int(retention)), by=who.username)
    if retention:
        try:
            removed = apply_retention(database(), int(retention), by=who.username)
        except USER_ERRORS as error:
            st.error(md(error))
        else:
            st.success(t("retention_applied", count=removed, days=int(retention)))

st.subheader(t("notifications"))
status = notify_status(settings(), database())
for channel, how in status.transports.items():
    st.caption(t(f"channel_{channel}", how=how or t("not_set_up")))
if not any(status.transports.values()):
    st.info(t("no_channel"))
for channel, health in status.health.items():
    name = t(f"channel_name_{channel}")
    if health.keeps_failing:
        st.warning(t("channel_failing", channel=name, failures=health.failures, error=health.last_error or "?",
                     since=f"{health.oldest:%Y-%m-%d %H:%M} UTC" if health.oldest else "?"))
    if health.given_up:
        st.warning(t("channel_given_up", channel=name, count=health.given_up, error=health.last_error or "?"))
columns = st.columns(3)
counted = {"sent": status.counts["sent"], "waiting": status.counts["waiting"] + status.counts["sending"],
           "failed": status.counts["failed"]}
for column, (state, count) in zip(columns, counted.items(), strict=True):
    column.metric(t(f"outbox_count_{state}"), count)
with st.expander(t("escalation_lists")):
    st.caption(t("escalation_help", minutes=settings().escalate_minutes))
    everyone = set(known_groups) | set(status.lists) | {g for _, mine in users for g in mine}
    group = st.selectbox(t("escalation_group"), sorted(everyone), key="escalation_group")
    if group is not None:
        current = [u for u in status.lists.get(group, []) if u in status.contacts]
        chosen = st.multiselect(t("escalation_contacts"), list(status.contacts), default=current,
                                format_func=status.contacts.get, key=f"escalation_{group}",
                                placeholder=t("choose_options"))
        if st.button(t("save"), key="save_escalation", disabled=chosen == current) and act(
                save_escalation_list, group, chosen, by=who.username) is not None:
            flash(t("escalation_saved", group=group, names=", ".join(chosen) or "–"))
            st.rerun()
with st.expander(t("digests_and_text")):
    columns = st.columns(2)
    frequency = columns[0].selectbox(t("digest_frequency"), ["off", "daily", "weekly"], key="digest_frequency",
                                     index=["off", "daily", "weekly"].index(status.frequency),
                                     format_func=lambda f: t(f"digest_{f}"))
    at = columns[1].time_input(t("digest_time"), value=datetime.strptime(status.at, "%H:%M").time(),
                               key="digest_time", step=900)
    text_email = st.toggle(t("include_text_email"), value=status.include_text["email"], key="text_email")
    text_webhook = st.toggle(t("include_text_webhook"), value=status.include_text["webhook"], key="text_webhook")
    st.caption(t("include_text_risk"))
    if st.button(t("save"), key="save_notify"):
        try:
            save_notification_settings(database(), frequency=frequency, at=at, text_email=text_email,
                                       text_webhook=text_webhook, by=who.username)
        except USER_ERRORS as error:
            st.error(md(error))
        else:
            flash(t("notify_saved"))
            st.rerun()
st.caption(t("outbox"))
st.dataframe(pd.DataFrame([[n.created_at, t(f"outbox_kind_{n.kind}"), n.alert_id, n.step,
                            t(f"channel_name_{n.channel}"), n.recipient or "",
                            t(f"outbox_{n.status}"), n.attempts, n.next_attempt_at if n.status == "waiting" else None,
                            n.last_error or ""]
                           for n in status.recent],
                          columns=[t(k) for k in ("col_created", "col_kind", "col_alert", "col_step", "col_channel",
                                                  "col_to", "col_outbox_status", "col_attempts", "col_next",
                                                  "col_error")]),
             hide_index=True, key="outbox")

st.subheader(t("privacy_requests"))
handle = st.text_input(t("person_handle"), key="privacy_handle").strip()
if handle:
    person_file = act(person_export, handle)
    if person_file is None:
        st.warning(t("no_such_person", handle=handle))
    else:
        st.download_button(t("export_person"), person_file.data, file_name=person_file.file_name,
                           mime="application/json", key="export_person",
                           on_click=lambda: act(record_download, who.username, person_file))
        confirm = st.text_input(t("erase_confirm", handle=handle), key="erase_confirm")
        if st.button(t("erase_person"), key="erase_person", type="primary", disabled=confirm.strip() != handle):
            try:  # no copy of the erased text left in the database file, nor their name in the audit log
                deleted = erase(database(), handle, by=who.username)
            except USER_ERRORS as error:
                st.error(md(error))
            else:
                if deleted is not None:
                    st.success(t("erased", handle=handle, what=", ".join(f"{n} {k}" for k, n in deleted.items())))

st.subheader(t("audit_log"))
table = act(audit_rows, limit=2000) or []
# The action's name stays (it is what the CLI's `audit --action` filters on), with what it means beside it.
st.dataframe(pd.DataFrame([[at, by, words(f"audit_does_{action}") if f"audit_does_{action}" in STRINGS else "",
                            action, target, detail] for at, by, action, target, detail in table],
                          columns=[t(f"audit_{c}") for c in ("at", "who", "what", "action", "target", "detail")]),
             hide_index=True, key="audit")
audit_file = act(audit_export, limit=2000)
if audit_file is not None:
    st.download_button(t("export_audit"), audit_file.data, file_name=audit_file.file_name, mime="text/csv",
                       key="export_audit", on_click=lambda: act(record_download, who.username, audit_file))
