"""Accounts for signing in to the dashboard: local accounts with argon2id password hashes (argon2-cffi; signing in
with one is db.signin, throttled), or a school identity provider's verified address (OIDC, `sign_in_oidc`); sessions
that expire; and the admin-set settings (what teachers may read, how long messages are kept, the alert rule).

Only a hash of a session token is stored, so a copy of the database cannot be used to sign in. Every sign-in attempt
and every change here is written to the audit log in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.access import ROLES, Scope, scope_for
from db.errors import StoreError
from db.models import AuthSession, Setting, User, UserGroup, utcnow
from db.privacy import audit
from db.signin import HASHER, MAX_NAME, new_session, token_hash
from db.store import check_handle

MIN_PASSWORD = 10
DEFAULT_SESSION = timedelta(hours=8)
# Defaults. retention_days 0 = keep messages until erased; alert_rule "" = the AIO_ALERT_* settings (else JSON);
# digests (off | daily | weekly, at HH:MM server time, weekly on Mondays); notices carry the message text only where
# an admin turned it on for that channel (aio_core/notices.py says why not by default).
SETTINGS = {"teachers_read_messages": "no", "retention_days": "0", "alert_rule": "", "digest_frequency": "daily",
            "digest_time": "07:00", "notify_text_email": "no", "notify_text_webhook": "no"}


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
    if not username or len(username) > MAX_NAME:
        raise StoreError(f"A user needs a name to sign in with, of at most {MAX_NAME} characters.")
    _check_role(role)
    if password is not None or email is None:
        _check_password(password or "")
    if role == "student" and not person:
        raise StoreError("A student account needs the handle of their own person (--person HANDLE).")
    if person:
        check_handle(person)
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


def set_email(session: Session, username: str, email: str | None, *, by: str) -> None:
    """The account's address: where its notifications go, and the address a school sign-in finds it by. Changing
    it does not move a school identity already bound to the account (`sign_in_oidc`)."""
    user = _user(session, username)
    address = (email or "").strip().lower() or None
    if address is not None and ("@" not in address or len(address) > 300 or any(c.isspace() for c in address)):
        raise StoreError(f"{email!r} is not an e-mail address; write it like name@school.example.")
    if address and session.scalar(select(User.id).where(User.email == address, User.id != user.id)) is not None:
        raise StoreError(f"Another user already has the address {address}; one address belongs to one account.")
    user.email = address
    audit(session, by, "user.set_email", user.username, address or "(none)")


def set_password(session: Session, username: str, password: str, *, by: str) -> None:
    _check_password(password)
    user = _user(session, username)
    user.password_hash = HASHER.hash(password)
    session.execute(delete(AuthSession).where(AuthSession.user_id == user.id))
    audit(session, by, "user.set_password", user.username)


def sign_in_oidc(session: Session, email: str | None, *, issuer: str = "", subject: str = "", verified: bool = False,
                 lifetime: timedelta = DEFAULT_SESSION, now: datetime | None = None) -> tuple[str | None, str | None]:
    """A session token for the account whose address the school's identity provider vouched for, or (None, the
    reason in one sentence). The provider proves who it is; the account decides what they may see, so an address
    without an account gets nothing. The address counts only when the provider says it verified it
    (`email_verified` true; missing means not), and the first sign-in binds the account to that provider's
    subject: another subject presenting the same address later is refused."""
    now = now or utcnow()
    address = (email or "").strip().lower()[:300]
    where = f"oidc {issuer}".strip()[:300]
    if not verified:
        audit(session, "unknown user", "signin.failed", detail=f"oidc: address not verified {issuer}".strip())
        return None, ("Your school's sign-in did not confirm that this e-mail address is yours (it is not "
                      "verified there); ask the school's IT to verify it, then sign in again.")
    user = session.scalar(select(User).where(User.email == address)) if address else None
    if user is None:
        audit(session, address or "?", "signin.failed", detail=f"oidc: no account {issuer}".strip())
        return None, (f"You signed in as {address or 'an account without an e-mail address'}, but no account here "
                      "uses that address; ask an administrator to add it.")
    if user.oidc_subject is None:
        user.oidc_issuer, user.oidc_subject = issuer, subject
        audit(session, user.username, "user.bind_school_account", user.username, where)
    elif (user.oidc_issuer, user.oidc_subject) != (issuer, subject):
        audit(session, user.username, "signin.failed", detail=f"oidc: another subject for this address {issuer}")
        return None, ("This address belongs to another school account than the one that first signed in with it; "
                      "ask an administrator to check the account.")
    if user.disabled:
        audit(session, user.username, "signin.failed", detail="oidc: disabled")
        return None, "This account is disabled; ask an administrator to enable it."
    token = new_session(session, user, lifetime=lifetime, now=now)
    audit(session, user.username, "signin", detail=where)
    return token, None


def viewer_for(session: Session, token: str | None, *, now: datetime | None = None) -> Viewer:
    """The signed-in user behind a session token, or SignInError (expired, signed out, disabled)."""
    now = now or utcnow()
    found = session.get(AuthSession, token_hash(token)) if token else None
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
    scope = scope_for(user.role, groups, person=user.person_handle, username=user.username,
                      teachers_read_messages=get_setting(session, "teachers_read_messages") == "yes")
    return Viewer(user.username, user.display_name, user.role, groups, user.person_handle, scope)


def sign_out(session: Session, token: str) -> None:
    session.execute(delete(AuthSession).where(AuthSession.token_hash == token_hash(token)))


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
