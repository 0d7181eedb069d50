"""Database engine and transactions: SQLite set up for many concurrent sessions, PostgreSQL by URL alone.

On SQLite: WAL journal (readers never wait for the writer), synchronous=FULL (a committed chunk survives power loss),
a busy timeout, foreign keys on, and write transactions that take the write lock at BEGIN (`BEGIN IMMEDIATE`), so two
writers queue at the start instead of one failing with "database is locked" half-way. Read transactions use a plain
deferred BEGIN. Everything SQLite-specific is in this file.

The schema is versioned: a new file gets the current schema and the newest version number; an older file gets the
migration steps it lacks, in order.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Column, Connection, Engine, create_engine, event, func, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from db.errors import StoreError
from db.models import (
    COMMENTER_PREFIX,
    Alert,
    Base,
    Batch,
    BatchReuse,
    EscalationContact,
    Job,
    Message,
    Notification,
    Person,
    RiskCorrection,
    SchemaVersion,
    SignInThrottle,
    User,
)


def text_hash(value: str) -> str:
    """The short digest stored with a message to find duplicates (same person, same time, same text) fast."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _add_column(connection: Connection, column: Column, default: str | None = None) -> None:
    if column.name in {c["name"] for c in inspect(connection).get_columns(column.table.name)}:
        return  # the table was created by an earlier step from today's models (a v1 file), column and all
    kind = column.type.compile(connection.dialect)
    extra = f" NOT NULL DEFAULT {default}" if default is not None else ""
    connection.execute(text(f"ALTER TABLE {column.table.name} ADD COLUMN {column.name} {kind}{extra}"))


def _to_v2(connection: Connection) -> None:
    """Labels that can be reproduced and corrected, risk, interrupted replies, duplicates, background jobs and
    sign-in: new columns on the v1 tables, the new tables, and text hashes for the messages already stored."""
    m, b, a = Message.__table__.c, Batch.__table__.c, Alert.__table__.c
    for column in (m.text_hash, m.fingerprint, m.head_id, m.human_label, m.risk, m.risk_category, m.risk_score,
                   m.risk_version, m.cells, m.reply_kind, m.reply_interrupted, b.header, b.owner, a.severity,
                   a.category, a.message_id):
        _add_column(connection, column)
    _add_column(connection, b.rows_duplicate, "0")
    _add_column(connection, a.kind, "'sentiment'")
    connection.execute(text("DROP INDEX ix_messages_person_time"))  # now (person, time, id): the rule's order
    found = inspect(connection)
    for table in (Person.__table__, Message.__table__, Batch.__table__, Alert.__table__):
        existing = {index["name"] for index in found.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in existing:
                index.create(connection)
    new = [t for name, t in Base.metadata.tables.items() if name not in found.get_table_names()]
    Base.metadata.create_all(connection, tables=new)
    rows = connection.execute(select(Message.id, Message.text)).all()
    for start in range(0, len(rows), 1000):
        for message_id, value in rows[start:start + 1000]:
            connection.execute(update(Message).where(Message.id == message_id).values(text_hash=text_hash(value)))


def _to_v3(connection: Connection) -> None:
    """Background jobs report progress by forward pass (not only by stored chunk), and their own rows/s."""
    j = Job.__table__.c
    _add_column(connection, j.rows_done, "0")
    _add_column(connection, j.rows_at_start, "0")


def _to_v4(connection: Connection) -> None:
    """Who wrote each message, commenters apart from students, a school identity bound to its first subject, and
    sign-in throttling. Uploaded rows that an older version stored under a student move to that handle's commenter
    (with the risk alerts they raised); a person known only from uploads becomes a commenter."""
    m, p, u = Message.__table__.c, Person.__table__.c, User.__table__.c
    _add_column(connection, p.kind, "'person'")
    for column in (m.author, u.oidc_issuer, u.oidc_subject):
        _add_column(connection, column)
    SignInThrottle.__table__.create(connection, checkfirst=True)
    people, messages, alerts = Person.__table__, Message.__table__, Alert.__table__
    uploaded = select(m.person_id).where(m.batch_id.is_not(None)).distinct()
    for person_id, handle, display in connection.execute(select(p.id, p.handle, p.display_name)
                                                         .where(p.id.in_(uploaded))).all():
        spoken = connection.scalar(select(func.count()).where(m.person_id == person_id, m.batch_id.is_(None)))
        name = COMMENTER_PREFIX + handle
        commenter = connection.scalar(select(p.id).where(p.handle == name))
        if not spoken and commenter is None:  # known from uploads only: it was a commenter all along
            connection.execute(update(people).where(p.id == person_id).values(kind="commenter", handle=name))
            continue
        if commenter is None:
            commenter = connection.execute(people.insert().values(handle=name, display_name=display,
                                                                   kind="commenter")).inserted_primary_key[0]
        moved = select(m.id).where(m.person_id == person_id, m.batch_id.is_not(None))
        connection.execute(update(alerts).where(alerts.c.kind == "risk", alerts.c.person_id == person_id,
                                                alerts.c.message_id.in_(moved)).values(person_id=commenter))
        connection.execute(update(messages).where(m.person_id == person_id, m.batch_id.is_not(None))
                           .values(person_id=commenter))


def _to_v5(connection: Connection) -> None:
    """Risk that a person reviews and a head reads: the reviewed risk, the risk head's id, the review history."""
    m = Message.__table__.c
    for column in (m.risk_head_id, m.human_risk, m.human_risk_category):
        _add_column(connection, column)
    RiskCorrection.__table__.create(connection, checkfirst=True)


def _to_v6(connection: Connection) -> None:
    """Notifications: the outbox of e-mails and webhook posts, and each group's escalation list."""
    Notification.__table__.create(connection, checkfirst=True)
    EscalationContact.__table__.create(connection, checkfirst=True)


def _to_v8(connection: Connection) -> None:
    """Each reply keeps the version of the reviewed words it used (the reply library's or the safe messages')."""
    _add_column(connection, Message.__table__.c.reply_version)


def _to_v7(connection: Connection) -> None:
    """A batch shows every row of its file: rows stored already by an earlier upload point at that message."""
    BatchReuse.__table__.create(connection, checkfirst=True)


# Migration steps for files made by older versions: (version, function(connection)). A new file is created
# directly at SCHEMA_VERSION from the models, so a step only has to bring the previous version up by one.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(2, _to_v2), (3, _to_v3), (4, _to_v4), (5, _to_v5),
                                                         (6, _to_v6), (7, _to_v7), (8, _to_v8)]
SCHEMA_VERSION = 1 + len(MIGRATIONS)


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # Autocommit at the driver level, so that SQLAlchemy's "begin" event decides how each transaction begins.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA secure_delete=ON")  # erased messages are overwritten, not left in free pages
    if cursor.execute("PRAGMA database_list").fetchone()[2]:  # a file, not :memory:
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


class WriteHolds:
    """How long this process held SQLite's write lock: from BEGIN IMMEDIATE returning to the commit (what every other
    writer waits for). Read by the load test and reported in the README's reliability figures."""

    longest = 0.0
    total = 0.0
    count = 0
    _started: dict[int, float] = {}

    @classmethod
    def record(cls, seconds: float) -> None:
        cls.longest, cls.total, cls.count = max(cls.longest, seconds), cls.total + seconds, cls.count + 1


def _sqlite_begin(connection: object) -> None:
    readonly = connection.get_execution_options().get("aio_readonly", False)
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
    if not readonly:
        WriteHolds._started[id(connection.connection.dbapi_connection)] = time.perf_counter()


def _sqlite_end(connection: object) -> None:
    started = WriteHolds._started.pop(id(connection.connection.dbapi_connection), None)
    if started is not None:
        WriteHolds.record(time.perf_counter() - started)


def describe(url: str) -> str:
    """The database as a user knows it: the file path for SQLite, the URL without password otherwise."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or "an in-memory database"
    return parsed.render_as_string(hide_password=True)


def explain(error: SQLAlchemyError | sqlite3.Error, url: str) -> StoreError:
    """A database failure as one sentence that names the database and the fix."""
    where = describe(url)
    text = str(getattr(error, "orig", error) or error).lower()
    if "readonly" in text or "read-only" in text:
        return StoreError(f"The database {where} is read-only; make the file and its folder writable, "
                         "or set AIO_DB_URL to a writable location.")
    if "disk is full" in text or "disk full" in text or "no space" in text:
        return StoreError(f"The disk holding the database {where} is full; free some space and try again "
                         "(nothing from the failed step was stored).")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StoreError(f"The database file {where} is damaged or is not a SQLite database; move it aside "
                         "(or restore a backup) or set AIO_DB_URL to another file.")
    if "unable to open" in text:
        return StoreError(f"The database {where} cannot be opened; check that its folder exists and is writable, "
                         "or set AIO_DB_URL.")
    if "locked" in text:
        return StoreError(f"The database {where} stayed locked by another program for 30 seconds; try again.")
    first = str(getattr(error, "orig", error)).splitlines()[0][:200]
    return StoreError(f"The database {where} failed: {first}. Check AIO_DB_URL.")


def _private_file(path: Path, *, create: bool) -> None:
    """A new database file and its folder readable by this account only (0600 / 0700): they hold minors'
    messages. SQLite gives the -wal and -shm files the database file's permissions. An existing file is left as
    its owner set it."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    if create and not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it a moment ago
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_db(url: str) -> Engine:
    """An engine for `url` with the schema in place (created or migrated); raises UserError if unusable."""
    parsed = make_url(url)
    kwargs: dict[str, object] = {}
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        if parsed.database and parsed.database != ":memory:":
            file = parsed.database.removeprefix("file:") if parsed.query.get("uri") else parsed.database
            try:
                _private_file(Path(file).expanduser(), create=parsed.query.get("mode") != "ro")
            except OSError as exc:
                raise StoreError(f"Cannot create the folder for the database {parsed.database} ({exc.strerror}); "
                                "set AIO_DB_URL to a writable location.") from exc
        else:  # one shared connection, or each thread would see its own empty in-memory database
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = create_engine(url, **kwargs)
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "commit", _sqlite_end)
        event.listen(engine, "rollback", _sqlite_end)
    try:
        _migrate(engine)
    except (SQLAlchemyError, sqlite3.Error) as exc:
        engine.dispose()
        raise explain(exc, url) from exc
    return engine


def _migrate(engine: Engine) -> None:
    with engine.begin() as connection:
        tables = set(inspect(connection).get_table_names())
        if "schema_version" not in tables:
            if tables - {"schema_version"}:
                raise StoreError(f"The database {describe(str(engine.url))} has tables but no schema_version table, "
                                "so it was not made by this program; set AIO_DB_URL to another database.")
            Base.metadata.create_all(connection)
            connection.execute(SchemaVersion.__table__.insert().values(version=SCHEMA_VERSION))
            return
        current = connection.execute(select(SchemaVersion.version).order_by(SchemaVersion.version.desc())).scalar()
        if current is not None and current > SCHEMA_VERSION:
            raise StoreError(f"The database {describe(str(engine.url))} was written by a newer version of this "
                            f"program (schema {current}, this one knows {SCHEMA_VERSION}); upgrade the program.")
        for version, step in MIGRATIONS:
            if current is None or version > current:
                step(connection)
                connection.execute(SchemaVersion.__table__.insert().values(version=version))


def compact(engine: Engine) -> None:
    """After an erase: fold the WAL back into the file so no copy of deleted rows stays in the journal."""
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()  # outside any transaction: a checkpoint cannot run inside one
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Session]:
    """One write transaction (write lock taken at BEGIN on SQLite); committed on success, rolled back on error."""
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except (OperationalError, DatabaseError) as exc:
        raise explain(exc, str(engine.url)) from exc


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """One read transaction: a consistent snapshot that never blocks writers."""
    try:
        with Session(engine.execution_options(aio_readonly=True), expire_on_commit=False) as session, \
                session.begin():
            yield session
    except (OperationalError, DatabaseError) as exc:
        raise explain(exc, str(engine.url)) from exc
