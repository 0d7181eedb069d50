"""The one settings object: every knob of the product, read from `AIO_*` environment variables.

Tests build it explicitly (`Settings(model="tiny-random", db_url="sqlite://")`); the CLI and the dashboard build it
once with `Settings.from_env()` and pass it down. Nothing else in the code reads `os.environ` for these values.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from aio_core.channels import is_loopback
from aio_core.errors import UserError
from db.rules import AlertRule

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DB_URL = f"sqlite:///{DATA_DIR / 'aio.db'}"
DEFAULT_MODEL = "Qwen/Qwen1.5-0.5B-Chat"
# The longest text the product takes in: one chat message, or one cell of an uploaded CSV. A 100,000-character
# message is a normal one here; much more only costs memory (a 10 MB cell took the server from 0.75 to 2.7 GB).
MAX_TEXT_CHARS = 100_000


class SettingsError(UserError, ValueError):
    """A setting has a value the product cannot use; the message names the variable and the fix."""


REPLY_METHODS = ("library", "guarded", "free")  # how chat replies are made (aio_core/compose.py)


_RULE = AlertRule()  # the rule's defaults, defined once
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class Settings:
    """Every configurable value, with its default. The field name is the variable name without `AIO_`."""

    model: str = DEFAULT_MODEL  # hub id | folder | .gguf | tiny-random | openai+http://HOST:PORT/v1 (a model server)
    api_key: str = ""  # the model server's API key (AIO_MODEL=openai+...)
    served_model: str = ""  # the model name on the server; "" = the first one it serves
    tokenizer: str = ""  # the served model's tokenizer (folder or cached hub id); "" = the served model's name
    server_logprobs: int = 20  # top log-probabilities asked of the server (vLLM's --max-logprobs, 20 by default)
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    threads: int = 0  # 0 = all cores this process may use
    db_url: str = DEFAULT_DB_URL
    data_dir: str = str(DATA_DIR)  # heads/, the study's cache/, and jobs/ (uploads of running screenings)
    prompt_version: str = ""  # "" = the default prompt version of aio_core.prompts
    head: str = "auto"  # auto = use the label head fitted on these weights and this prompt, if there is one | off
    autofit: str = "on"  # on = the dashboard fits missing heads (label, risk, situation) from the shipped sets in
    # the background once the model is loaded | off
    risk: str = "auto"  # auto = the risk head fitted on these weights (if any) + the phrase floor | phrases | off
    risk_phrases: str = ""  # a JSON phrase list in the shape of aio_core/data/risk_phrases.json; "" = built in
    helpline: str = ""  # help-line sentence in the chat's safe message; "" = the built-in generic one
    safe_messages: str = ""  # a JSON file in the shape of aio_core/data/safe_messages.json; "" = built in
    reply: str = "library"  # library = reviewed words chosen by the model's reading | guarded (+ one model sentence
    # that passed the guard) | free (unguarded generation, to measure against); see README, Replies
    reply_library: str = ""  # a JSON reply library in the shape of aio_core/data/reply_library.json; "" = built in
    uncertain_below: float = 0.70  # confidence under this marks a label "uncertain" (see README, Accuracy)
    max_input_tokens: int = 256  # token budget of one text for the classifier; the full text is still stored
    history_tokens: int = 1024  # token budget of the chat history sent with each reply
    batch_size: int = 16  # texts per forward pass on the bulk path
    upload_mb: int = 50  # largest CSV the dashboard accepts
    ui_lang: str = "en"  # en | zh
    auth: str = "local"  # local = sign in with an account (users in the database) | off = a single-user laptop only
    session_hours: int = 8  # a dashboard sign-in expires after this many hours
    # The alert rule (db/rules.py, which holds its defaults): rule 1, at least alert_last_k of the last alert_last_n
    # messages are negative; rule 2, over the last alert_days days at least alert_share of at least
    # alert_min_messages messages are.
    alert_last_n: int = _RULE.last_n
    alert_last_k: int = _RULE.last_k
    alert_days: int = _RULE.days
    alert_share: float = _RULE.share
    alert_min_messages: int = _RULE.min_messages
    # Notifications (aio_core/workflows/notify.py). Kept out of repr: the URL carries the mail password.
    smtp_url: str = dataclasses.field(default="", repr=False)  # smtp://u:p@host:587 (STARTTLS) | smtps:// | "" = off
    smtp_from: str = ""  # the From address of notifications, e.g. "Wellbeing monitor <monitor@school.example>"
    webhook_url: str = ""  # a JSON POST per notification (https://, or http:// to this machine); "" = off
    webhook_secret: str = dataclasses.field(default="", repr=False)  # signs each post (HMAC-SHA256); "" = unsigned
    escalate_minutes: int = 15  # an urgent alert nobody acknowledged goes to the next contact after this long
    dashboard_url: str = "http://localhost:8501"  # the address people open the dashboard at (links in notices)

    def __post_init__(self) -> None:
        choices = {"device": DEVICES, "dtype": DTYPES,
                   "ui_lang": ("en", "zh"), "head": ("auto", "off"), "autofit": ("on", "off"),
                   "risk": ("auto", "phrases", "off"), "auth": ("local", "off"),
                   "reply": REPLY_METHODS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SettingsError(
                    f"AIO_{name.upper()}={getattr(self, name)!r} is not valid; use one of: {', '.join(allowed)}."
                )
        if not self.model.strip():
            raise SettingsError("AIO_MODEL is empty; set it to a hub id, a model folder, a .gguf file or tiny-random.")
        positive = ("max_input_tokens", "history_tokens", "batch_size", "upload_mb", "alert_last_n", "alert_last_k",
                    "alert_days", "alert_min_messages", "session_hours", "server_logprobs", "escalate_minutes")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"AIO_{name.upper()}={getattr(self, name)} must be a whole number of 1 or more.")
        if self.threads < 0:
            raise SettingsError(f"AIO_THREADS={self.threads} must be 0 (all cores) or a positive number of threads.")
        if self.alert_last_k > self.alert_last_n:
            raise SettingsError("AIO_ALERT_LAST_K must not exceed AIO_ALERT_LAST_N.")
        for name in ("uncertain_below", "alert_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SettingsError(f"AIO_{name.upper()}={getattr(self, name)} must be between 0 and 1.")
        self._check_notifications()

    def _check_notifications(self) -> None:
        if self.smtp_url:
            parts = urlsplit(self.smtp_url)
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                raise SettingsError("AIO_SMTP_URL has a port that is not a number; write it like "
                                    "smtp://user:password@mail.school.example:587.") from None
            if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
                raise SettingsError("AIO_SMTP_URL must be smtp://user:password@host:587 (STARTTLS) or "
                                    "smtps://user:password@host:465 (TLS from the start).")
            if "@" not in parseaddr(self.smtp_from)[1]:
                raise SettingsError("AIO_SMTP_FROM must be the address notifications come from, e.g. "
                                    "monitor@school.example, when AIO_SMTP_URL is set.")
        if self.webhook_url:
            parts = urlsplit(self.webhook_url)
            if not parts.hostname or parts.scheme not in ("https", "http") or (
                    parts.scheme == "http" and not is_loopback(parts.hostname)):
                raise SettingsError("AIO_WEBHOOK_URL must be an https:// address (plain http:// only to this "
                                    "machine, e.g. http://127.0.0.1:9000/hook): notifications name a student's "
                                    "group and what worried the monitor.")
        parts = urlsplit(self.dashboard_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"AIO_DASHBOARD_URL={self.dashboard_url!r} must be the address people open the "
                                "dashboard at, e.g. https://monitor.school.example.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read `AIO_<FIELD>` variables; keyword overrides (CLI flags) win when not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(f"AIO_{field.name.upper()}")
            if raw is None or raw.strip() == "":
                continue
            values[field.name] = _parse(field.name, field.type, raw.strip())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def heads_dir(self) -> Path:
        return Path(self.data_dir) / "heads"

    @property
    def cache_dir(self) -> Path:
        return Path(self.data_dir) / "cache"

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _parse(name: str, type_name: object, raw: str) -> object:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw.rstrip("%")) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise SettingsError(f"AIO_{name.upper()}={raw!r} is not a number; set it to a {kind}.") from None
    return raw
