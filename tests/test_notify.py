"""Notifications end to end, on real servers on loopback: an SMTP server (aiosmtpd) and an HTTP server for the
webhook, a real SQLite file, the tiny model for the chat turn, and a real `python -m aio_core notify run` process
killed with SIGKILL. The clock is injected; nothing waits for wall-clock minutes."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, timedelta
from email import message_from_bytes
from email.message import Message as Mail
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from helpers import free_port
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from aio_core.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from aio_core.workflows.conversation import start_turn
from aio_core.workflows.notify import run_cycle, start_sender, stop_sender
from aio_core.workflows.notify_setup import save_notification_settings, send_test
from db.alerts import list_alerts, transition_alert
from db.escalation import set_escalation_list
from db.models import AlertEvent, AuditEvent, Notification, utcnow
from db.outbox import channel_health
from db.session import reading, writing
from db.store import NewMessage, add_messages
from db.users import add_user, set_setting

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
URGENT = "i want to kill myself"


class Inbox:
    """An aiosmtpd handler that keeps every message it is handed (`received`, repeats included) and, like a mail
    server or an inbox, one copy per Message-ID (`delivered`). `hold()` makes it stop on the next message after
    reading it, before answering, until `release()`."""

    def __init__(self) -> None:
        self.received: list[Mail] = []
        self.arrived = threading.Event()
        self._hold = False
        self._release = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        mail = message_from_bytes(envelope.content)
        self.received.append(mail)
        if self._hold:
            self._hold = False
            self.arrived.set()
            while not self._release.is_set():
                await asyncio.sleep(0.01)
        return "250 Message accepted for delivery"

    def hold(self) -> None:
        self._hold, self.arrived, self._release = True, threading.Event(), threading.Event()

    def release(self) -> None:
        self._release.set()

    @property
    def delivered(self) -> dict[str, Mail]:
        kept: dict[str, Mail] = {}
        for mail in self.received:
            kept.setdefault(mail["Message-ID"], mail)
        return kept

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.delivered.values() if m["To"] == address]


def body(mail: Mail) -> str:
    return mail.get_payload(decode=True).decode("utf-8")


def start_smtp(port: int) -> tuple[Controller, Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, inbox


@pytest.fixture
def smtp():
    controller, inbox = start_smtp(free_port())
    inbox.port = controller.port
    yield inbox
    controller.stop()


class Hook(BaseHTTPRequestHandler):
    posts: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append(({k.lower(): v for k, v in self.headers.items()}, data))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.posts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def school(db):
    """A store with Class A (counsellor cara, teacher lee) and Class B (counsellor cole, teacher tess), an admin
    and a deputy head, each with an address."""
    with writing(db) as session:
        for name, role, groups in (("head", "admin", ()), ("cara", "counsellor", ("Class A",)),
                                   ("cole", "counsellor", ("Class B",)), ("lee", "teacher", ("Class A",)),
                                   ("tess", "teacher", ("Class B",)), ("dana", "counsellor", ())):
            add_user(session, name, PASSWORD, role=role, by="test", groups=groups, email=f"{name}@school.example")
        set_setting(session, "digest_frequency", "off", by="test")  # digests have their own test
    return db


def configured(engine, db, smtp_port: int, hook_server=None, **changes):
    return engine.settings.replace(db_url=str(db.url), smtp_url=f"smtp://127.0.0.1:{smtp_port}",
                                   smtp_from="Wellbeing monitor <monitor@school.example>",
                                   webhook_url=f"http://127.0.0.1:{hook_server.server_port}/hook" if hook_server
                                   else None, webhook_secret="s3cret" if hook_server else None,
                                   dashboard_url="https://monitor.school.example", **changes)


def chat(engine, db, rule, handle: str, group: str | None, text: str = URGENT):
    turn = start_turn(text, person=handle, group=group, engine=engine, db=db, rule=rule, author=handle)
    assert turn.risk is not None and turn.risk.level == "urgent"
    return turn


def history(db, handle: str) -> list[str]:
    with reading(db) as session:
        (alert,) = [a for a in list_alerts(session) if a.person.handle == handle]
        return [e.note or "" for e in alert.events]


# ---- an urgent message reaches its counsellor and the webhook within one cycle, without its text --------------------

def test_an_urgent_chat_message_reaches_the_counsellor_and_the_webhook_in_one_cycle_without_its_text(
        engine, school, rule, smtp, hook):
    settings = configured(engine, school, smtp.port, hook)
    chat(engine, school, rule, "amy", "Class A")
    with reading(school) as session:  # queued in the transaction that stored the message and opened its alert
        assert {(n.channel, n.recipient, n.status) for n in session.scalars(select(Notification))} == {
            ("email", "cara@school.example", "waiting"), ("webhook", "", "waiting")}

    done = run_cycle(settings, school)

    assert done.sent == 2 and not done.errors
    (mail,) = smtp.delivered.values()  # the counsellor of Class A only: not the teacher, not the admin
    assert mail["To"] == "cara@school.example" and mail["From"] == "Wellbeing monitor <monitor@school.example>"
    assert mail["Subject"] == "Risk alert #1 in Class A: urgent"
    text = body(mail)
    assert "self-harm" in text and "https://monitor.school.example/trends" in text and "counsellor of Class A" in text
    assert "kill" not in text.lower() and "amy" not in text.lower()  # neither the message nor the name
    (headers, raw), = hook.posts
    post = json.loads(raw)
    assert (post["level"], post["category"], post["group"], post["alert"]) == ("urgent", "self-harm", "Class A", 1)
    assert "kill" not in raw.decode().lower() and "amy" not in raw.decode().lower() and "message" not in post
    assert headers["idempotency-key"] == post["id"]
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()],
                               "sha256=" + sign("s3cret", headers[TIMESTAMP_HEADER.lower()], raw))
    assert headers[SIGNATURE_HEADER.lower()] != "sha256=" + sign("another", headers[TIMESTAMP_HEADER.lower()], raw)
    notes = history(school, "amy")
    assert any("notified cara <cara@school.example> by e-mail (step 0)" in n for n in notes)
    assert any("notified the webhook by webhook post (step 0)" in n for n in notes)
    with reading(school) as session:
        actions = [a for a, in session.execute(select(AuditEvent.action).where(AuditEvent.action.like("alert.%")))]
        assert actions.count("alert.notify") == 2
    assert run_cycle(settings, school).sent == 0  # sent once: nothing is left to send

    # Control: with "include the text" on for e-mail (only), the same check finds the text in the e-mail.
    with writing(school) as session:
        set_setting(session, "notify_text_email", "yes", by="head")
    chat(engine, school, rule, "bo", "Class A")
    run_cycle(settings, school)
    assert URGENT in body(smtp.to("cara@school.example")[-1])
    assert URGENT not in hook.posts[-1][1].decode()


def test_a_person_in_no_group_goes_to_the_admins_and_commenters_to_nobody(engine, school, rule, smtp, tmp_path):
    from aio_core.workflows.screening import ScreenOptions, screen_file

    settings = configured(engine, school, smtp.port)
    chat(engine, school, rule, "zed", None)
    upload = tmp_path / "comments.csv"  # an uploaded comment's author is not a school's person
    upload.write_text(f"author,comment\nzed,{URGENT}\n", encoding="utf-8")
    screen_file(upload, ScreenOptions("comment", "author"), engine=engine, db=school)
    with reading(school) as session:
        assert {(a.person.handle, a.severity) for a in list_alerts(session)} == {("zed", "urgent"),
                                                                                ("comment:zed", "urgent")}
    run_cycle(settings, school)
    (mail,) = smtp.delivered.values()
    assert mail["To"] == "head@school.example" and "the person is in no group" in body(mail)


# ---- escalation -------------------------------------------------------------------------------------------------

def test_an_unacknowledged_alert_escalates_to_the_next_contact_and_stops_once_acknowledged(engine, school, rule, smtp):
    settings = configured(engine, school, smtp.port, escalate_minutes=2)
    with writing(school) as session:
        set_escalation_list(session, "Class A", ["dana"], by="head")
    chat(engine, school, rule, "amy", "Class A")
    start = utcnow()
    run_cycle(settings, school, now=start)
    assert [m["To"] for m in smtp.delivered.values()] == ["cara@school.example"]

    run_cycle(settings, school, now=start + timedelta(minutes=1))  # not yet: nobody else is told early
    assert len(smtp.delivered) == 1
    run_cycle(settings, school, now=start + timedelta(minutes=2, seconds=5))
    (escalated,) = smtp.to("dana@school.example")
    assert escalated["Subject"] == "Not yet acknowledged: urgent risk alert #1 in Class A"
    assert "Nobody acknowledged it in 2 minutes" in body(escalated) and "kill" not in body(escalated)
    assert any(n.startswith("escalated (step 1)") and "to dana (dana), contact 1 on the escalation list of Class A" in n
               for n in history(school, "amy"))

    with writing(school) as session:
        transition_alert(session, 1, "acknowledged", by="cara", note="talking to amy")
    run_cycle(settings, school, now=start + timedelta(minutes=10))  # the admins would have been next
    assert sorted(m["To"] for m in smtp.delivered.values()) == ["cara@school.example", "dana@school.example"]

    # Control: an alert nobody acknowledges goes on to the administrators, and then stops.
    chat(engine, school, rule, "bo", "Class A")
    later = utcnow()
    for minutes in (0, 2.1, 4.2, 6.3, 8.4):
        run_cycle(settings, school, now=later + timedelta(minutes=minutes))
    assert [m["To"] for m in smtp.delivered.values()][2:] == ["cara@school.example", "dana@school.example",
                                                              "head@school.example"]
    with reading(school) as session:
        escalations = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "alert.escalate")).all()
    assert sorted(escalations) == ["step 1 to dana", "step 1 to dana", "step 2 to head"]


# ---- a sender killed between send and mark sends nothing twice ---------------------------------------------------

def sender(db, smtp_port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIO_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
           "AIO_SMTP_FROM": "monitor@school.example", "AIO_WEBHOOK_URL": ""}
    return subprocess.Popen([sys.executable, "-m", "aio_core", "--db", str(db.url), "notify", "run", "--once"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_sender_killed_between_send_and_mark_sends_nothing_twice(school, rule, smtp):
    with writing(school) as session:
        add_messages(session, [NewMessage(f"note {i}", "chat", person=f"kid{i}", group="Class A", label="negative",
                                          risk="urgent", risk_category="self-harm") for i in range(3)], rule=rule)
    smtp.hold()  # the server takes the first message, then does not answer until released
    first = sender(school, smtp.port)
    assert smtp.arrived.wait(60), first.communicate()
    first.send_signal(signal.SIGKILL)  # after the server has the message, before the sender could mark it sent
    first.wait(30)
    smtp.release()
    with reading(school) as session:
        states = [n.status for n in session.scalars(select(Notification).where(Notification.channel == "email")
                                                    .order_by(Notification.id))]
    assert states == ["sending", "waiting", "waiting"]  # claimed and sent, never marked

    second = sender(school, smtp.port)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    ids = [m["Message-ID"] for m in smtp.received]
    assert len(ids) == 4 and ids[0] == ids[1]  # the one in flight went again, under its own Message-ID ...
    assert len(set(ids)) == 3 == len(smtp.delivered)  # ... so the server keeps each of the three once
    assert all(ids.count(i) == 1 for i in ids[2:])  # and nothing that had not been in flight went twice
    with reading(school) as session:
        rows = session.scalars(select(Notification).where(Notification.channel == "email")
                               .order_by(Notification.id)).all()
    assert [(n.status, n.attempts) for n in rows] == [("sent", 2), ("sent", 1), ("sent", 1)]
    assert sorted(f"<aio.{n.key}@school.example>" for n in rows) == sorted(set(ids))


# ---- a server that is down: retried with backoff, shown on Admin, sent once it is back --------------------------

def admin_page(db, monkeypatch, tmp_path) -> AppTest:
    for name, value in {"AIO_MODEL": "tiny-random", "AIO_DB_URL": str(db.url), "AIO_AUTH": "off",
                        "AIO_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120).run()
    at.switch_page("app_pages/admin.py").run()
    assert not at.exception
    return at


def test_a_down_mail_server_is_retried_with_backoff_shown_on_admin_and_sent_once_it_is_back(
        engine, school, rule, hook, monkeypatch, tmp_path):
    port = free_port()  # nothing listens there yet
    settings = configured(engine, school, port, hook)
    chat(engine, school, rule, "amy", "Class A")
    start = utcnow()
    first = run_cycle(settings, school, now=start)
    assert (first.sent, first.retried) == (1, 1) and "Cannot reach the mail server 127.0.0.1" in first.errors[0]
    assert run_cycle(settings, school, now=start + timedelta(seconds=20)).retried == 0  # waits its 30 s
    tries = [start + timedelta(seconds=s) for s in (31, 31 + 61)]
    for moment in tries:
        assert run_cycle(settings, school, now=moment).retried == 1
    with reading(school) as session:
        (row,) = session.scalars(select(Notification).where(Notification.channel == "email")).all()
        assert (row.status, row.attempts, row.next_attempt_at) == ("waiting", 3, tries[-1] + timedelta(minutes=2))
        assert channel_health(session, "email", now=tries[-1]).failing
        assert not channel_health(session, "webhook", now=tries[-1]).failing

    at = admin_page(school, monkeypatch, tmp_path)
    warnings = " ".join(w.value for w in at.warning)
    assert "E-mail notifications keep failing" in warnings and "Cannot reach the mail server" in warnings
    assert "webhook" not in warnings.lower()
    outbox = next(d.value for d in at.dataframe if "Channel" in d.value.columns)
    assert sorted(outbox["Status"]) == ["sent", "waiting"]

    controller, inbox = start_smtp(port)  # the mail server is back
    try:
        assert run_cycle(settings, school, now=tries[-1] + timedelta(minutes=2)).sent == 1
    finally:
        controller.stop()
    assert [m["To"] for m in inbox.delivered.values()] == ["cara@school.example"]
    at = admin_page(school, monkeypatch, tmp_path)
    assert not any("keep failing" in w.value for w in at.warning)


def test_the_admin_sets_a_groups_escalation_list_digests_and_the_text_choice_on_the_page(school, monkeypatch,
                                                                                           tmp_path):
    at = admin_page(school, monkeypatch, tmp_path)
    assert any("No notification channel is set up" in i.value for i in at.info)  # nothing would be sent: it says so
    at.selectbox(key="escalation_group").set_value("Class A").run()
    contacts = at.multiselect(key="escalation_Class A")
    assert "tess <tess@school.example>" in contacts.options  # every account that has an address to reach
    contacts.set_value(["tess", "dana"]).run()  # in this order
    at.button(key="save_escalation").click().run()
    assert any("The escalation list of Class A is now: tess, dana." in s.value for s in at.success)
    at.selectbox(key="digest_frequency").set_value("weekly").run()
    at.toggle(key="text_webhook").set_value(True).run()
    at.button(key="save_notify").click().run()
    assert not at.exception
    with reading(school) as session:
        from db.escalation import escalation_lists
        from db.users import get_setting

        assert [u.username for u in escalation_lists(session)["Class A"]] == ["tess", "dana"]
        assert (get_setting(session, "digest_frequency"), get_setting(session, "notify_text_webhook"),
                get_setting(session, "notify_text_email")) == ("weekly", "yes", "no")
        changes = session.execute(select(AuditEvent.action, AuditEvent.target).where(AuditEvent.actor == "local")).all()
    assert set(changes) == {("notify.escalation_list", "Class A"), ("setting.change", "digest_frequency"),
                            ("setting.change", "notify_text_webhook")}


def test_a_refused_address_fails_at_once_and_nobody_to_tell_is_shown(engine, school, rule, smtp, monkeypatch,
                                                                      tmp_path):
    class Refusing(Inbox):
        async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
            return "550 no such user here"

    controller = Controller(Refusing(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings = configured(engine, school, controller.port)
        chat(engine, school, rule, "amy", "Class A")
        done = run_cycle(settings, school)
    finally:
        controller.stop()
    assert done.failed == 1 and "refused the address cara@school.example (550" in done.errors[0]
    assert any("could not notify cara" in n for n in history(school, "amy"))
    with writing(school) as session:  # a group whose counsellors and admins have no address: nobody to tell
        for user in ("head", "cara"):
            from db.users import set_email

            set_email(session, user, None, by="test")
    chat(engine, school, rule, "bo", "Class A")
    assert "nobody to notify" in run_cycle(settings, school).errors[0]
    at = admin_page(school, monkeypatch, tmp_path)
    assert any("could not be sent" in w.value for w in at.warning)


# ---- digests ------------------------------------------------------------------------------------------------------

def test_a_teachers_digest_holds_only_their_groups(engine, school, rule, smtp):
    settings = configured(engine, school, smtp.port)
    now = utcnow()
    rows = []
    for day, labels in ((2, "+++"), (1, "------")):  # amy's trend turns: positive the day before, negative now
        rows += [NewMessage(f"amy private words {day}{i}", "chat", person="amy", group="Class A", label=label,
                            confidence=0.9, p_negative=0.9 if label == "negative" else 0.1, uncertain=False,
                            created_at=now - timedelta(days=day - 1, hours=2 - i / 10))
                 for i, label in enumerate("positive" if c == "+" else "negative" for c in labels)]
    rows += [NewMessage(f"ben private words {i}", "chat", person="ben", group="Class B", label="positive",
                        confidence=0.9, p_negative=0.1, uncertain=False, created_at=now - timedelta(hours=3 + i))
             for i in range(4)]
    with writing(school) as session:
        add_messages(session, rows, rule=rule)
    now = utcnow() + timedelta(minutes=2)  # the digest time has just passed, after everything above was stored
    local = (now - timedelta(minutes=1)).replace(tzinfo=UTC).astimezone()
    save_notification_settings(school, frequency="daily", at=local.strftime("%H:%M"), text_email=False,
                               text_webhook=False, by="head")

    done = run_cycle(settings, school, now=now)

    assert done.digests == 2 and done.sent == 2  # the two teachers; counsellors and admins get none
    (lee,), (tess,) = smtp.to("lee@school.example"), smtp.to("tess@school.example")
    assert "Class A" in lee["Subject"] and "Class B" not in lee["Subject"]
    assert "Class A: 6 messages, 6 negative (100%); 1 new sustained-negativity alert(s), 1 open; 1 person(s) whose " \
           "trend turned negative." in body(lee)
    assert "Class B" not in body(lee)
    assert "Class B: 4 messages, 0 negative (0%); 0 new" in body(tess) and "Class A" not in body(tess)  # control
    for mail in (lee, tess):
        assert "private" not in body(mail) and "amy" not in body(mail) and "ben" not in body(mail)
    assert run_cycle(settings, school, now=now + timedelta(hours=1)).digests == 0  # once a day


# ---- the dashboard's sender thread, and the test command --------------------------------------------------------

def test_the_dashboards_sender_thread_delivers_what_is_queued(engine, school, rule, smtp):
    settings = configured(engine, school, smtp.port)
    chat(engine, school, rule, "amy", "Class A")
    assert start_sender(settings, school) and not start_sender(settings, school)  # one per database and process
    try:
        deadline = time.monotonic() + 60
        while not smtp.delivered and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_sender(school)
    assert [m["To"] for m in smtp.delivered.values()] == ["cara@school.example"]
    assert not start_sender(engine.settings.replace(db_url=str(school.url)), school)  # no channel: no thread


def test_notify_test_sends_now_or_says_in_one_sentence_what_is_missing(engine, school, smtp):
    settings = configured(engine, school, smtp.port)
    assert send_test(settings, school, to="it@school.example", webhook=False, by="cli:it") == [
        f"test e-mail sent to it@school.example through 127.0.0.1:{smtp.port} (plain, this machine), from "
        "Wellbeing monitor <monitor@school.example>"]
    assert smtp.to("it@school.example")[0]["Subject"] == "Test notification from the sentiment monitor"
    command = [sys.executable, "-m", "aio_core", "--db", str(school.url), "notify", "test", "--to", "x@y.z"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIO_SMTP_URL": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == (
        "error: E-mail is not set up: set AIO_SMTP_URL and AIO_SMTP_FROM, then send the test again.")
    with reading(school) as session:
        assert session.scalars(select(AuditEvent.action).where(AuditEvent.action == "notify.test")).all() == [
            "notify.test"]


def test_the_outbox_goes_with_an_erased_person(engine, school, rule, smtp):
    from aio_core.workflows.privacy import erase

    chat(engine, school, rule, "amy", "Class A")
    run_cycle(configured(engine, school, smtp.port), school)
    with reading(school) as session:
        assert session.scalars(select(Notification)).all()
        events = session.scalars(select(AlertEvent.note)).all()
        assert any("notified cara" in (e or "") for e in events)
    erase(school, "amy", by="head")
    with reading(school) as session:
        assert session.scalars(select(Notification)).all() == []
        details = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "alert.notify")).all()
        assert details and all(d is None for d in details)


def test_settings_name_the_variable_and_the_fix():
    from aio_core.settings import Settings, SettingsError

    cases = {"AIO_SMTP_URL": "http://mail.school.example", "AIO_WEBHOOK_URL": "http://hooks.example.com/x",
             "AIO_DASHBOARD_URL": "monitor.school.example", "AIO_ESCALATE_MINUTES": "0"}
    for name, value in cases.items():
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value, "AIO_SMTP_FROM": "m@school.example"})
    with pytest.raises(SettingsError, match="AIO_SMTP_FROM"):
        Settings.from_env({"AIO_SMTP_URL": "smtps://u:p@mail.school.example"})
    ok = Settings.from_env({"AIO_SMTP_URL": "smtps://u:p%40ss@mail.school.example", "AIO_SMTP_FROM": "m@s.example",
                            "AIO_WEBHOOK_URL": "http://127.0.0.1:9000/hook", "AIO_ESCALATE_MINUTES": "5"})
    assert ok.escalate_minutes == 5 and "p%40ss" not in repr(ok)  # the password never shows in a repr or a log


def test_a_mail_server_without_starttls_is_refused_unless_it_is_this_machine():
    from aio_core.channels import DeliveryError, Email, SmtpMailer, mailer

    assert mailer("smtp://u:p@mail.school.example:587", "m@school.example").starttls
    assert not mailer("smtp://127.0.0.1:25", "m@school.example").starttls  # a local relay
    assert not mailer("smtps://u:p@mail.school.example", "m@school.example").starttls  # TLS from the first byte
    controller, inbox = start_smtp(free_port())  # a server that offers no STARTTLS
    try:
        plain = SmtpMailer(host="127.0.0.1", port=controller.port, implicit_tls=False, username="", password="",
                           sender="m@school.example", starttls=False)
        plain.send(Email("a@school.example", "s", "b", "k1"))
        assert len(inbox.received) == 1
        required = SmtpMailer(host="127.0.0.1", port=controller.port, implicit_tls=False, username="u",
                              password="p", sender="m@school.example", starttls=True)
        with pytest.raises(DeliveryError, match="does not offer STARTTLS") as caught:
            required.send(Email("a@school.example", "s", "b", "k2"))
        assert not caught.value.permanent and len(inbox.received) == 1  # nothing (no password) went in the clear
    finally:
        controller.stop()
