"""Signing in with a password, in two short write transactions around a check made with no lock held.

`begin_sign_in` refuses a client or a typed name that must still wait, and otherwise counts the attempt as a failure
before anything is checked, so a flood of parallel guesses is counted in order; the caller then checks the password
(argon2, a tenth of a second) outside any transaction, and `finish_sign_in` records how it went. Every failure
before the password is known to be right reads the same and costs the same: an unknown name, an account without a
password (school sign-in only) and a disabled one are checked against a stand-in hash.

Throttling never locks an account: each client (its address) may fail a few times, then waits 1, 2, 4 ... seconds
(at most 15 minutes) after each further failure; each typed name may fail ten times from anywhere, then waits the
same way but at most 30 seconds, so guesses from many addresses slow a name down and its owner waits half a minute
at most. Tries refused while waiting are not counted, so waiting is never renewed by them.
"""

from __future__ import annotations

import functools
import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import AuthSession, SignInThrottle, User
from db.privacy import audit

HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
WRONG = "That user name and password do not match; check both and try again."
MAX_NAME, MAX_PASSWORD = 200, 1024  # longer is no account's name or password: refused after the same work
CLIENT_FREE, CLIENT_LONGEST = 5, timedelta(minutes=15)
NAME_FREE, NAME_LONGEST = 10, timedelta(seconds=30)
FORGET_AFTER = timedelta(minutes=15)  # a key with no failure for this long starts again from nothing


@functools.cache
def _stand_in() -> str:
    """A hash of nothing anyone knows, checked when there is no real one, so that costs the same."""
    return HASHER.hash(secrets.token_urlsafe(24))


@dataclass(frozen=True)
class Attempt:
    """A sign-in let through the throttle, counted as a failure until `finish_sign_in` says otherwise."""

    name: str  # the typed name, normalised
    user_id: int | None
    password_hash: str | None  # None: no such account, or one without a password
    client: str
    at: datetime


def name_key(name: str) -> str:
    """The throttle's key for a typed name: hashed, because a name field sometimes holds a password."""
    return "name:" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def client_key(client: str) -> str:
    return "client:" + client[:90]


def _wait(session: Session, key: str, now: datetime) -> float:
    found = session.get(SignInThrottle, key)
    if found is None or found.blocked_until is None or found.blocked_until <= now:
        return 0.0
    return (found.blocked_until - now).total_seconds()


def _count_failure(session: Session, key: str, now: datetime, free: int, longest: timedelta) -> None:
    found = session.get(SignInThrottle, key)
    if found is None:
        found = SignInThrottle(key=key, failures=0, last_failure_at=now)
        session.add(found)
    elif now - found.last_failure_at > FORGET_AFTER:
        found.failures, found.blocked_until = 0, None
    found.failures += 1
    found.last_failure_at = now
    if found.failures >= free:
        found.blocked_until = now + min(longest, timedelta(seconds=2 ** (found.failures - free)))


def begin_sign_in(session: Session, username: str, client: str, *, now: datetime) -> Attempt | str:
    """The attempt to check, counted as a failure already; or, while this client or this name must wait, the
    sentence that says how long (the same for every name, so it tells nothing about which names exist)."""
    name = username.strip().lower()[:MAX_NAME + 1]
    # "local" is this machine, or a proxy on it that does not say whom it forwards: many people may share it, so it
    # never waits longer than a name does.
    longest = NAME_LONGEST if client == "local" else CLIENT_LONGEST
    keys = ((client_key(client), CLIENT_FREE, longest), (name_key(name), NAME_FREE, NAME_LONGEST))
    wait = max(_wait(session, key, now) for key, _, _ in keys)
    if wait > 0:
        seconds = math.ceil(wait)
        return f"Too many tries: wait {seconds} second{'s' if seconds != 1 else ''}, then try again."
    for key, free, longest in keys:
        _count_failure(session, key, now, free, longest)
    user = session.scalar(select(User).where(User.username == name)) if len(name) <= MAX_NAME else None
    return Attempt(name=name, user_id=user.id if user else None, password_hash=user.password_hash if user else None,
                   client=client, at=now)


def check_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored`; as slow for a missing hash or an overlong password as for a real one.
    Call it with no transaction open."""
    try:
        HASHER.verify(stored or _stand_in(), password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return False
    return stored is not None and len(password) <= MAX_PASSWORD


def new_hash(stored: str, password: str) -> str | None:
    """A fresh hash when the stored one has older parameters (made outside the transaction, like the check)."""
    return HASHER.hash(password) if HASHER.check_needs_rehash(stored) else None


def finish_sign_in(session: Session, attempt: Attempt, verified: bool, *, lifetime: timedelta,
                   rehashed: str | None = None) -> tuple[str | None, str | None]:
    """(a new session token, None), or (None, the sentence to show). Only a right password learns more than
    `WRONG`: that the account is disabled."""
    user = session.get(User, attempt.user_id) if attempt.user_id is not None else None
    if user is None or not verified or user.password_hash != attempt.password_hash:
        reason = "unknown user" if user is None else "wrong password" if not user.disabled \
            else "wrong password (disabled account)"
        audit(session, user.username if user else "unknown user", "signin.failed",
              detail=f"{reason} from {attempt.client}")
        return None, WRONG
    if user.disabled:
        audit(session, user.username, "signin.failed", detail=f"disabled, from {attempt.client}")
        return None, "This account is disabled; ask an administrator to enable it."
    # The owner proved it: their name's count starts again; this client's try is no longer a failure.
    session.execute(delete(SignInThrottle).where(SignInThrottle.key == name_key(attempt.name)))
    counted = session.get(SignInThrottle, client_key(attempt.client))
    if counted is not None:
        counted.failures = max(0, counted.failures - 1)
        if counted.failures < CLIENT_FREE:
            counted.blocked_until = None
    if rehashed is not None:
        user.password_hash = rehashed
    token = new_session(session, user, lifetime=lifetime, now=attempt.at)
    audit(session, user.username, "signin", detail=f"from {attempt.client}")
    return token, None


def new_session(session: Session, user: User, *, lifetime: timedelta, now: datetime) -> str:
    """A signed-in session for `user`: the token for the browser, only its hash in the store."""
    token = secrets.token_urlsafe(32)
    session.add(AuthSession(token_hash=token_hash(token), user_id=user.id, created_at=now, last_seen_at=now,
                            expires_at=now + lifetime))
    user.last_login_at = now
    return token


def token_hash(token: str) -> str:
    """What is stored of a session token: its SHA-256, so a copy of the database cannot be used to sign in."""
    return hashlib.sha256(token.encode()).hexdigest()
