"""The stored data: people, every message with its label, uploaded batches, and sustained-negativity alerts.

Times are naive UTC. A message's label fields are empty when it was stored while no model could label it; such
messages are labelled later (`store.unlabelled_messages`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Person(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(200), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    group_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    messages: Mapped[list[Message]] = relationship(back_populates="person", passive_deletes=True)


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    options: Mapped[str] = mapped_column(String(1000))  # the columns chosen; same file + options = same batch
    row_count: Mapped[int] = mapped_column(Integer)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)  # stored or skipped as blank
    rows_blank: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | complete
    model: Mapped[str] = mapped_column(String(500))
    prompt_version: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # time spent classifying, over all runs


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("batch_id", "row_index", name="uq_message_batch_row"),
        Index("ix_messages_person_time", "person_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(10))  # chat | csv | cli
    text: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(10))  # positive | negative | None = not labelled yet
    confidence: Mapped[float | None] = mapped_column(Float)
    p_negative: Mapped[float | None] = mapped_column(Float)
    uncertain: Mapped[bool | None] = mapped_column(Boolean)
    model: Mapped[str | None] = mapped_column(String(500))
    prompt_version: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    row_index: Mapped[int | None] = mapped_column(Integer)  # data row number in the file, 1 = first under header
    reply: Mapped[str | None] = mapped_column(Text)

    person: Mapped[Person | None] = relationship(back_populates="messages")


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
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
