"""Chat: pick who is chatting, see their stored conversation, talk; every turn is labelled and stored."""

import streamlit as st

from aio_core.workflows import USER_ERRORS
from aio_core.workflows.conversation import start_turn
from db.store import chat_history_of, list_people
from pages.shared import (
    database,
    label_badge,
    model,
    page,
    plain,
    plain_stream,
    read,
    rule,
    show_model_line,
    show_model_problem,
    t,
)

page("chat")
state = model()
if state.engine is not None:
    show_model_line(state.engine)
else:
    show_model_problem(state)
    st.info(t("stored_unlabelled"))

people = read(list_people)
NEW = "\x00new"
choice = st.selectbox(t("who_is_chatting"), [p.handle for p in people] + [NEW], key="person",
                      format_func=lambda handle: t("new_person") if handle == NEW else
                      next(f"{p.display_name} ({p.handle})" for p in people if p.handle == handle))
display_name = group = None
if choice == NEW:
    left, middle, right = st.columns(3)
    handle = left.text_input(t("handle"), key="new_handle").strip()
    display_name = middle.text_input(t("display_name"), key="new_display_name").strip() or None
    group = right.text_input(t("group"), key="new_group").strip() or None
else:
    handle = choice

for message in read(chat_history_of, handle) if handle else []:
    with st.chat_message("user"):
        st.markdown(plain(message.text))
        st.caption(label_badge(message.label, message.confidence, message.uncertain))
    if message.reply:
        with st.chat_message("assistant"):
            st.markdown(plain(message.reply))

prompt = st.chat_input(t("chat_placeholder"), key="chat_input")
if prompt:
    if not handle:
        st.warning(t("need_handle"))
        st.stop()
    try:
        turn = start_turn(prompt, person=handle, engine=state.engine, db=database(), rule=rule(),
                          display_name=display_name, group=group)
    except USER_ERRORS as error:  # e.g. the disk is full: say so; nothing half-stored
        st.error(str(error))
        st.stop()
    with st.chat_message("user"):
        st.markdown(plain(prompt))
        if turn.sentiment is None:
            st.caption(label_badge(None, None, None))
        else:
            st.markdown(turn.sentiment.seed_line)  # the seed article's line, as it showed it
            st.caption(label_badge(turn.sentiment.label, turn.sentiment.confidence, turn.sentiment.uncertain))
    if turn.reply is not None:
        with st.chat_message("assistant"):
            st.write_stream(plain_stream(turn.reply))
    else:
        st.info(t("stored_unlabelled"))
