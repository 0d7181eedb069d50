"""Chat: pick who is chatting, see their stored conversation, talk; every turn is labelled and stored.

While a reply streams the input is disabled (the message waits in the session until its turn has run), so a second
message cannot cut the first reply off; a reply that was cut off anyway (the page was left) is stored and shown as
interrupted. A message with an urgent risk gets the reviewed safe message; staff (never the student) see under each
reply where its words came from (the reviewed library, a guarded model sentence, the safe message).
"""

import streamlit as st

from aio_core.classify import seed_line
from aio_core.settings import MAX_TEXT_CHARS
from aio_core.workflows import USER_ERRORS
from aio_core.workflows.conversation import start_turn
from aio_core.workflows.privacy import viewed_person
from app_pages.state import act, can, database, model, read, rule
from app_pages.text import label_badge, lang, md, plain, plain_stream, risk_badge, t, words
from app_pages.widgets import correction_form, page, show_model_line, show_model_problem
from db.reports import person_names
from db.store import chat_history, list_people

who = page("chat")
state = model()
if state.engine is not None:
    show_model_line(state.engine, who)
else:
    show_model_problem(state)
    st.info(t("stored_unlabelled"))

display_name = group = None
show_labels = who.scope.labels  # a student never sees labels, their own included
if not can(who, "chat_as_anyone"):  # a student chats as themselves only
    handle, group = who.person, next(iter(sorted(who.groups)), None)
else:
    people = read(list_people, who.scope, students_only=True)  # commenters of uploads are not chatted with
    names = person_names((p.handle, p.display_name) for p in people)
    NEW = "\x00new"
    # Nobody is preselected: a conversation is never shown or stored under someone the user did not choose.
    choice = st.selectbox(t("who_is_chatting"), [NEW] + [p.handle for p in people], key="person", index=None,
                          placeholder=t("choose_person"),
                          format_func=lambda handle: t("new_person") if handle == NEW else
                          names[handle])
    if choice is None:
        handle = None
    elif choice == NEW:
        left, middle, right = st.columns(3)
        handle = left.text_input(t("handle"), key="new_handle").strip()
        display_name = middle.text_input(t("display_name"), key="new_display_name").strip() or None
        if who.scope.groups is None:
            group = right.text_input(t("group"), key="new_group").strip() or None
        else:  # a counsellor adds people to their own groups only
            group = right.selectbox(t("group"), sorted(who.groups), key="new_group")
    else:
        handle = choice
        if st.session_state.get("_viewed") != (who.username, handle):
            act(viewed_person, who.username, handle)
            st.session_state["_viewed"] = (who.username, handle)


def reply_caption(kind: str | None) -> None:
    """Where the reply's words came from (library, guarded model sentence, safe message), for staff only."""
    if show_labels and kind in ("safe", "guarded", "library", "generated"):
        st.caption(t("safe_reply" if kind == "safe" else f"reply_{kind}"))


def user_caption(label, confidence, uncertain, risk, category) -> None:
    if not show_labels:
        return
    st.caption(label_badge(label, confidence, uncertain))
    if risk_badge(risk, category):
        st.warning(risk_badge(risk, category))


stored = read(chat_history, handle, scope=who.scope) if handle else []
for message in stored:
    with st.chat_message("user"):
        st.markdown(plain(message.text))
        if show_labels and message is stored[-1] and message.effective_label:
            st.markdown(seed_line(message.effective_label, lang()))  # the seed article's line, in the reader's language
        user_caption(message.effective_label, message.confidence, message.uncertain, message.risk,
                     message.risk_category)
    if message.reply:
        with st.chat_message("assistant"):
            st.markdown(plain(message.reply))
            reply_caption(message.reply_kind)
            if message.reply_interrupted:
                st.caption(t("interrupted"))

# A label read wrong is corrected where it is seen: stored with who and when, alerts follow at once.
correction_form("chat_fix", {m.id: words("fix_choice", at=f"{m.created_at:%Y-%m-%d %H:%M}",
                                          label=words(m.effective_label), text=m.text[:60])
                             for m in reversed(stored) if m.effective_label}, who)

pending = st.session_state.pop("pending_message", None)
waiting = st.session_state.get("waiting_message")  # typed before anyone was chosen: kept, sent once someone is
if waiting and handle:
    pending = (st.session_state.pop("waiting_message"), handle, display_name, group)
elif waiting:
    st.info(t("kept_message") + md(" — " + waiting[:200]))
typed = st.chat_input(t("chat_placeholder"), key="chat_input", disabled=pending is not None,
                      max_chars=MAX_TEXT_CHARS)
if typed:
    if not handle:
        st.session_state["waiting_message"] = typed
        st.rerun()
    st.session_state["pending_message"] = (typed, handle, display_name, group)
    st.rerun()  # runs the turn with the input disabled
if pending:
    prompt, handle, display_name, group = pending
    try:
        turn = start_turn(prompt, person=handle, engine=state.engine, db=database(), rule=rule(),
                          display_name=display_name, group=group, scope=who.scope, author=who.username)
    except USER_ERRORS as error:  # someone this user may not chat for, a message too long, a full disk: nothing stored
        st.error(md(error))
        st.stop()
    with st.chat_message("user"):
        st.markdown(plain(prompt))
        if not show_labels:
            pass
        elif turn.sentiment is None:
            st.caption(label_badge(None, None, None))
        else:
            st.markdown(seed_line(turn.sentiment.label, lang()))  # the seed article's line, in the reader's language
            user_caption(turn.sentiment.label, turn.sentiment.confidence, turn.sentiment.uncertain,
                         turn.risk.level if turn.risk else None, turn.risk.category if turn.risk else None)
    if turn.reply is not None:
        with st.chat_message("assistant"):
            st.write_stream(plain_stream(turn.reply))
            reply_caption(turn.reply_kind)
    st.rerun()  # the input comes back; the turn is shown from the store
