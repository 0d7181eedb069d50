"""The sender: delivers the outbox by e-mail and webhook, escalates urgent alerts nobody acknowledged, and queues
teachers' digests. It runs as one thread per database in the dashboard's process (started on the first page view,
when a channel is set up) and as `python -m aio_core notify run [--once]` for cron or a systemd timer; any number
of them may run at once.

One cycle: take back notifications whose sender died, take the escalation steps that are due, queue the digests that
are due, then send every due notification: claim it (a lease), send it, mark it. A failure is tried again after
30 s, 1, 2, 4 ... minutes (at most an hour apart) for a day, then marked failed; a refusal that cannot change (an
unknown address, a 4xx from the webhook) fails at once. A sender killed after sending and before marking leaves the
claim behind: the next sender sends it again under the same key (Message-ID, Idempotency-Key), and the receiver keeps
one. Every send, failure and escalation step is written to the audit log and, for an alert, into its history.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine as Database
from sqlalchemy.orm import Session

from aio_core.channels import DeliveryError, Email, Mailer, Poster, mailer, poster
from aio_core.errors import UserError
from aio_core.notices import Notice, dashboard_link, digest_email
from aio_core.settings import Settings
from db.digests import digest_readers, group_digests, groups_of, queue_digest
from db.errors import StoreError
from db.escalation import due_steps, take_step
from db.models import Alert, AlertEvent, Notification, utcnow
from db.outbox import NOTIFY, alert_facts, claim_next, finish, release_abandoned, skip_channel
from db.privacy import audit
from db.session import reading, writing
from db.users import get_setting

log = logging.getLogger(__name__)

HOST = socket.gethostname()
LEASE = timedelta(minutes=5)  # longer than a send can take (TIMEOUT per connection): a live sender keeps its claim
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(days=1)  # then `failed`, shown on the Admin page
DIGEST_GRACE = timedelta(hours=12)  # a sender that starts later than this after the digest time skips that digest
POLL = 10.0  # seconds between cycles of the dashboard's sender thread


@dataclass(frozen=True)
class Channels:
    """The transports this process may use: None where that channel is not set up."""

    mail: Mailer | None
    webhook: Poster | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Channels:
        return cls(mailer(settings.smtp_url, settings.smtp_from),
                   poster(settings.webhook_url, settings.webhook_secret))

    @property
    def any(self) -> bool:
        return self.mail is not None or self.webhook is not None


@dataclass
class Cycle:
    """What one cycle did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    escalated: int = 0
    digests: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        said = f"sent {self.sent}, to retry {self.retried}, failed {self.failed}, skipped {self.skipped}; " \
               f"escalation steps {self.escalated}; digests queued {self.digests}"
        return said + "".join(f"\n  {error}" for error in self.errors)


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed try: 30 s, 1, 2, 4 ... minutes, at most an hour."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_WAIT)


_IN_FLIGHT: set[int] = set()  # notifications this process is sending right now
_FLIGHT_LOCK = threading.Lock()


def _holder_gone(notification_id: int, worker: str | None) -> bool:
    """Whether the sender holding a claim has died: on this machine, its process is gone (or it is this process,
    which is not sending it); on another machine only its lease tells."""
    host, _, pid = (worker or ":").rpartition(":")
    if host != HOST or not pid.isdigit():
        return worker is None
    if int(pid) == os.getpid():
        with _FLIGHT_LOCK:
            return notification_id not in _IN_FLIGHT
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def run_cycle(settings: Settings, db: Database, *, now: datetime | None = None,
              channels: Channels | None = None) -> Cycle:
    """One pass of the sender (see the module's docstring). `now`: the clock, injectable for tests."""
    now = now or utcnow()
    channels = channels or Channels.from_settings(settings)
    done = Cycle()
    with writing(db) as session:
        release_abandoned(session, now=now, gone=_holder_gone)
        if channels.mail is None:
            done.skipped += skip_channel(session, "email", "e-mail is not set up (AIO_SMTP_URL)")
        if channels.webhook is None:
            done.skipped += skip_channel(session, "webhook", "no webhook is set up (AIO_WEBHOOK_URL)")
    done.escalated = escalate(settings, db, now=now)
    if channels.mail is not None:
        done.digests = queue_digests(db, now=now)
    ready = tuple(name for name, transport in (("email", channels.mail), ("webhook", channels.webhook)) if transport)
    worker = f"{HOST}:{os.getpid()}"
    while True:
        with writing(db) as session:
            claimed = claim_next(session, worker=worker, now=now, lease_until=now + LEASE, channels=ready)
            claimed_id = claimed.id if claimed is not None else None
        if claimed_id is None:
            return done
        with _FLIGHT_LOCK:
            _IN_FLIGHT.add(claimed_id)
        try:
            status, error = _deliver(settings, db, claimed_id, channels, now=now)
        except (StoreError, UserError):
            raise  # the database itself: the claim's lease brings the notification back
        except Exception as problem:  # noqa: BLE001 - a bug with one notification must not stop the others
            log.exception("notification %s", claimed_id)
            status, error = "waiting", f"unexpected error ({type(problem).__name__}: {problem}); tried again later"
            with writing(db) as session:
                row = finish(session, claimed_id, status, now=now, error=error)
                row.next_attempt_at = now + backoff(row.attempts)
        finally:
            with _FLIGHT_LOCK:
                _IN_FLIGHT.discard(claimed_id)
        if status == "sent":
            done.sent += 1
        elif status == "waiting":
            done.retried += 1
        else:
            setattr(done, status, getattr(done, status) + 1)
        if error:
            done.errors.append(error)


def escalate(settings: Settings, db: Database, *, now: datetime) -> int:
    """Take every escalation step that is due; each in its own transaction, audited. Returns how many."""
    with reading(db) as session:
        due = [(s.alert.id, s.step) for s in due_steps(session, now=now, minutes=settings.escalate_minutes)]
    taken = 0
    for alert_id, step_number in due:
        with writing(db) as session:  # looked at again under the write lock: another sender may have taken it
            step = next((s for s in due_steps(session, now=now, minutes=settings.escalate_minutes)
                         if s.alert.id == alert_id and s.step == step_number), None)
            if step is None or not take_step(session, step, now=now):
                continue
            audit(session, NOTIFY, "alert.escalate", str(alert_id),
                  f"step {step.step} to " + ", ".join(r.username for r in step.recipients))
            taken += 1
    return taken


def digest_period(frequency: str, at: str, now: datetime) -> tuple[datetime, datetime] | None:
    """The period the latest digest reports, as stored (naive UTC) times: it ends at the last digest time (server
    time; weekly: on a Monday) that has passed, if that was within DIGEST_GRACE; None when no digest is due."""
    if frequency not in ("daily", "weekly"):
        return None
    hour, minute = (int(part) for part in at.split(":"))
    local = now.replace(tzinfo=UTC).astimezone()
    moment = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    length = timedelta(days=7 if frequency == "weekly" else 1)
    if frequency == "weekly":
        moment -= timedelta(days=moment.weekday())
    if moment > local:
        moment -= length
    end = moment.astimezone(UTC).replace(tzinfo=None)
    return (end - length, end) if now - end <= DIGEST_GRACE else None


def queue_digests(db: Database, *, now: datetime) -> int:
    """Queue the digest that is due for every teacher with an address and groups (once each). Returns how many."""
    with writing(db) as session:
        period = digest_period(get_setting(session, "digest_frequency"), get_setting(session, "digest_time"), now)
        if period is None:
            return 0
        queued = [queue_digest(session, teacher, start=period[0], end=period[1], now=now)
                  for teacher, _ in digest_readers(session)]
        return sum(row is not None for row in queued)


@dataclass(frozen=True)
class _Outgoing:
    """A claimed notification, composed: what to send (or why not), read in one transaction."""

    row: Notification
    mail: Email | None = None
    payload: dict[str, object] | None = None
    skip: str | None = None  # nothing to send, and why
    fail: str | None = None  # cannot be sent, and why


def _compose(settings: Settings, db: Database, notification_id: int) -> _Outgoing:
    with reading(db) as session:
        row = session.get(Notification, notification_id)
        link = dashboard_link(settings.dashboard_url)
        if row.kind == "digest":
            groups = groups_of(session, row.username or "")
            if not groups:
                return _Outgoing(row, skip=f"{row.username} is no longer a teacher of any group")
            digests = group_digests(session, groups, start=row.period_start, end=row.period_end)
            frequency = "weekly" if row.period_end - row.period_start > timedelta(days=1) else "daily"
            subject, body = digest_email(digests, frequency=frequency, start=row.period_start, end=row.period_end,
                                         link=link, lang=settings.ui_lang)
            return _Outgoing(row, mail=Email(row.recipient, subject, body, row.key))
        with_text = get_setting(session, f"notify_text_{row.channel}") == "yes"
        facts = alert_facts(session, row.alert_id, with_text=with_text) if row.alert_id is not None else None
    if facts is None:
        return _Outgoing(row, skip="its alert was erased")
    if facts.status != "open":
        return _Outgoing(row, skip=f"the alert was {facts.status} before this was sent")
    if row.channel == "email" and not row.recipient:
        return _Outgoing(row, fail=row.reason or "nobody to notify")
    notice = Notice(facts=facts, key=row.key, step=row.step, reason=row.reason, link=link, lang=settings.ui_lang)
    if row.channel == "webhook":
        return _Outgoing(row, payload=notice.payload())
    subject, body = notice.email(minutes=settings.escalate_minutes * row.step)
    return _Outgoing(row, mail=Email(row.recipient, subject, body, row.key))


def _deliver(settings: Settings, db: Database, notification_id: int, channels: Channels, *, now: datetime
             ) -> tuple[str, str | None]:
    """Send one claimed notification and record how it went. Returns (its status, the error if any)."""
    out = _compose(settings, db, notification_id)
    row, error, permanent = out.row, out.fail, out.fail is not None
    if out.skip is None and out.fail is None:
        try:
            if out.mail is not None:
                channels.mail.send(out.mail)
            else:
                channels.webhook.post(out.payload, row.key)
        except DeliveryError as problem:
            error, permanent = str(problem), problem.permanent
    if out.skip is not None:
        status = "skipped"
    elif error is None:
        status = "sent"
    elif permanent or now - row.created_at >= GIVE_UP_AFTER:
        status = "failed"
    else:
        status = "waiting"
    with writing(db) as session:
        finish(session, row.id, status, now=now, error=error or out.skip,
               retry_at=now + backoff(row.attempts) if status == "waiting" else None)
        _record(session, row, status, error or out.skip, now=now)
    return status, error if status != "sent" else None


def _record(session: Session, row: Notification, status: str, why: str | None, *, now: datetime) -> None:
    """The audit event and, for an alert, the history note of one notification's outcome."""
    to = f"{row.username} <{row.recipient}>" if row.recipient else "the webhook" if row.channel == "webhook" else \
        "nobody"
    how = "by e-mail" if row.channel == "email" else "by webhook post"
    if row.kind == "digest":
        audit(session, NOTIFY, f"notify.digest_{status}", row.username, f"{row.recipient}; {why or 'sent'}")
        return
    action = {"sent": "alert.notify", "waiting": "alert.notify_retry", "failed": "alert.notify_failed",
              "skipped": "alert.notify_skipped"}[status]
    said = {"sent": f"notified {to} {how} (step {row.step})",
            "waiting": f"could not notify {to} {how} (step {row.step}) yet: {why}; tried again later",
            "failed": f"could not notify {to} {how} (step {row.step}): {why}",
            "skipped": f"did not notify {to} {how} (step {row.step}): {why}"}[status]
    audit(session, NOTIFY, action, str(row.alert_id), said)
    if status in ("sent", "failed"):
        alert = session.get(Alert, row.alert_id)
        if alert is not None:
            alert.events.append(AlertEvent(from_status=alert.status, to_status=alert.status, by=NOTIFY, at=now,
                                           note=said))


_SENDERS: dict[str, tuple[threading.Thread, threading.Event]] = {}
_LOCK = threading.Lock()


def run_sender(settings: Settings, db: Database, *, stop: threading.Event,
               report: Callable[[Cycle], None] | None = None) -> None:
    """Cycle until `stop` is set: one cycle, then POLL seconds (or less, when stopped)."""
    channels = Channels.from_settings(settings)
    while not stop.is_set():
        try:
            done = run_cycle(settings, db, channels=channels)
            if report is not None and (done.sent or done.retried or done.failed or done.escalated):
                report(done)
        except (StoreError, UserError) as problem:  # the database is away for a moment: the next cycle tries again
            log.warning("notifications: %s", problem)
        stop.wait(POLL)


def start_sender(settings: Settings, db: Database) -> bool:
    """Make sure this process sends this database's notifications (a thread); False if one already does or no
    channel is set up (then nothing could be sent, and the Admin page says so)."""
    if not Channels.from_settings(settings).any:
        return False
    key = db.url.render_as_string(hide_password=False)
    with _LOCK:
        if key in _SENDERS and _SENDERS[key][0].is_alive():
            return False
        stop = threading.Event()
        thread = threading.Thread(target=_guarded, args=(settings, db, stop), name="aio-notify", daemon=True)
        _SENDERS[key] = (thread, stop)
        thread.start()
        return True


def stop_sender(db: Database) -> None:
    """Stop this process's sender thread for this database, after the notification in hand."""
    with _LOCK:
        found = _SENDERS.pop(db.url.render_as_string(hide_password=False), None)
    if found is not None:
        found[1].set()
        found[0].join()


def _guarded(settings: Settings, db: Database, stop: threading.Event) -> None:
    try:
        run_sender(settings, db, stop=stop)
    except Exception:  # noqa: BLE001 - a thread's error would otherwise vanish; the next page view starts another
        log.exception("the notification sender stopped")
