"""Signing in, for the dashboard and anything else that asks: the password is checked between two short write
transactions, never inside one, so guesses cannot hold the database's write lock (db.signin explains the rest: the
throttle per client and per name, and why every early failure reads and costs the same)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine as Database

from db.models import utcnow
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
