"""Accounts, for the dashboard and the CLI alike: adding and changing them, admins' settings, signing in and out.
Every change is logged by the store (db.users). Signing in: the password is checked between two short write
transactions, never inside one, so guesses cannot hold the database's write lock (db.signin explains the rest: the
throttle per client and per name, and why every early failure reads and costs the same)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine as Database

from db import users
from db.models import utcnow
from db.privacy import audit
from db.session import writing
from db.signin import begin_sign_in, check_password, finish_sign_in, new_hash
from db.users import DEFAULT_SESSION


def sign_in(db: Database, username: str, password: str, *, client: str, lifetime: timedelta = DEFAULT_SESSION,
            now: datetime | None = None) -> tuple[str | None, str | None]:
    """(a new session token, None) for these credentials, or (None, the reason in one sentence). `client`: where
    the attempt comes from (an address), which the throttle counts apart from the name typed."""
    now = now or utcnow()
    with writing(db) as session:
        attempt = begin_sign_in(session, username, client, now=now)
    if isinstance(attempt, str):
        return None, attempt
    verified = check_password(attempt.password_hash, password)  # a tenth of a second, with no lock held
    rehashed = new_hash(attempt.password_hash, password) if verified else None
    with writing(db) as session:
        return finish_sign_in(session, attempt, verified, lifetime=lifetime, rehashed=rehashed)


# ---- accounts and settings: each change in one transaction, audited by the store (db.users) ----------------------

def add_account(db: Database, username: str, password: str | None, *, role: str, by: str, display_name: str = "",
                groups: tuple[str, ...] = (), person: str | None = None, email: str | None = None) -> str:
    """A new account (logged as user.add); returns its user name as stored."""
    with writing(db) as session:
        return users.add_user(session, username, password, role=role, by=by, display_name=display_name,
                              groups=groups, person=person, email=email).username


def add_first_admin(db: Database, username: str, password: str, *, display_name: str = "") -> bool:
    """The first administrator of an empty store; False when someone else was quicker (an account exists)."""
    with writing(db) as session:
        if users.count_users(session):
            return False
        users.add_user(session, username, password, role="admin", by="first start", display_name=display_name)
        return True


def change_account(db: Database, username: str, *, by: str, role: str | None = None,
                   groups: tuple[str, ...] | None = None, disabled: bool | None = None, email: str | None = None,
                   clear_email: bool = False, password: str | None = None) -> None:
    """Change what is given of one account, all in one transaction (each change logged as user.*)."""
    with writing(db) as session:
        if role is not None:
            users.set_role(session, username, role, by=by)
        if groups is not None:
            users.set_groups(session, username, groups, by=by)
        if disabled is not None:
            users.set_disabled(session, username, disabled, by=by)
        if email is not None or clear_email:
            users.set_email(session, username, email, by=by)
        if password is not None:
            users.set_password(session, username, password, by=by)


def save_setting(db: Database, key: str, value: str, *, by: str) -> None:
    """An admin's setting (logged as setting.change when it changes)."""
    with writing(db) as session:
        users.set_setting(session, key, value, by=by)


def viewer_of_session(db: Database, token: str | None) -> users.Viewer:
    """The signed-in user behind a session token (its last use is recorded), or SignInError saying why not."""
    with writing(db) as session:
        return users.viewer_for(session, token)


def sign_out(db: Database, token: str, username: str) -> None:
    """End one session (logged as signout)."""
    with writing(db) as session:
        users.sign_out(session, token)
        audit(session, username, "signout")


def sign_in_school(db: Database, email: str | None, *, verified: bool, issuer: str, subject: str,
                   lifetime: timedelta = DEFAULT_SESSION) -> tuple[str | None, str | None]:
    """A session for the account the school's identity provider vouched for, or (None, why not); a refusal is
    logged, so this commits either way."""
    with writing(db) as session:
        return users.sign_in_oidc(session, email, verified=verified, issuer=issuer, subject=subject,
                                  lifetime=lifetime)
