"""What an administrator sets up and checks about notifications: how each channel is set up and doing, the escalation
lists, the digest schedule and the include-the-text choices (saved and audited), and a test send that bypasses the
outbox. The sender itself is `notify.py`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time

from sqlalchemy import Engine as Database

from aio_core.channels import DeliveryError, Email
from aio_core.errors import UserError
from aio_core.notices import dashboard_link, trial_email
from aio_core.settings import Settings
from aio_core.workflows.notify import Channels
from db.errors import StoreError
from db.escalation import CONTACT_ROLES, escalation_lists
from db.models import Notification, utcnow
from db.outbox import CHANNELS, ChannelHealth, channel_health, list_outbox, notification_key, outbox_counts
from db.privacy import audit
from db.session import reading, writing
from db.users import get_setting, list_users, set_setting

FREQUENCIES = ("off", "daily", "weekly")
_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class NotifyStatus:
    """Everything the Admin page shows about notifications, read at once."""

    transports: dict[str, str | None]  # channel: how it is set up, None = not set up
    health: dict[str, ChannelHealth]
    counts: dict[str, int]
    recent: list[Notification]
    lists: dict[str, list[str]]  # group: its escalation list (usernames, in order)
    contacts: dict[str, str]  # username: "Name <address>", for every account that may be on a list
    frequency: str
    at: str
    include_text: dict[str, bool]  # channel: whether notices carry the message text


def notify_status(settings: Settings, db: Database, *, now: datetime | None = None) -> NotifyStatus:
    now = now or utcnow()
    channels = Channels.from_settings(settings)
    with reading(db) as session:
        return NotifyStatus(
            transports={"email": channels.mail.describe() if channels.mail else None,
                        "webhook": channels.webhook.describe() if channels.webhook else None},
            health={c: channel_health(session, c, now=now) for c in CHANNELS}, counts=outbox_counts(session),
            recent=list_outbox(session), lists={g: [u.username for u in users]
                                                for g, users in escalation_lists(session).items()},
            contacts={u.username: f"{u.display_name} <{u.email}>" for u, _ in list_users(session)
                      if u.email and not u.disabled and u.role in CONTACT_ROLES},
            frequency=get_setting(session, "digest_frequency"), at=get_setting(session, "digest_time"),
            include_text={c: get_setting(session, f"notify_text_{c}") == "yes" for c in CHANNELS})


def save_notification_settings(db: Database, *, frequency: str, at: str | time, text_email: bool,
                               text_webhook: bool, by: str) -> None:
    """The admin's digest schedule and include-the-text choices, checked, saved and audited together."""
    at = at.strftime("%H:%M") if isinstance(at, time) else at.strip()
    if frequency not in FREQUENCIES:
        raise StoreError(f"Digests are sent {', '.join(FREQUENCIES)}; {frequency!r} is none of those.")
    if not _HH_MM.match(at):
        raise StoreError(f"The digest time {at!r} is not a time of day; write it as HH:MM, e.g. 07:00.")
    with writing(db) as session:
        for key, value in (("digest_frequency", frequency), ("digest_time", at),
                           ("notify_text_email", "yes" if text_email else "no"),
                           ("notify_text_webhook", "yes" if text_webhook else "no")):
            if get_setting(session, key) != value:
                set_setting(session, key, value, by=by)


def send_test(settings: Settings, db: Database, *, to: str | None, webhook: bool, by: str) -> list[str]:
    """Send a test e-mail to `to` and/or a test post to the webhook now, outside the outbox. Returns what was sent;
    a problem is one sentence (UserError)."""
    channels = Channels.from_settings(settings)
    if not to and not webhook:
        raise UserError("Say where to send the test: --to ADDRESS for e-mail, --webhook for the webhook.")
    if to and channels.mail is None:
        raise UserError("E-mail is not set up: set AIO_SMTP_URL and AIO_SMTP_FROM, then send the test again.")
    if webhook and channels.webhook is None:
        raise UserError("No webhook is set up: set AIO_WEBHOOK_URL, then send the test again.")
    now, done = utcnow(), []
    link = dashboard_link(settings.dashboard_url)
    try:
        if to:
            subject, body = trial_email(link, settings.ui_lang)
            channels.mail.send(Email(to, subject, body, notification_key("test", to, now.isoformat())))
            done.append(f"test e-mail sent to {to} through {channels.mail.describe()}")
        if webhook:
            key = notification_key("test", "webhook", now.isoformat())
            channels.webhook.post({"id": key, "event": "test", "text": "Test notification from the sentiment "
                                   f"monitor: {link}", "link": link}, key)
            done.append(f"test post sent to {channels.webhook.describe()}")
    except DeliveryError as problem:
        with writing(db) as session:
            audit(session, by, "notify.test", to or "webhook", f"failed: {problem}")
        raise UserError(str(problem)) from problem
    with writing(db) as session:
        audit(session, by, "notify.test", to or "webhook", "; ".join(done))
    return done


def save_escalation_list(db: Database, group: str, usernames: list[str], *, by: str) -> list[str]:
    """Who an urgent alert of `group` goes to, in order (logged as notify.escalation_list); returns the list saved."""
    from db.escalation import set_escalation_list

    with writing(db) as session:
        return set_escalation_list(session, group, usernames, by=by)
