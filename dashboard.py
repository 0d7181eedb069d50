"""Entry point: `streamlit run dashboard.py`. Page config and navigation only; each page lives in pages/."""

import streamlit as st

st.set_page_config(page_title="Qwen All-in-One", page_icon="🧠", layout="wide")
st.navigation([
    st.Page("pages/overview.py", title="Overview · 概览", icon="🏠", default=True),
    st.Page("pages/chat.py", title="Chat · 聊天", icon="💬"),
    st.Page("pages/screen.py", title="Screen comments · 评论筛查", icon="📄"),
    st.Page("pages/trends.py", title="Trends & alerts · 趋势与预警", icon="📈"),
]).run()
