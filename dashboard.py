"""Entry point: `streamlit run dashboard.py`. Sign-in, then the pages the signed-in role may open; each page lives in
pages/ and checks the role again itself, so typing another page's address shows nothing it may not see."""

import streamlit as st

from db.access import PAGES
from pages.shared import daily_retention, language_picker, viewer

st.set_page_config(page_title="Qwen All-in-One", page_icon="🧠", layout="wide")
ALL = {
    "overview": st.Page("pages/overview.py", title="Overview · 概览", icon="🏠"),
    "chat": st.Page("pages/chat.py", title="Chat · 聊天", icon="💬"),
    "screen": st.Page("pages/screen.py", title="Screen comments · 评论筛查", icon="📄"),
    "trends": st.Page("pages/trends.py", title="Trends & alerts · 趋势与预警", icon="📈"),
    "admin": st.Page("pages/admin.py", title="Admin · 管理", icon="🔐"),
}
language_picker()  # in the entry point, so the choice holds on every page
who = viewer()
daily_retention()
allowed = [ALL[name] for name in ALL if name in PAGES[who.role]]
st.navigation(allowed).run()
