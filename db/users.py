"""Accounts for signing in to the dashboard: local accounts with argon2id password hashes (argon2-cffi) and throttled
sign-in, or a school identity provider's verified address (OIDC, `sign_in_oidc`); sessions that expire; and the
admin-set settings (what teachers may read, how long messages are kept).

Only a hash of a session token is stored, so a copy of the database cannot be used to sign in. Every sign-in attempt
and every change here is written to the audit log in the same transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.access import ROLES, Scope, scope_for
from db.errors import StoreError
from db.models import AuthSession, Setting, User, UserGroup, utcnow
from db.privacy import audit

HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
MIN_PASSWORD = 10
LOCK_AFTER = 5  # failed attempts in a row ...
LOCK_FOR = timedelta(minutes=5)  # ... lock the account this long
DEFAULT_SESSION = timedelta(hours=8)
SETTINGS = {"teachers_read_messages": "no", "retention_days": "0"}  # defaults; 0 = keep messages until erased


@dataclass(frozen=True)
class Viewer:
    """The signed-in user as the pages and queries see them."""

    username: str
    display_name: str
    role: str
    groups: frozenset[str]
    person: str | None  # a student's own handle
    scope: Scope

    @property
    def name(self) -> str:
        """How their actions are recorded (alert history, corrections, audit)."""
        return f"{self.display_name} ({self.username})"


class SignInError(StoreError):
    """A sign-in that did not succeed: one sentence saying why and what to do."""


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise StoreError(f"Unknown role {role!r}; use one of: {', '.join(ROLES)}.")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise StoreError(f"A password needs at least {MIN_PASSWORD} characters.")


def add_user(session: Session, username: str, password: str | None, *, role: str, by: str, display_name: str = "",
             groups: tuple[str, ...] = (), person: str | None = None, email: str | None = None) -> User:
    """A new account. `email`: the address a school sign-in (OIDC) presents for this user; with it the password
    may be None (the account then signs in through the school's provider only)."""
    typed, username = username.strip(), username.strip().lower()
    email = (email or "").strip().lower() or None
    if not username:
        raise StoreError("A user needs a name to sign in with.")
    _check_role(role)
    if password is not None or email is None:
        _check_password(password or "")
    if role == "student" and not person:
        raise StoreError("A student account needs the handle of their own person (--person HANDLE).")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise StoreError(f"There is already a user {username!r}; choose another name.")
    if email and session.scalar(select(User.id).where(User.email == email)) is not None:
        raise StoreError(f"Another user already signs in as {email}; one address belongs to one account.")
    user = User(username=username, display_name=display_name.strip() or typed, role=role, email=email,
                password_hash=HASHER.hash(password) if password is not None else None, person_handle=person)
    session.add(user)
    session.flush()
    session.add_all([UserGroup(user_id=user.id, group_name=g) for g in sorted(set(groups)) if g.strip()])
    audit(session, by, "user.add", username, f"role={role} groups={','.join(groups)}")
    return user


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise StoreError(f"There is no user {username!r}.")
    return user


def list_users(session: Session) -> list[tuple[User, list[str]]]:
    users = list(session.scalars(select(User).order_by(User.username)))
    groups: dict[int, list[str]] = {}
    for user_id, group in session.execute(select(UserGroup.user_id, UserGroup.group_name)):
        groups.setdefault(user_id, []).append(group)
    return [(u, sorted(groups.get(u.id, []))) for u in users]


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id)))


def set_disabled(session: Session, username: str, disabled: bool, *, by: str) -> None:
    user = _user(session, username)
    user.disabled = disabled
    if disabled:
        session.execute(delete(AuthSession).where(AuthSession.user_id == user.id))
    audit(session, by, "user.disable" if disabled else "user.enable", user.username)


def set_role(session: Session, username: str, role: str, *, by: str) -> None:
    _check_role(role)
    user = _user(session, username)
    user.role = role
    audit(session, by, "user.set_role", user.username, role)


def set_groups(session: Session, username: str, groups: tuple[str, ...], *, by: str) -> None:
    user = _user(session, username)
    session.execute(delete(UserGroup).where(UserGroup.user_id == user.id))
    session.add_all([UserGroup(user_id=user.id, group_name=g) for g in sorted(set(groups)) if g.strip()])
    audit(session, by, "user.set_groups", user.username, ",".join(groups))


def set_password(session: Session, username: str, password: str, *, by: str) -> None:
    _check_password(password)
    user = _user(session, username)
    user.password_hash = HASHER.hash(password)
    session.execute(delete(AuthSession).where(AuthSession.user_id == user.id))
    audit(session, by, "user.set_password", user.username)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(session: Session, username: str, password: str, *, lifetime: timedelta = DEFAULT_SESSION,
            now: datetime | None = None) -> tuple[str | None, str | None]:
    """(a new session token, None) for these credentials, or (None, the reason in one sentence). Failed attempts
    are counted and lock the account for a while; nothing is raised, so the caller's transaction commits them."""
    try:
        return _sign_in(session, username, password, lifetime=lifetime, now=now), None
    except SignInError as error:
        return None, str(error)


def _sign_in(session: Session, username: str, password: str, *, lifetime: timedelta, now: datetime | None) -> str:
    now = now or utcnow()
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None or user.password_hash is None:
        audit(session, username.strip().lower() or "?", "signin.failed", detail="unknown user")
        raise SignInError("That user name and password do not match; check both and try again.")
    if user.disabled:
        audit(session, user.username, "signin.failed", detail="disabled")
        raise SignInError("This account is disabled; ask an administrator to enable it.")
    if user.locked_until is not None and user.locked_until > now:
        minutes = max(1, round((user.locked_until - now).total_seconds() / 60))
        audit(session, user.username, "signin.failed", detail="locked")
        raise SignInError(f"Too many wrong passwords: this account is locked for {minutes} more minute(s).")
    try:
        HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins = (user.failed_logins or 0) + 1
        if user.failed_logins >= LOCK_AFTER:
            user.locked_until, user.failed_logins = now + LOCK_FOR, 0
        audit(session, user.username, "signin.failed", detail="wrong password")
        raise SignInError("That user name and password do not match; check both and try again.") from None
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = HASHER.hash(password)
    user.failed_logins, user.locked_until = 0, None
    token = secrets.token_urlsafe(32)
    session.add(AuthSession(token_hash=_token_hash(token), user_id=user.id, created_at=now, last_seen_at=now,
                            expires_at=now + lifetime))
    audit(session, user.username, "signin")
    return token


def sign_in_oidc(session: Session, email: str | None, *, issuer: str = "", lifetime: timedelta = DEFAULT_SESSION,
                 now: datetime | None = None) -> tuple[str | None, str | None]:
    """A session token for the account whose address the school's identity provider vouched for (OIDC, a verified
    `email` claim), or (None, the reason in one sentence). The provider proves who it is; the account decides what
    they may see, so an address without an account gets nothing."""
    now = now or utcnow()
    address = (email or "").strip().lower()
    user = session.scalar(select(User).where(User.email == address)) if address else None
    if user is None:
        audit(session, address or "?", "signin.failed", detail=f"oidc: no account {issuer}".strip())
        return None, (f"You signed in as {address or 'an account without an e-mail address'}, but no account here "
                      "uses that address; ask an administrator to add it.")
    if user.disabled:
        audit(session, user.username, "signin.failed", detail="oidc: disabled")
        return None, "This account is disabled; ask an administrator to enable it."
    token = secrets.token_urlsafe(32)
    session.add(AuthSession(token_hash=_token_hash(token), user_id=user.id, created_at=now, last_seen_at=now,
                            expires_at=now + lifetime))
    user.last_login_at = now
    audit(session, user.username, "signin", detail=f"oidc {issuer}".strip())
    return token, None


def viewer_for(session: Session, token: str | None, *, now: datetime | None = None) -> Viewer:
    """The signed-in user behind a session token, or SignInError (expired, signed out, disabled)."""
    now = now or utcnow()
    found = session.get(AuthSession, _token_hash(token)) if token else None
    if found is None:
        raise SignInError("You are signed out; sign in to continue.")
    user = session.get(User, found.user_id)
    if found.expires_at <= now:
        session.delete(found)
        raise SignInError("Your session has expired; sign in again.")
    if user is None or user.disabled:
        raise SignInError("This account is disabled; ask an administrator to enable it.")
    found.last_seen_at = now
    return viewer_of(session, user)


def viewer_of(session: Session, user: User) -> Viewer:
    groups = frozenset(session.scalars(select(UserGroup.group_name).where(UserGroup.user_id == user.id)))
    scope = scope_for(user.role, groups, person=user.person_handle,
                      teachers_read_messages=get_setting(session, "teachers_read_messages") == "yes")
    return Viewer(user.username, user.display_name, user.role, groups, user.person_handle, scope)


def sign_out(session: Session, token: str) -> None:
    session.execute(delete(AuthSession).where(AuthSession.token_hash == _token_hash(token)))


def get_setting(session: Session, key: str) -> str:
    found = session.get(Setting, key)
    return found.value if found is not None else SETTINGS[key]


def set_setting(session: Session, key: str, value: str, *, by: str) -> None:
    if key not in SETTINGS:
        raise StoreError(f"Unknown setting {key!r}; the settings are: {', '.join(SETTINGS)}.")
    found = session.get(Setting, key)
    if found is None:
        session.add(Setting(key=key, value=value, updated_by=by))
    else:
        found.value, found.updated_by, found.updated_at = value, by, utcnow()
    audit(session, by, "setting.change", key, value)
