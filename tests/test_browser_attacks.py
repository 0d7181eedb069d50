"""What an attacker tried against the running dashboard (issue 24) that only a real browser and a real server show:
markdown in names stays text, no upload is taken before sign-in or over AIO_UPLOAD_MB, and a sign-in outlives a
reload in a cookie that scripts cannot read, whose token the store keeps only as a hash."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime, timedelta

import pytest
from helpers import CHROMIUM, PASSWORD, serve_dashboard, settle

from db.batches import create_batch, finish_batch
from db.rules import AlertRule
from db.session import make_db, writing
from db.store import NewMessage, add_messages
from db.users import add_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]

EVIL = "evil.example"
LINK = f"[Session expired - click to sign in](http://{EVIL}/phish)"
IMAGE = f"![t](http://{EVIL}/x.png)"


def _requests_to(page, host: str) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url) if host in request.url else None)
    return seen


def test_markdown_in_a_file_name_or_a_handle_stays_text(tmp_path, browser):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'aio.db'}"
    db = make_db(url)
    with writing(db) as session:
        add_messages(session, [NewMessage(f"bad day {i}", "chat", person=LINK, display_name=f"{IMAGE} {LINK}",
                                          label="negative", confidence=0.9, p_negative=0.9, uncertain=False,
                                          created_at=datetime(2026, 4, 1) + timedelta(days=i)) for i in range(6)],
                     rule=AlertRule())
        batch = create_batch(session, file_name=f"{IMAGE} {LINK}.csv", sha256="0" * 64, options="{}", row_count=1,
                             model="tiny-random", prompt_version="v", header=["comment"], owner="local")
        finish_batch(session, batch.id)
    db.dispose()
    with serve_dashboard(tmp_path, {"AIO_DB_URL": url, "AIO_AUTH": "off"}) as base:
        for path, ready in (("screen", "Results of batch"), ("trends", "Download")):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            fetched = _requests_to(page, EVIL)
            page.goto(f"{base}/{path}")
            page.get_by_text(ready).first.wait_for(timeout=90_000)
            settle(page)
            assert page.locator(f"a[href*='{EVIL}']").count() == 0, path
            assert page.locator(f"img[src*='{EVIL}']").count() == 0, path
            assert fetched == [], path
            # Shown as the characters that were typed (an invisible word joiner keeps the address from reading as one).
            assert LINK in page.inner_text("body").replace("\u2060", ""), path
            page.close()


# ---- uploads: none before sign-in, none over AIO_UPLOAD_MB ----------------------------------------------------------

@pytest.fixture(scope="module")
def school_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attacks")
    url = f"sqlite:///{folder / 'aio.db'}"
    db = make_db(url)
    with writing(db) as session:
        add_messages(session, [NewMessage(f"ann secret {i}", "chat", person="ann", group="Class A", label="negative",
                                          confidence=0.9, p_negative=0.9, uncertain=False,
                                          created_at=datetime(2026, 4, 1) + timedelta(days=i)) for i in range(6)],
                     rule=AlertRule())
        add_user(session, "lee", PASSWORD, role="teacher", by="test", groups=("Class A",))
        add_user(session, "mod", PASSWORD, role="moderator", by="test")
    db.dispose()
    with serve_dashboard(folder, {"AIO_DB_URL": url, "AIO_AUTH": "local", "AIO_UPLOAD_MB": "1"}) as base:
        yield base, folder / "aio.db"


def _watch_session(page) -> list[str]:
    """The Streamlit session id of this page, as the server tells the browser in its first message."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    ids: list[str] = []

    def frame(payload) -> None:
        if isinstance(payload, bytes):
            message = ForwardMsg.FromString(payload)
            if message.HasField("new_session"):
                ids.append(message.new_session.initialize.session_id)

    page.on("websocket", lambda socket: socket.on("framereceived", frame))
    return ids


def _upload(page, base: str, session_id: str, size: int) -> int:
    """PUT a file to Streamlit's upload endpoint for this session, as its own page would (XSRF header included)."""
    xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_streamlit_xsrf")
    response = page.request.put(f"{base}/_stcore/upload_file/{session_id}/file-1",
                                headers={"X-Xsrftoken": xsrf},
                                multipart={"file": {"name": "a.csv", "mimeType": "text/csv",
                                                    "buffer": b"comment\n" + b"x" * size}})
    return response.status


def test_no_upload_is_taken_before_sign_in_or_over_the_limit(school_server, browser):  # noqa: F811
    base, _ = school_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    ids = _watch_session(page)
    page.goto(base)
    page.get_by_role("textbox", name="Password").wait_for(timeout=90_000)
    settle(page)
    assert _upload(page, base, ids[0], 1000) == 403  # a session nobody has signed in to takes nothing
    page.get_by_role("textbox", name="User name").fill("mod")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for(timeout=60_000)
    settle(page)
    session_id = ids[-1]
    assert _upload(page, base, session_id, 1000) == 204  # the moderator's own page may
    assert _upload(page, base, session_id, 2 * 2**20) == 413  # AIO_UPLOAD_MB=1 on the server too ...
    assert _upload(page, base, session_id, 3 * 2**19) == 413  # ... to the byte: Streamlit's own ceiling is set to it
    page.close()


# ---- a sign-in survives reloads and bookmarks, in a cookie scripts cannot read -------------------------------------

def _session_cookie(context, seconds: float = 30) -> dict:
    """The sign-in cookie, once the page has handed it over (a request of its own, just after signing in)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [c for c in context.cookies() if c["name"] == "aio_session"]
        if found:
            return found[0]
        time.sleep(0.2)
    pytest.fail(f"no sign-in cookie: {[c['name'] for c in context.cookies()]}")


def test_a_sign_in_outlives_reloads_and_bookmarks_and_returns_to_the_page_asked_for(school_server, browser):  # noqa: F811
    base, path = school_server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{base}/trends")  # a bookmark, opened signed out
    page.get_by_role("textbox", name="User name").fill("lee")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Trends & alerts").wait_for(timeout=60_000)  # the page asked for
    settle(page)
    cookie = _session_cookie(context)
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert "aio_session" not in page.evaluate("document.cookie")  # no script on the page can read it
    with sqlite3.connect(path) as connection:
        stored = {row[0] for row in connection.execute("SELECT token_hash FROM auth_sessions")}
    assert hashlib.sha256(cookie["value"].encode()).hexdigest() in stored and cookie["value"] not in stored
    page.reload()
    page.get_by_role("heading", name="Trends & alerts").wait_for(timeout=60_000)
    page.get_by_text("Signed in as lee").wait_for(timeout=60_000)
    assert page.get_by_role("textbox", name="Password").count() == 0
    other = context.new_page()  # a second tab from a bookmark
    other.goto(f"{base}/")
    other.get_by_text("Signed in as lee").wait_for(timeout=60_000)
    other.close()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("textbox", name="Password").wait_for(timeout=60_000)
    settle(page)
    page.reload()
    page.get_by_role("textbox", name="Password").wait_for(timeout=60_000)
    settle(page)
    assert "Signed in as" not in page.inner_text("body") and "ann secret" not in page.inner_text("body")
    with sqlite3.connect(path) as connection:
        stored = {row[0] for row in connection.execute("SELECT token_hash FROM auth_sessions")}
    assert hashlib.sha256(cookie["value"].encode()).hexdigest() not in stored  # signed out means the token is dead
    context.close()
