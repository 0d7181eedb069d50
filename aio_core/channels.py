"""Where notifications leave the machine: e-mail over SMTP (`smtplib`) and a signed JSON POST to a webhook, chosen by
the URL's scheme from one registry (`smtp`, `smtps`, `http`, `https`).

Delivery is at least once (the sender retries until it has marked a notification sent), so every send carries the
notification's idempotency key where a receiver can drop a repeat: the e-mail's Message-ID (mail servers and inboxes
treat two messages with one Message-ID as one) and the webhook's `Idempotency-Key` header and `id` field.

A password travels only inside TLS: `smtp://` upgrades with STARTTLS and refuses a server that does not offer it,
unless the server is this machine (a local relay); `smtps://` is TLS from the first byte. A webhook is `https://`,
or plain `http://` to this machine only. A failure is a `DeliveryError`: one sentence, and whether trying again can
help (`permanent`: the server refused this recipient or this request for good).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Protocol
from urllib.parse import unquote, urlsplit

TIMEOUT = 30.0  # seconds for one connection: a stuck server must not hold the sender (its lease is minutes)
SIGNATURE_HEADER = "X-AIO-Signature"  # "sha256=" + HMAC-SHA256(secret, timestamp + "." + body), hex
TIMESTAMP_HEADER = "X-AIO-Timestamp"  # seconds since 1970, signed with the body: a replayed old post can be refused


class DeliveryError(Exception):
    """A notification that did not go out: one sentence; `permanent` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def is_loopback(host: str | None) -> bool:
    """Whether a destination host is this machine (a name is not looked up: only `localhost` counts)."""
    if not host:
        return False
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Email:
    """One e-mail to one address. `key` becomes its Message-ID."""

    to: str
    subject: str
    body: str
    key: str


class Mailer(Protocol):
    def send(self, mail: Email) -> None: ...

    def describe(self) -> str: ...


class Poster(Protocol):
    def post(self, payload: dict[str, object], key: str) -> None: ...

    def describe(self) -> str: ...


def message_id(key: str, sender: str) -> str:
    """The Message-ID for an idempotency key: the same key always gives the same id, at the sender's domain."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return f"<aio.{key}@{domain}>"


@dataclass(frozen=True)
class SmtpMailer:
    """E-mail through one SMTP server; one connection per message (a handful an hour, each must stand alone)."""

    host: str
    port: int
    implicit_tls: bool
    username: str
    password: str
    sender: str
    starttls: bool  # required: every server but this machine's own (a local relay)

    def describe(self) -> str:
        how = "TLS" if self.implicit_tls else "STARTTLS" if self.starttls else "plain, this machine"
        return f"{self.host}:{self.port} ({how}), from {self.sender}"

    def _connect(self) -> smtplib.SMTP:
        where = f"{self.host}:{self.port}"
        try:
            if self.implicit_tls:
                return smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT, context=ssl.create_default_context())
            server = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT)
        except ssl.SSLError as error:
            raise DeliveryError(f"The TLS connection to the mail server {where} failed ({error.reason}); check "
                                "AIO_SMTP_URL (smtps:// for port 465, smtp:// for 587).") from error
        except OSError as error:
            raise DeliveryError(f"Cannot reach the mail server {where} ({error.strerror or error}); check "
                                "AIO_SMTP_URL and that the server is up.") from error
        try:
            server.ehlo()
            if self.starttls and server.has_extn("starttls"):
                server.starttls(context=ssl.create_default_context())
                server.ehlo()
            elif self.starttls:
                raise DeliveryError(f"The mail server {where} does not offer STARTTLS, so the password and the "
                                    "notifications would cross the network unencrypted; use its TLS port "
                                    "(smtps://...:465) or a server that offers STARTTLS.")
            if self.username:
                server.login(self.username, self.password)
        except BaseException:
            server.close()
            raise
        return server

    def send(self, mail: Email) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, mail.to, mail.subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = message_id(mail.key, self.sender)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to the monitor
        message.set_content(mail.body)
        try:
            server = self._connect()
            try:
                server.send_message(message)
            finally:
                try:
                    server.quit()
                except (smtplib.SMTPException, OSError):
                    server.close()  # the message was accepted; a lost goodbye changes nothing
        except smtplib.SMTPRecipientsRefused as error:
            code, reason = next(iter(error.recipients.values()))
            raise DeliveryError(f"The mail server refused the address {mail.to} ({code} {_said(reason)}).",
                                permanent=code >= 500) from error
        except smtplib.SMTPAuthenticationError as error:
            raise DeliveryError(f"The mail server {self.host} refused the user name or password in AIO_SMTP_URL "
                                f"({error.smtp_code} {_said(error.smtp_error)}).") from error
        except smtplib.SMTPResponseException as error:
            raise DeliveryError(f"The mail server {self.host} answered {error.smtp_code} "
                                f"{_said(error.smtp_error)}.", permanent=error.smtp_code >= 500) from error
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"Sending through the mail server {self.host}:{self.port} failed "
                                f"({type(error).__name__}: {error}); it is tried again.") from error


def _said(reason: bytes | str) -> str:
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    return " ".join(text.split())[:200]


@dataclass(frozen=True)
class WebhookPoster:
    """A JSON POST to one address, signed with HMAC-SHA256 when a secret is set."""

    url: str
    secret: str

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}{parts.path[:40]}" + (", signed" if self.secret else "")

    def post(self, payload: dict[str, object], key: str) -> None:
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key,
                   "User-Agent": "aio-monitor-notify", TIMESTAMP_HEADER: stamp}
        if self.secret:
            headers[SIGNATURE_HEADER] = "sha256=" + sign(self.secret, stamp, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        where = self.describe()
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                answer.read(1024)
        except urllib.error.HTTPError as error:
            # 4xx: this request will never be taken (a wrong address or secret); 408, 429 and 5xx: try again.
            permanent = 400 <= error.code < 500 and error.code not in (408, 425, 429)
            raise DeliveryError(f"The webhook {where} answered {error.code} {_said(error.reason or '')}.",
                                permanent=permanent) from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise DeliveryError(f"Cannot reach the webhook {where} ({reason}); check AIO_WEBHOOK_URL and that "
                                "the receiver is up.") from error


def sign(secret: str, stamp: str, body: bytes) -> str:
    """The webhook signature a receiver recomputes: HMAC-SHA256 over `timestamp.body`, hex."""
    return hmac.new(secret.encode("utf-8"), stamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _smtp(url: str, sender: str) -> SmtpMailer:
    parts = urlsplit(url)
    implicit = parts.scheme == "smtps"
    return SmtpMailer(host=parts.hostname or "", port=parts.port or (465 if implicit else 587),
                      implicit_tls=implicit, username=unquote(parts.username or ""),
                      password=unquote(parts.password or ""), sender=sender,
                      starttls=not implicit and not is_loopback(parts.hostname))


# Transports by URL scheme: adding one (say, an SMS gateway) is one entry here, not a branch in the sender.
MAILERS: dict[str, Callable[[str, str], Mailer]] = {"smtp": _smtp, "smtps": _smtp}
POSTERS: dict[str, Callable[[str, str], Poster]] = {"https": WebhookPoster, "http": WebhookPoster}


def mailer(url: str, sender: str) -> Mailer | None:
    """The e-mail transport for AIO_SMTP_URL, or None when e-mail is not set up."""
    return MAILERS[urlsplit(url).scheme](url, sender) if url else None


def poster(url: str, secret: str) -> Poster | None:
    """The webhook transport for AIO_WEBHOOK_URL, or None when no webhook is set up."""
    return POSTERS[urlsplit(url).scheme](url, secret) if url else None

