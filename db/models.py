"""The stored data: people and every message with its labels, human corrections, uploaded batches and their jobs,
alerts (sustained negativity and risk) with their audit trail, the notifications they send (the outbox) and each
group's escalation list, and the dashboard's users, sessions and audit log.

Times are naive UTC. A message's label fields are empty when it was stored while no model could label it; such
messages are labelled later (`store.unlabelled_messages`). The model's label is never overwritten by a person: a
correction is stored beside it (`human_label` is the current one, `corrections` the history), and the effective
label everywhere is defined once, in `db.labels`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    func,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# Uploaded comments are written by commenters, not students: their authors live under this prefix, so a CSV that
# names a student's handle can never add to that student's record, hide their messages or move their alerts.
COMMENTER_PREFIX = "comment:"
STUDENT, COMMENTER = "person", "commenter"  # Person.kind


class Person(Base):
    """Someone whose messages are stored. Two populations that never mix: `person` (students and anyone who chats,
    in a group) and `commenter` (an author named in an uploaded comment export, whose handle carries the
    `COMMENTER_PREFIX`, so an upload can never write into a student's record)."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(200), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    group_name: Mapped[str | None] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(20), default=STUDENT)  # STUDENT | COMMENTER
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    messages: Mapped[list[Message]] = relationship(back_populates="person", passive_deletes=True)

    # "A student (or anyone who chats), not a commenter", defined here only: the dashboard's people, counts and
    # alert lists, digests, escalation and routing all read this, in Python and in SQL alike.
    @hybrid_property
    def is_student(self) -> bool:
        return self.kind == STUDENT

    @is_student.inplace.expression
    @classmethod
    def _is_student_sql(cls) -> ColumnElement[bool]:
        return cls.kind == STUDENT


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    options: Mapped[str] = mapped_column(String(1000))  # the columns chosen; same file + options = same batch
    row_count: Mapped[int] = mapped_column(Integer)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)  # stored, skipped as blank or as a duplicate
    rows_blank: Mapped[int] = mapped_column(Integer, default=0)
    rows_duplicate: Mapped[int] = mapped_column(Integer, default=0)  # already stored (same person, text, time)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | complete | cancelled
    model: Mapped[str] = mapped_column(String(500))
    prompt_version: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # time spent classifying, over all runs
    header: Mapped[str | None] = mapped_column(Text)  # the file's columns (JSON), for exports without the file
    owner: Mapped[str | None] = mapped_column(String(200))  # the signed-in user who uploaded it


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("batch_id", "row_index", name="uq_message_batch_row"),
        Index("ix_messages_person_time", "person_id", "created_at", "id"),
        Index("ix_messages_duplicate", "person_id", "created_at", "text_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(10), index=True)  # chat | csv | cli
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str | None] = mapped_column(String(16))  # sha256 of the text, to find duplicates fast
    label: Mapped[str | None] = mapped_column(String(10))  # the model's: positive | negative | None = not yet
    confidence: Mapped[float | None] = mapped_column(Float)
    p_negative: Mapped[float | None] = mapped_column(Float)
    uncertain: Mapped[bool | None] = mapped_column(Boolean)
    model: Mapped[str | None] = mapped_column(String(500))
    fingerprint: Mapped[str | None] = mapped_column(String(64))  # the weights that labelled it
    prompt_version: Mapped[str | None] = mapped_column(String(100))
    head_id: Mapped[str | None] = mapped_column(String(200))  # the learned head used, None = zero-shot readout
    human_label: Mapped[str | None] = mapped_column(String(10))  # a person's correction, when there is one
    risk: Mapped[str | None] = mapped_column(String(10))  # none | concern | urgent; None = not assessed
    risk_category: Mapped[str | None] = mapped_column(String(30))
    risk_score: Mapped[float | None] = mapped_column(Float)  # the risk head's probability of a risk message
    risk_version: Mapped[str | None] = mapped_column(String(100))  # the phrase list's version
    risk_head_id: Mapped[str | None] = mapped_column(String(200))  # the risk head that read it, None = phrases only
    human_risk: Mapped[str | None] = mapped_column(String(10))  # a person's review: none | concern | urgent
    human_risk_category: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    row_index: Mapped[int | None] = mapped_column(Integer)  # data row number in the file, 1 = first under header
    cells: Mapped[str | None] = mapped_column(Text)  # an uploaded row's original cells (JSON), for exact exports
    reply: Mapped[str | None] = mapped_column(Text)
    reply_kind: Mapped[str | None] = mapped_column(String(20))  # compose.KINDS, or None
    reply_version: Mapped[str | None] = mapped_column(String(40))  # the reviewed words' version (library / safe)
    reply_interrupted: Mapped[bool | None] = mapped_column(Boolean)  # the reply stopped before it was finished
    author: Mapped[str | None] = mapped_column(String(200))  # who typed it: the signed-in user (or cli:<user>)

    person: Mapped[Person | None] = relationship(back_populates="messages")
    corrections: Mapped[list[Correction]] = relationship(back_populates="message", order_by="Correction.id",
                                                         passive_deletes=True)

    @hybrid_property
    def effective_label(self) -> str | None:
        """THE effective label: a person's correction when there is one, else the model's (both are kept). In Python
        on a loaded message, and as SQL (`coalesce`) in queries: one definition for both."""
        return self.human_label or self.label

    @effective_label.inplace.expression
    @classmethod
    def _effective_label_sql(cls) -> ColumnElement[str | None]:
        return func.coalesce(cls.human_label, cls.label)

    @hybrid_property
    def effective_risk(self) -> str | None:
        """THE effective risk: a person's review when there is one ("not a risk" included), else the assessment's."""
        return self.human_risk or self.risk

    @effective_risk.inplace.expression
    @classmethod
    def _effective_risk_sql(cls) -> ColumnElement[str | None]:
        return func.coalesce(cls.human_risk, cls.risk)

    @hybrid_property
    def effective_risk_category(self) -> str | None:
        return self.human_risk_category if self.human_risk is not None else self.risk_category

    @effective_risk_category.inplace.expression
    @classmethod
    def _effective_risk_category_sql(cls) -> ColumnElement[str | None]:
        return case((cls.human_risk.is_not(None), cls.human_risk_category), else_=cls.risk_category)


class BatchReuse(Base):
    """A row of an uploaded file whose message was stored already (same commenter, time and text: an overlapping
    export, or the same comments re-encoded): the batch shows that message, with its labels, at this row, instead of
    storing or labelling it twice. The row's own cells are kept for the batch's download; erasing the message erases
    this too."""

    __tablename__ = "batch_reuses"

    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    row_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    cells: Mapped[str | None] = mapped_column(Text)


class Correction(Base):
    """A person's correction of a label: who, when, from what to what, on which message; undone, never deleted."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    from_label: Mapped[str | None] = mapped_column(String(10))  # the effective label before
    to_label: Mapped[str] = mapped_column(String(10))
    by: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    note: Mapped[str | None] = mapped_column(Text)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime)
    undone_by: Mapped[str | None] = mapped_column(String(200))

    message: Mapped[Message] = relationship(back_populates="corrections")


class RiskCorrection(Base):
    """A person's review of a message's risk ("not a risk", or "this is a risk" with level and category): who,
    when, from what, to what; undone, never deleted. It takes effect at once (alerts open or close) and teaches the
    risk head (`fit-head --risk --with-corrections`)."""

    __tablename__ = "risk_corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    from_level: Mapped[str | None] = mapped_column(String(10))  # the effective risk before
    from_category: Mapped[str | None] = mapped_column(String(30))
    to_level: Mapped[str] = mapped_column(String(10))
    to_category: Mapped[str | None] = mapped_column(String(30))
    by: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    note: Mapped[str | None] = mapped_column(Text)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime)
    undone_by: Mapped[str | None] = mapped_column(String(200))


class LabelVersion(Base):
    """A model label that a re-score replaced: kept, with the re-score that replaced it."""

    __tablename__ = "label_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    rescore_id: Mapped[int] = mapped_column(ForeignKey("rescores.id", ondelete="CASCADE"), index=True)
    label: Mapped[str | None] = mapped_column(String(10))
    confidence: Mapped[float | None] = mapped_column(Float)
    p_negative: Mapped[float | None] = mapped_column(Float)
    uncertain: Mapped[bool | None] = mapped_column(Boolean)
    model: Mapped[str | None] = mapped_column(String(500))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    prompt_version: Mapped[str | None] = mapped_column(String(100))
    head_id: Mapped[str | None] = mapped_column(String(200))


class Rescore(Base):
    """One re-labelling of a batch or a person with the current model and head."""

    __tablename__ = "rescores"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(20))  # batch | person | zero-shot (all labelled before the head)
    target: Mapped[str] = mapped_column(String(200))  # batch id, handle, or the weights' fingerprint
    head_id: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[str] = mapped_column(String(100))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    by: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="sentiment")  # sentiment | risk
    severity: Mapped[str | None] = mapped_column(String(10))  # risk alerts: urgent | concern
    category: Mapped[str | None] = mapped_column(String(30))  # risk alerts: self-harm, harm-to-others, ...
    message_id: Mapped[int | None] = mapped_column(Integer)  # risk alerts: the message that raised it
    rule: Mapped[str] = mapped_column(String(200))  # which rule fired, with its parameters
    window_start: Mapped[datetime] = mapped_column(DateTime)
    window_end: Mapped[datetime] = mapped_column(DateTime)
    negatives: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    negative_share: Mapped[float] = mapped_column(Float)
    last_message_id: Mapped[int] = mapped_column(Integer)  # newest message the alert has seen
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | acknowledged | resolved
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))

    person: Mapped[Person] = relationship()
    # The risk message that raised it (no foreign key: erasing a message never blocks on its alert).
    message: Mapped[Message | None] = relationship(primaryjoin="foreign(Alert.message_id) == Message.id",
                                                   viewonly=True)
    events: Mapped[list[AlertEvent]] = relationship(back_populates="alert", order_by="AlertEvent.id",
                                                     passive_deletes=True)


class AlertEvent(Base):
    """Every status change of an alert, for the audit trail: who moved it, when, from what to what, and why."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    by: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    alert: Mapped[Alert] = relationship(back_populates="events")


class Job(Base):
    """A screening that runs in the background: it survives page changes and restarts (the upload is kept, private to
    the server, until the job ends), reports progress from its batch, and can be cancelled."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # db.jobs.STATUSES
    file_path: Mapped[str | None] = mapped_column(String(1000))  # the kept upload; removed when the job ends
    file_name: Mapped[str] = mapped_column(String(500))
    options: Mapped[str] = mapped_column(String(1000))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)  # labelled so far, earlier runs included
    rows_at_start: Mapped[int] = mapped_column(Integer, default=0)  # done when this run started (for rows/s)
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    worker: Mapped[str | None] = mapped_column(String(100))  # host:pid of the process running it


class User(Base):
    """Someone who signs in to the dashboard: a local account (argon2 password hash) or an OIDC identity."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # admin | counsellor | teacher | moderator | student
    password_hash: Mapped[str | None] = mapped_column(String(300))
    email: Mapped[str | None] = mapped_column(String(300), unique=True)  # how an OIDC sign-in finds its user
    person_handle: Mapped[str | None] = mapped_column(String(200))  # a student's own person in the store
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)  # unused since schema 4 (SignInThrottle)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)  # unused since schema 4: nobody is locked out
    oidc_issuer: Mapped[str | None] = mapped_column(String(500))  # the school identity bound at first sign-in
    oidc_subject: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)

    groups: Mapped[list[UserGroup]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class UserGroup(Base):
    """A group (class) a user is responsible for: what a counsellor or teacher may see."""

    __tablename__ = "user_groups"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    group_name: Mapped[str] = mapped_column(String(200), primary_key=True)


class AuthSession(Base):
    """A signed-in browser session: only the token's hash is stored."""

    __tablename__ = "auth_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SignInThrottle(Base):
    """Failed sign-ins counted per client (its address) and per typed name (hashed: a name field sometimes holds a
    password): after a few, that key waits, twice as long after each further failure (db.signin)."""

    __tablename__ = "signin_throttle"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime)


class AuditEvent(Base):
    """Who did what, when: sign-ins, views of a person's messages, exports, erasures, alert actions, settings."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50), index=True)
    target: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[str | None] = mapped_column(Text)


class Setting(Base):
    """A setting an admin changes in the dashboard (retention, what teachers may read), with who changed it."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class Notification(Base):
    """One notification to deliver (the outbox): an alert's first notice or an escalation step, to one address by
    e-mail or to the webhook, or a teacher's digest. Written in the transaction that opens the alert (or takes the
    step), so no alert is stored without its notifications; a sender delivers it later, at least once, and `key`
    (the same on every try) lets the receiver drop a repeat. It holds no message text: what is sent is composed
    from the alert when it is sent, and the row goes when its alert is erased."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # the idempotency key: Message-ID, Idempotency-Key
    kind: Mapped[str] = mapped_column(String(20))  # alert | escalation | digest
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)  # 0 = the first notice; 1, 2 ... escalation steps
    channel: Mapped[str] = mapped_column(String(20))  # email | webhook
    recipient: Mapped[str] = mapped_column(String(300), default="")  # an e-mail address; "" for the webhook
    username: Mapped[str | None] = mapped_column(String(200))  # the account it goes to (e-mail)
    reason: Mapped[str] = mapped_column(String(300), default="")  # why this person: "counsellor of Class A", ...
    period_start: Mapped[datetime | None] = mapped_column(DateTime)  # digests: the period reported
    period_end: Mapped[datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(20), default="waiting")  # db.outbox.STATUSES
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)  # while `sending`: another sender waits until
    worker: Mapped[str | None] = mapped_column(String(100))  # host:pid of the sender holding it
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)


class EscalationContact(Base):
    """A group's escalation list: who gets an urgent alert nobody acknowledged, in order, after its counsellors."""

    __tablename__ = "escalation_contacts"

    group_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1 = the first after the counsellors
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
