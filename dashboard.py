"""Entry point: `streamlit run dashboard.py`. Sign-in, then the pages the signed-in role may open; each page lives in
app_pages/ and checks the role again itself, so typing another page's address shows nothing it may not see.

`streamlit run` first imports this file once to serve it (the `app` below: Streamlit's server with the routes and
middleware of app_pages/web.py, which refuses to start with sign-in off on a network address); every page view then
runs it as `__main__`.

The folder is not called pages/: beside the entry point, that name makes Streamlit run its legacy multipage mode until
st.navigation has run once in the process, so a bookmark opened first after a start ran the page file alone."""

import streamlit as st

if __name__ == "__main__":
    from app_pages.signin import page_asked_for, viewer
    from app_pages.state import keep_up
    from app_pages.widgets import language_picker
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
    keep_up()  # the job worker, the notification sender, daily retention, the sweep of stale uploads
    allowed = [ALL[name] for name in ALL if name in PAGES[who.role]]
    shown = st.navigation(allowed)
    wanted = page_asked_for()
    if wanted in ALL and ALL[wanted] in allowed and shown.url_path != wanted:
        st.switch_page(ALL[wanted])  # the page a bookmark asked for before signing in
    shown.run()
else:
    from app_pages import web

    web.check_server()
    app = st.App(__file__, routes=web.routes(), middleware=web.MIDDLEWARE)
