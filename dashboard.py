"""Entry point: `streamlit run dashboard.py`. Sign-in, then the pages the signed-in role may open; each page lives in
app_pages/ and checks the role again itself, so typing another page's address shows nothing it may not see.

The folder is not called pages/: beside the entry point, that name makes Streamlit run its legacy multipage mode until
st.navigation has run once in the process, so a bookmark opened first after a start ran the page file alone."""

import streamlit as st

from app_pages.shared import daily_retention, language_picker, resume_jobs, viewer
from db.access import PAGES

st.set_page_config(page_title="Qwen All-in-One", page_icon="🧠", layout="wide")
ALL = {
    "overview": st.Page("app_pages/overview.py", title="Overview · 概览", icon="🏠"),
    "chat": st.Page("app_pages/chat.py", title="Chat · 聊天", icon="💬"),
    "screen": st.Page("app_pages/screen.py", title="Screen comments · 评论筛查", icon="📄"),
    "trends": st.Page("app_pages/trends.py", title="Trends & alerts · 趋势与预警", icon="📈"),
    "admin": st.Page("app_pages/admin.py", title="Admin · 管理", icon="🔐"),
}
language_picker()  # in the entry point, so the choice holds on every page
who = viewer()
daily_retention()
resume_jobs()
allowed = [ALL[name] for name in ALL if name in PAGES[who.role]]
st.navigation(allowed).run()
