"""Who may see what: local accounts (argon2 hashes, throttling, expiry), roles scoped to groups in the store's
queries, and the dashboard's sign-in through AppTest. A teacher of group A reads nothing of group B by any path."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import PASSWORD, everything_shown, people, signed_in
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from aio_core.workflows.accounts import sign_in
from db.access import scope_for
from db.errors import StoreError
from db.models import AuditEvent, Message, User
from db.privacy import export_person
from db.reports import overview, overview_report, person_report, rank_people
from db.rules import AlertRule
from db.session import reading, writing
from db.signin import CLIENT_FREE
from db.store import NewMessage, add_messages, chat_history, list_people
from db.users import add_user, set_disabled, viewer_for

ROOT = Path(__file__).resolve().parent.parent
def test_a_teacher_of_group_a_reads_nothing_of_group_b_through_any_query(db):
    people(db)
    rule = AlertRule()
    teacher = scope_for("teacher", frozenset({"Class A"}))
    with reading(db) as session:
        assert [p.handle for p in list_people(session, teacher)] == ["ann"]
        assert [p.handle for p in rank_people(session, scope=teacher)] == ["ann"]
        assert overview(session, teacher).messages == 6
        report = overview_report(session, scope=teacher)
        assert {a.person.handle for a in report.urgent} == {"ann"}
        assert person_report(session, "ben", rule, scope=teacher) is None
        assert chat_history(session, "ben", scope=teacher) == []
        assert export_person(session, "ben", teacher) is None
        own = person_report(session, "ann", rule, scope=teacher)
        assert own is not None and all(p.text is None for p in own.points)  # texts only if the setting allows
        student = scope_for("student", frozenset(), person="ann")
        assert [m.text for m in chat_history(session, "ann", scope=student)][:1] == ["ann secret 0"]
        assert chat_history(session, "ben", scope=student) == []
        moderator = scope_for("moderator", frozenset())
        assert list_people(session, moderator) == [] and overview(session, moderator).messages == 0


def test_passwords_are_hashed_and_wrong_throttled_disabled_and_expired_sessions_say_why(db):
    with writing(db) as session:
        add_user(session, "Ms.Lee", PASSWORD, role="teacher", by="test", groups=("Class A",))
    with reading(db) as session:
        stored = session.scalar(select(User.password_hash))
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
    token, problem = sign_in(db, "ms.lee", "wrong password!", client="10.0.0.1")
    assert token is None and problem == "That user name and password do not match; check both and try again."
    now = datetime(2026, 6, 1, 12)
    token, problem = sign_in(db, "ms.lee", PASSWORD, client="10.0.0.1", lifetime=timedelta(hours=1), now=now)
    assert problem is None
    with writing(db) as session:
        viewer = viewer_for(session, token, now=now + timedelta(minutes=30))
        assert (viewer.role, viewer.groups, viewer.name) == ("teacher", frozenset({"Class A"}), "Ms.Lee (ms.lee)")
    with pytest.raises(Exception, match="Your session has expired; sign in again."):
        with writing(db) as session:
            viewer_for(session, token, now=now + timedelta(hours=2))
    for _ in range(CLIENT_FREE):
        sign_in(db, "ms.lee", "not it at all", client="10.0.0.9")
    token, problem = sign_in(db, "ms.lee", PASSWORD, client="10.0.0.9")
    assert token is None and "wait" in problem  # even the right password waits, from the client that guessed
    with writing(db) as session:
        set_disabled(session, "ms.lee", True, by="admin")
    _, problem = sign_in(db, "ms.lee", PASSWORD, client="10.0.0.2")
    assert problem == "This account is disabled; ask an administrator to enable it."
    with reading(db) as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions.count("signin.failed") == 1 + CLIENT_FREE + 1 and "signin" in actions


# ---- the dashboard -------------------------------------------------------------------------------------------------

def test_the_first_start_asks_for_an_admin(tmp_path, monkeypatch):
    monkeypatch.setenv("AIO_DB_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("AIO_AUTH", "local")
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    assert any("create the first administrator" in i.value for i in at.info)
    at.text_input(key="first_user").set_value("head")
    at.text_input(key="first_password").set_value(PASSWORD)
    at.text_input(key="first_again").set_value(PASSWORD)
    at.button[0].click().run()
    assert not at.exception
    at.text_input(key="signin_user").set_value("head")
    at.text_input(key="signin_password").set_value(PASSWORD)
    at.button[0].click().run()
    assert any("Signed in as head (admin)" in c.value for c in at.sidebar.caption)


def test_creating_the_first_admin_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("AIO_DB_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("AIO_AUTH", "local")
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    at.text_input(key="first_user").set_value("Head")
    at.text_input(key="first_password").set_value(PASSWORD)
    at.text_input(key="first_again").set_value(PASSWORD)
    at.button[0].click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Administrator head created; sign in with that name."]
    assert at.text_input(key="signin_user")  # and the sign-in form is shown under it


def test_adding_an_account_lists_it_at_once_and_empties_the_form(school):
    at = signed_in("admin")
    at.switch_page("app_pages/admin.py").run()
    at.text_input(key="new_user").set_value("carol")
    at.text_input(key="new_user_password").set_value(PASSWORD)
    at.selectbox(key="new_user_role").set_value("counsellor")
    at.button(key="FormSubmitter:add_user-Add an account").click().run()
    assert not at.exception
    assert any("Account carol added." in s.value for s in at.success)
    users = next(d.value for d in at.dataframe if "User name" in d.value.columns)
    assert "carol" in list(users["User name"])  # in the table the same moment
    assert (at.text_input(key="new_user").value, at.text_input(key="new_user_password").value) == ("", "")
    at.text_input(key="new_user").set_value("dan")
    at.text_input(key="new_user_password").set_value("short")  # refused: what was typed stays, to be corrected
    at.button(key="FormSubmitter:add_user-Add an account").click().run()
    assert at.error and at.text_input(key="new_user").value == "dan"


def test_a_wrong_password_is_one_sentence_and_shows_nothing(school):
    at = signed_in("lee", "not the password")
    assert [e.value for e in at.error] == ["That user name and password do not match; check both and try again."]
    assert "secret" not in everything_shown(at)


@pytest.mark.parametrize("username, pages, sees, never", [
    ("admin", {"overview", "chat", "screen", "trends", "admin"}, ["ben"], []),
    ("cara", {"overview", "chat", "trends"}, ["ann secret 0"], ["ben"]),
    ("lee", {"overview", "trends"}, ["ann"], ["ben", "secret"]),
    ("mod", {"screen"}, [], ["ann", "ben"]),
    ("ann", {"chat"}, ["ann secret 1"], ["ben", "negative", "urgent"]),
])
def test_each_role_sees_its_pages_and_only_its_people(school, username, pages, sees, never):
    at = signed_in(username)
    assert not at.exception
    for name in ("overview", "chat", "screen", "trends", "admin"):
        if name not in pages:
            continue
        at.switch_page(f"app_pages/{name}.py").run()
        if name == "chat" and username in ("admin", "cara"):  # they choose whom to read; nobody is preselected
            at.selectbox(key="person").set_value("ann").run()
        assert not at.exception, name
        shown = everything_shown(at)
        assert not [word for word in never if word in shown], (name, [w for w in never if w in shown])
        if name == ("chat" if username in ("ann", "cara") else "trends" if username != "mod" else "screen"):
            assert all(word in shown for word in sees), (name, sees)
    for name in {"overview", "chat", "screen", "trends", "admin"} - pages:  # not even registered for this role
        with pytest.raises(ValueError, match="Could not find a navigation page"):  # (typing its address: test_browser)
            at.switch_page(f"app_pages/{name}.py")


def test_acting_on_an_alert_records_the_signed_in_counsellor(school):
    at = signed_in("cara")
    at.switch_page("app_pages/trends.py").run()
    at.text_area(key="alert_note").set_value("called home").run()
    at.button(key="alert_acknowledged").click().run()
    assert not at.exception
    with reading(school) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action.like("alert.%"))).all()
        assert [(e.actor, e.action) for e in events] == [("cara", "alert.acknowledged")]
        assert "view.person" in session.scalars(select(AuditEvent.action)).all()


def test_a_counsellor_reads_a_persons_messages_newest_first_as_plain_text(school):
    from db.corrections import correct_label

    hostile = "<b>bold</b> [click](javascript:alert(1))"
    with writing(school) as session:
        add_messages(session, [NewMessage(hostile, "chat", person="ann", label="negative", confidence=0.9,
                                          p_negative=0.9, uncertain=False, created_at=datetime(2026, 4, 20, 9))],
                     rule=AlertRule())
        fixed = session.scalar(select(Message.id).where(Message.text == "ann secret 2"))
        correct_label(session, fixed, "positive", by="cara", rule=AlertRule())
    at = signed_in("cara")
    at.switch_page("app_pages/trends.py").run()
    assert not at.exception
    shown = next(d.value for d in at.dataframe if {"message", "label", "risk", "correction"} <= set(d.value.columns))
    assert shown["message"].iloc[0] == hostile  # newest first, exactly as typed (a table cell is never markup)
    assert list(shown["at"]) == sorted(shown["at"], reverse=True) and len(shown) == 7
    row = shown.set_index("message").loc["ann secret 2"]
    assert (row["label"], row["correction"]) == ("positive", "corrected (the model said negative)")
    assert "urgent" in shown.set_index("message").loc["ann secret 0", "risk"]


def test_a_teacher_who_may_not_read_texts_gets_no_picker_they_cannot_use(school):
    at = signed_in("lee")
    at.switch_page("app_pages/trends.py").run()
    assert not at.exception
    keys = {s.key for s in at.selectbox}
    assert "trend_fix_message" not in keys  # a label cannot be judged from a time and the label
    assert "alert_id" not in keys and not [b for b in at.button if b.key and b.key.startswith("alert_")]
    assert not [d for d in at.dataframe if "correction" in d.value.columns]  # no message list without texts
    assert any("History of alert" in e.label for e in at.expander)  # the table's alert can still be read
    counsellor = signed_in("cara")  # the control: a counsellor has both pickers
    counsellor.switch_page("app_pages/trends.py").run()
    assert {"trend_fix_message", "alert_id"} <= {s.key for s in counsellor.selectbox}


def test_user_commands_manage_accounts_and_audit_exports_csv(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'aio.db'}"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "aio_core", "--db", db_url, *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    assert run("user", "add", "lee", "--role", "teacher", "--groups", "Class A,Class B", "--password",
               PASSWORD).returncode == 0
    assert run("user", "add", "lee", "--role", "teacher", "--password", PASSWORD).stderr.strip() == \
        "error: There is already a user 'lee'; choose another name."
    assert run("user", "add", "kid", "--role", "student", "--password", PASSWORD).returncode == 2
    assert run("user", "disable", "lee").returncode == 0
    listed = run("user", "list").stdout
    assert "lee\tteacher\tClass A,Class B\t-\tdisabled" in listed
    audit = run("audit").stdout
    assert "user.add" in audit and "user.disable" in audit and "cli:" in audit



def test_signing_out_ends_the_session_and_asks_for_sign_in_again(school):
    from db.privacy import read_audit

    at = signed_in("lee")
    assert any("Signed in as lee" in c.value for c in at.sidebar.caption)
    at.sidebar.button(key="sign_out").click().run()
    assert "auth_token" not in at.session_state  # what the screen shows after it: test_browser.py
    with writing(school) as session:
        assert ("lee", "signout") in [(e.actor, e.action) for e in read_audit(session, limit=5)]


def test_a_school_sign_in_finds_the_account_by_its_verified_address(db):
    from db.privacy import read_audit
    from db.users import sign_in_oidc, viewer_for

    with writing(db) as session:
        add_user(session, "lee", None, role="teacher", by="test", groups=("Class A",), email="Lee@School.example")
        token, problem = sign_in_oidc(session, "lee@school.example", issuer="https://idp.example",
                                      subject="lee-1", verified=True)
        assert problem is None and viewer_for(session, token).username == "lee"
        assert sign_in_oidc(session, "someone@else.example", verified=True) == (
            None, "You signed in as someone@else.example, but no account here uses that address; ask an "
                  "administrator to add it.")
        assert sign_in_oidc(session, None, verified=True)[0] is None
    token, _ = sign_in(db, "lee", "any password at all", client="10.0.0.1")  # an OIDC-only account has none
    assert token is None
    with writing(db) as session:
        events = [(e.actor, e.action, e.detail) for e in read_audit(session, limit=10)]
    assert ("lee", "signin", "oidc https://idp.example") in events
    assert ("someone@else.example", "signin.failed", "oidc: no account") in events
    with writing(db) as session, pytest.raises(StoreError, match="already signs in as lee@school.example"):
        add_user(session, "lee2", None, role="teacher", by="test", email="lee@school.example")
    with writing(db) as session, pytest.raises(StoreError, match="at least 10 characters"):
        add_user(session, "nopass", None, role="teacher", by="test")  # neither a password nor an address


def test_the_model_line_names_the_model_itself_and_shows_its_folder_to_admins_only(school, tmp_path, monkeypatch):
    """A folder whose config.json names Qwen2.5-Coder was shown as "Qwen/Qwen2.5-0.5B-Instruct" (its profile's
    family), with its full path, to every role."""
    import json

    from aio_core.backends.tiny import build_tiny

    folder = tmp_path / "models" / "coder-copy"
    model, tokenizer = build_tiny()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "_name_or_path": "Qwen/Qwen2.5-Coder-0.5B-Instruct"}))
    monkeypatch.setenv("AIO_MODEL", str(folder))
    monkeypatch.setenv("AIO_DTYPE", "float32")

    def model_line(username: str) -> str:
        at = signed_in(username)
        at.switch_page("app_pages/chat.py").run()
        assert not at.exception
        return next(c.value for c in at.caption if c.value.startswith("Model:")).replace("\\", "")

    admin, counsellor = model_line("admin"), model_line("cara")
    assert admin.startswith("Model: Qwen/Qwen2.5-Coder-0.5B-Instruct · folder, float32, CPU"), admin
    assert str(folder) in admin
    assert counsellor == ("Model: Qwen/Qwen2.5-Coder-0.5B-Instruct · folder, float32, CPU · labels: zero-shot (no "
                          "label head for these weights yet)")  # no path
