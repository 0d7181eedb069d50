"""The running dashboard in headless Chromium: every page opens without an error, and hostile text (from a user,
a CSV cell, or a model reply) stays inert: no dialog fires and no element is injected.

Screenshots of every page are saved to artifacts/screenshots/. Needs Debian's `chromium` (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import CHROMIUM, free_port, serve_dashboard, settle, wait_until_up

from db.rules import AlertRule
from db.session import make_db, writing
from db.store import NewMessage, add_messages

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
ATTACKS = ('<img src=x onerror="alert(1)">', '<script>alert(2)</script>', "[click me](javascript:alert(3))",
           '<a href="javascript:alert(4)">link</a>')

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


def _seed(url: str) -> None:
    """A demo-like store whose texts, CSV cells and model replies carry the attacks."""
    db = make_db(url)
    start = datetime(2026, 4, 1, 9)
    rows = []
    for i, attack in enumerate(ATTACKS * 2):
        rows.append(NewMessage(f"{attack} message {i}", "chat", person="mallory", display_name=f"Mallory {ATTACKS[0]}",
                               label="negative", confidence=0.9, p_negative=0.9, uncertain=False,
                               created_at=start + timedelta(days=i), reply=f"reply with {attack}"))
    with writing(db) as session:
        add_messages(session, rows, rule=AlertRule())
    db.dispose()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'aio.db'}"
    _seed(url)
    with serve_dashboard(folder, {"AIO_DB_URL": url, "AIO_AUTH": "off"}) as base:
        yield base, folder


READY = {"": "stMetric", "chat": "stChatInput", "screen": "stFileUploader", "trends": "stDataFrame",
         "admin": "stDataFrame"}


def _open(browser, base: str, path: str, dialogs: list[str]):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{base}/{path}")
    page.get_by_test_id(READY[path]).first.wait_for(timeout=90_000)  # the page's own content has rendered
    settle(page)
    return page


def _assert_inert(page, dialogs: list[str]) -> None:
    assert dialogs == [], f"a dialog fired: {dialogs}"
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("[href^='javascript:']").count() == 0
    assert page.locator("script:text('alert(2)')").count() == 0
    assert page.locator("[data-testid='stException']").count() == 0
    assert "Traceback" not in page.inner_text("body")


ENGLISH_HEADERS = {"at", "who", "action", "target", "detail", "user", "name", "role", "groups", "person", "handle",
                   "batch", "file", "rows", "status", "model", "started", "row", "text", "label", "flagged",
                   "Person", "Negative share", "Open alerts", "Messages stored", "Group or class (optional)"}
TITLES = {"overview": ("Overview", "概览"), "chat": ("Chat", "聊天"), "screen": ("Screen comments", "评论筛查"),
          "trends": ("Trends & alerts", "趋势与预警"), "admin": ("Admin", "管理")}


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("path, name", [("", "overview"), ("chat", "chat"), ("screen", "screen"),
                                        ("trends", "trends"), ("admin", "admin")])
def test_every_page_opens_without_errors_in_both_languages(app, browser, path, name, lang):
    base, _ = app
    dialogs: list[str] = []
    page = _open(browser, base, path, dialogs)
    if lang == "zh":  # the sidebar's language picker, as a user switches
        page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
        page.get_by_role("option", name="中文").click()
        settle(page)
    title = TITLES[name][lang == "zh"]
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    if lang == "zh":  # every table's headers too (the tables are drawn on a canvas; these are its accessible names)
        headers = set(page.evaluate("Array.from(document.querySelectorAll('[role=columnheader]'))"
                                    ".map(x => x.textContent)"))
        assert not headers & ENGLISH_HEADERS, headers
        assert headers or name in ("chat", "screen"), name  # those two have no table in this store
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}{'-zh' if lang == 'zh' else ''}.png"), full_page=True)
    _assert_inert(page, dialogs)
    page.close()


def test_chat_history_replies_and_new_messages_stay_inert(app, browser):
    base, _ = app
    dialogs: list[str] = []
    page = _open(browser, base, "chat", dialogs)
    page.get_by_test_id("stSelectbox").filter(has_text="Who is chatting?").click()
    page.get_by_role("option").filter(has_text="Mallory").click()  # nobody is preselected; named by display name
    page.get_by_text("reply with <script>alert(2)</script>").first.wait_for(timeout=60_000)
    settle(page)
    body = page.inner_text("body")
    assert ATTACKS[0] in body and "reply with <script>alert(2)</script>" in body  # shown as the literal text
    page.get_by_test_id("stChatInputTextArea").fill(" ".join(ATTACKS))
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('[data-testid=\"stChatMessage\"]').length >= 18",
                           timeout=60_000)
    settle(page)
    page.screenshot(path=str(SHOTS / "chat-after-attack.png"), full_page=True)
    _assert_inert(page, dialogs)
    page.close()


def test_screened_csv_cells_stay_inert(app, browser, tmp_path):
    base, _ = app
    csv_file = tmp_path / "hostile.csv"
    csv_file.write_text("author,comment\n" + "".join(f'u{i},"{a.replace(chr(34), chr(34) * 2)}"\n'
                                                      for i, a in enumerate(ATTACKS)), encoding="utf-8")
    dialogs: list[str] = []
    page = _open(browser, base, "screen", dialogs)
    page.locator("input[type='file']").set_input_files(str(csv_file))
    page.get_by_role("button", name="Screen 4 rows").click()
    page.get_by_text("Screened 4 rows").wait_for(timeout=60_000)
    settle(page)
    page.screenshot(path=str(SHOTS / "screen-after-upload.png"), full_page=True)
    _assert_inert(page, dialogs)
    page.close()


def _choose_row(page, table, row: int) -> None:
    """Tick data row `row` (from 1) of a selectable table: its row-marker column, left of the first cell."""
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 * row + 17)


def test_a_row_opens_that_persons_page_and_their_report_downloads_as_shown(tmp_path, browser):
    url = f"sqlite:///{tmp_path / 'aio.db'}"
    db = make_db(url)
    start = datetime(2026, 4, 1, 9)
    with writing(db) as session:  # zed is the most negative, so amy is second on Overview and not first on Trends
        for handle, labels in (("zed", "------"), ("amy", "+-+--+")):
            add_messages(session, [
                NewMessage("=1+2 said amy" if handle == "amy" and i == 0 else f"{handle} {i}", "chat", person=handle,
                           display_name=handle.title(), label="negative" if c == "-" else "positive", confidence=0.9,
                           p_negative=0.9 if c == "-" else 0.1, uncertain=False, created_at=start + timedelta(days=i))
                for i, c in enumerate(labels)], rule=AlertRule())
    db.dispose()
    with serve_dashboard(tmp_path, {"AIO_DB_URL": url, "AIO_AUTH": "off"}) as base:
        dialogs: list[str] = []
        page = _open(browser, base, "", dialogs)
        look_first = page.get_by_test_id("stDataFrame").last  # "People to look at first": zed, amy
        _choose_row(page, look_first, 2)
        page.get_by_role("heading", name="Trends & alerts").wait_for(timeout=60_000)
        settle(page)
        person = page.locator("[data-testid=stSelectbox] input[aria-label='Person']")
        assert person.input_value() == "Amy"  # the chosen row's person, not the list's first
        with page.expect_download() as download:
            page.get_by_role("button", name=re.compile("Download Amy's messages shown")).click()
        lines = Path(download.value.path()).read_text(encoding="utf-8-sig").strip().splitlines()  # BOM: for Excel
        assert lines[0].startswith("person,handle,group,time,source,text,label") and len(lines) == 7
        assert all(",amy," in line for line in lines[1:]) and ",'=1+2 said amy," in lines[1]  # formula-safe
        _choose_row(page, page.get_by_test_id("stDataFrame").first, 1)  # the ranked table on this page: zed
        page.wait_for_function("document.querySelector(\"[data-testid=stSelectbox] input[aria-label='Person']\")"
                               ".value === 'Zed'", timeout=30_000)
        _assert_inert(page, dialogs)
        page.close()


def test_a_page_opened_first_after_the_server_starts_has_the_apps_navigation(tmp_path, browser):
    """A bookmark opened before anyone opened the front page once ran that page's file alone (Streamlit's legacy
    multipage mode, chosen while a folder named pages/ sits beside the entry point): no language choice, and the
    helper modules listed as pages."""
    with serve_dashboard(tmp_path, {"AIO_DB_URL": f"sqlite:///{tmp_path / 'aio.db'}", "AIO_AUTH": "off"}) as base:
        dialogs: list[str] = []
        page = _open(browser, base, "screen", dialogs)
        navigation = page.get_by_test_id("stSidebarNav").inner_text()
        assert "Screen comments · 评论筛查" in navigation and "strings" not in navigation, navigation
        assert page.get_by_text("Language / 语言").count() == 1
        page.close()


def _progress_line(page) -> tuple[int, str]:
    """The running job's progress line on the Screen page, and the row it says labelling has reached (the stored
    count beside it moves per chunk)."""
    line = page.get_by_text(re.compile(r"rows/s")).first
    line.wait_for(timeout=90_000)
    text = line.inner_text()
    return int(re.search(r"labelled up to row ([\d,]+)", text).group(1).replace(",", "")), text


def test_a_screening_runs_in_the_background_through_page_changes_reloads_and_a_restart(tmp_path, browser):
    """One text per forward pass (about a minute of work for the tiny model), so progress is seen between chunks."""
    url = f"sqlite:///{tmp_path / 'aio.db'}"
    rows = 8000
    source = tmp_path / "long.csv"
    source.write_text("author,comment\n" + "".join(f"u{i % 40},comment {i} on today's lesson\n"
                                                  for i in range(rows)), encoding="utf-8")
    settings = {"AIO_DB_URL": url, "AIO_AUTH": "off", "AIO_BATCH_SIZE": "1"}
    port = free_port()
    dialogs: list[str] = []
    with serve_dashboard(tmp_path, settings, port=port) as base:
        page = _open(browser, base, "screen", dialogs)
        page.locator("input[type='file']").set_input_files(str(source))
        page.get_by_role("button", name=f"Screen {rows:,} rows").click()
        seen = [_progress_line(page)[0]]
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.get_by_text(re.compile(r"rows/s")).first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "screen-job-running.png"))
        for _ in range(4):  # the line moves while the page is left alone, not only when a chunk is stored
            page.wait_for_timeout(1500)
            seen.append(_progress_line(page)[0])
        assert seen == sorted(seen) and len(set(seen)) >= 3, seen
        assert any(done % 256 for done in seen), f"progress only moved per stored chunk: {seen}"
        page.get_by_test_id("stSidebarNav").get_by_text("Overview").click()  # another page, same session
        page.get_by_test_id("stMetric").first.wait_for(timeout=60_000)
        page.get_by_test_id("stSidebarNav").get_by_text("Screen comments").click()
        assert _progress_line(page)[0] >= seen[-1]
        page.reload()  # a new browser session: the job is found in the store
        before_restart = _progress_line(page)[0]
        assert before_restart >= seen[-1]
    with sqlite3.connect(tmp_path / "aio.db") as connection:  # the server is gone; its job is left running
        assert connection.execute("SELECT status FROM jobs").fetchone()[0] == "running"
    with serve_dashboard(tmp_path, settings, port=port) as base:
        page.goto(f"{base}/screen")  # the first page view after the restart resumes the job
        after_restart = _progress_line(page)[0]
        assert after_restart < rows
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text(re.compile("was cancelled with")).wait_for(timeout=60_000)
        settle(page)
        page.screenshot(path=str(SHOTS / "screen-job-cancelled.png"), full_page=True)
        page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
        page.get_by_role("option", name="中文").click()
        settle(page)
        headers = "e => Array.from(e.querySelectorAll('[role=columnheader]')).map(x => x.textContent)"
        tables = page.get_by_test_id("stDataFrame")  # the batches, then the results of the batch shown
        assert tables.first.evaluate(headers)[:4] == ["批次", "文件", "行数", "状态"]
        assert tables.last.evaluate(headers) == ["行", "人员", "文本", "标签", "置信度", "不确定", "风险", "需关注"]
        cells = "e => Array.from(e.querySelectorAll('[role=gridcell]')).map(x => x.textContent)"
        assert "已取消" in tables.first.evaluate(cells)  # the batch's status, in the reader's language too
        _assert_inert(page, dialogs)
        page.close()
    with sqlite3.connect(tmp_path / "aio.db") as connection:
        status, done = connection.execute("SELECT status, rows_done FROM jobs").fetchone()
        stored = [r[0] for r in connection.execute("SELECT row_index FROM messages ORDER BY row_index")]
    assert status == "cancelled" and done == len(stored) and before_restart - 256 <= len(stored) < rows
    assert stored == list(range(1, len(stored) + 1)) and len(stored) % 256 == 0  # whole chunks, each row once
    assert list((tmp_path / "data" / "jobs").glob("*/*")) == []  # the kept upload is deleted with the job


# ---- sign-in and roles, against a real server with local accounts ---------------------------------------------------

PASSWORD = "correct horse battery"
ROLE_PAGES = {  # what each role's navigation lists, and a page it may not open
    "admin": ({"Overview", "Chat", "Screen comments", "Trends & alerts", "Admin"}, None),
    "cara": ({"Overview", "Chat", "Trends & alerts"}, "screen"),
    "lee": ({"Overview", "Trends & alerts"}, "chat"),
    "mod": ({"Screen comments"}, "trends"),
    "ann": ({"Chat"}, "trends"),
}


def _two_classes(session) -> None:
    """Six negative 'secret' messages each from ann (Class A) and ben (Class B)."""
    start = datetime(2026, 4, 1, 9)
    add_messages(session, [NewMessage(f"{h} secret {i}", "chat", person=h, group=g, label="negative", confidence=0.9,
                                      p_negative=0.9, uncertain=False, created_at=start + timedelta(days=i))
                           for h, g in (("ann", "Class A"), ("ben", "Class B")) for i in range(6)], rule=AlertRule())


@pytest.fixture(scope="module")
def school_app(tmp_path_factory):
    from db.users import add_user

    folder = tmp_path_factory.mktemp("school")
    url = f"sqlite:///{folder / 'aio.db'}"
    db = make_db(url)
    with writing(db) as session:
        _two_classes(session)
        add_user(session, "admin", PASSWORD, role="admin", by="test")
        add_user(session, "cara", PASSWORD, role="counsellor", by="test", groups=("Class A",))
        add_user(session, "lee", PASSWORD, role="teacher", by="test", groups=("Class A",))
        add_user(session, "mod", PASSWORD, role="moderator", by="test")
        add_user(session, "ann", PASSWORD, role="student", by="test", groups=("Class A",), person="ann")
    db.dispose()
    with serve_dashboard(folder, {"AIO_DB_URL": url, "AIO_AUTH": "local"}) as base:
        yield base


def _sign_in(browser, url: str, username: str, password: str = PASSWORD):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.get_by_role("textbox", name="User name").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    settle(page)
    return page


@pytest.mark.parametrize("username", list(ROLE_PAGES))
def test_each_role_signs_in_and_sees_only_its_pages_and_people(school_app, browser, username):
    pages, forbidden = ROLE_PAGES[username]
    page = _sign_in(browser, school_app, username)
    page.get_by_text("Signed in as").wait_for(timeout=60_000)
    settle(page)
    if len(pages) > 1:
        listed = {link.inner_text().split(" · ")[0].strip().splitlines()[-1] for link in
                  page.get_by_test_id("stSidebarNav").locator("a").all()}
        assert listed == pages
    else:  # one page: Streamlit shows no navigation at all, only that page
        assert page.get_by_test_id("stSidebarNav").count() == 0
        assert page.get_by_role("heading", name=next(iter(pages))).count() == 1
    body = page.inner_text("body")
    assert "ben" not in body or username == "admin"
    page.screenshot(path=str(SHOTS / f"signed-in-{username}.png"), full_page=True)
    page.close()
    if forbidden:  # typing another page's address: sign in again, and still nothing of it
        page = _sign_in(browser, f"{school_app}/{forbidden}", username)
        body = page.inner_text("body")
        assert "secret" not in body or username in ("cara", "ann")
        assert "ben" not in body
        page.close()


def test_a_wrong_password_in_the_browser_is_one_sentence(school_app, browser):
    page = _sign_in(browser, school_app, "lee", "not the password")
    body = page.inner_text("body")
    assert "That user name and password do not match; check both and try again." in body
    assert "secret" not in body and "Traceback" not in body
    page.close()


# ---- sign-in through a school identity provider (OIDC, Streamlit's st.login) ----------------------------------------

@pytest.fixture(scope="module")
def oidc_app(tmp_path_factory):
    """The dashboard with an [auth] section pointing at a real OpenID Connect provider process on loopback
    (oidc-provider-mock: any client may use it; the browser types the identity on its authorization form)."""
    from db.users import add_user, set_disabled

    folder = tmp_path_factory.mktemp("oidc")
    provider_port, app_port = free_port(), free_port()
    provider_log = (folder / "provider.log").open("w")
    provider = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port",
                                 str(provider_port)], stdout=provider_log, stderr=subprocess.STDOUT)
    issuer = f"http://127.0.0.1:{provider_port}"
    wait_until_up(f"{issuer}/.well-known/openid-configuration", provider, folder / "provider.log",
                   "the OIDC provider", seconds=30)
    secrets_file = folder / "secrets.toml"
    secrets_file.write_text(f"""[auth]
redirect_uri = "http://127.0.0.1:{app_port}/oauth2callback"
cookie_secret = "{os.urandom(16).hex()}"
client_id = "aio-dashboard"
client_secret = "{os.urandom(16).hex()}"
server_metadata_url = "{issuer}/.well-known/openid-configuration"
""")
    for address in ("lee@school.example", "old@school.example", "nobody@school.example"):  # the provider vouches
        _provider_user(issuer, address, {"email": address, "email_verified": True})
    url = f"sqlite:///{folder / 'aio.db'}"
    db = make_db(url)
    with writing(db) as session:
        _two_classes(session)
        add_user(session, "admin", PASSWORD, role="admin", by="test")
        add_user(session, "lee", None, role="teacher", by="test", groups=("Class A",), email="lee@school.example")
        add_user(session, "old", None, role="teacher", by="test", groups=("Class A",), email="old@school.example")
        set_disabled(session, "old", True, by="test")
    db.dispose()
    try:
        with serve_dashboard(folder, {"AIO_DB_URL": url, "AIO_AUTH": "local"}, port=app_port,
                     options=("--secrets.files", str(secrets_file))) as base:
            yield base, url, issuer
    finally:
        provider.terminate()
        provider.wait(timeout=10)


def _provider_user(issuer: str, subject: str, claims: dict) -> None:
    """What the provider will say about `subject` when it signs in (oidc-provider-mock's own API)."""
    import json

    request = urllib.request.Request(f"{issuer}/users/{urllib.parse.quote(subject)}", method="PUT",
                                     data=json.dumps(claims).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10)


def _school_sign_in(browser, base: str, address: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # a new context: no cookies
    page.goto(base)
    page.get_by_role("button", name="Sign in with your school account").click()
    page.locator("input[name=sub]").first.fill(address)  # the provider's authorization form
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{base}/**", timeout=60_000)
    settle(page)
    return page


def test_a_teacher_signs_in_through_the_school_provider_and_sees_only_their_class(oidc_app, browser):
    from sqlalchemy import select

    from db.models import AuditEvent

    base, url, _ = oidc_app
    page = _school_sign_in(browser, base, "lee@school.example")
    page.get_by_text("Signed in as").wait_for(timeout=60_000)
    settle(page)
    body = page.inner_text("body")
    assert "Signed in as lee (teacher)" in body
    assert "ben" not in body  # Class B is not theirs
    page.screenshot(path=str(SHOTS / "signed-in-oidc-teacher.png"), full_page=True)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="End session").click(timeout=60_000)  # the provider's own sign-out, then back
    page.get_by_role("button", name="Sign in with your school account").wait_for(timeout=60_000)
    assert "secret" not in page.inner_text("body")  # signed out of both: nothing of the class is left on screen
    page.close()
    db = make_db(url)
    with writing(db) as session:
        events = [(e.actor, e.action, e.detail or "") for e in session.scalars(select(AuditEvent))]
    db.dispose()
    assert any(a == "lee" and b == "signin" and c.startswith("oidc") for a, b, c in events)
    assert any(a == "lee" and b == "signout" for a, b, _ in events)


@pytest.mark.parametrize(("address", "sentence"), [
    ("nobody@school.example", "You signed in as nobody@school.example, but no account here uses that address; "
                              "ask an administrator to add it."),
    ("old@school.example", "This account is disabled; ask an administrator to enable it."),
])
def test_a_school_identity_without_a_usable_account_is_one_sentence(oidc_app, browser, address, sentence):
    base, _, _ = oidc_app
    page = _school_sign_in(browser, base, address)
    page.get_by_text(sentence).wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "secret" not in body and "Traceback" not in body and "Signed in as" not in body
    page.close()


@pytest.mark.parametrize(("subject", "claims", "sentence"), [
    ("impostor-1", {"email": "lee@school.example"}, "did not confirm"),  # no email_verified: not verified
    ("impostor-2", {"email": "lee@school.example", "email_verified": False}, "did not confirm"),
    ("lee-twin", {"email": "lee@school.example", "email_verified": True}, "another school account"),
])
def test_a_school_address_signs_in_only_verified_and_only_as_its_first_subject(oidc_app, browser, subject, claims,
                                                                                sentence):
    base, _, issuer = oidc_app
    first = _school_sign_in(browser, base, "lee@school.example")  # binds lee's account to this subject
    first.get_by_text("Signed in as lee").wait_for(timeout=60_000)
    first.close()
    _provider_user(issuer, subject, claims)
    page = _school_sign_in(browser, base, subject)
    page.get_by_text(sentence).first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "Signed in as" not in body and "secret" not in body
    page.close()


def test_sign_out_in_the_browser_leaves_nothing_on_screen(school_app, browser):
    page = _sign_in(browser, school_app, "lee")
    page.get_by_text("Signed in as").wait_for(timeout=60_000)
    settle(page)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("textbox", name="Password").wait_for(timeout=60_000)
    settle(page)
    body = page.inner_text("body")
    assert "Signed in as" not in body and "secret" not in body and "ann" not in body
    page.close()
