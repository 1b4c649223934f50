"""Composition-root tables: the mail outbox (every mail is stored before it is sent), pending notices."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Metadata of the carespace tables (picked up by carespace.schema.metadatas)."""


class OutboxMail(Base):
    """One mail: queued in the sender's transaction, delivered over SMTP after commit, retried until sent."""

    __tablename__ = "mail_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    to_addr: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    links: Mapped[str] = mapped_column(Text, default="[]")  # JSON list, shown by `carespace outbox`
    headers: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON object of extra headers
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | sending | retrying | sent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[float] = mapped_column(Float, default=0.0)  # epoch seconds of the next attempt / claim expiry
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (Index("ix_mail_outbox_status_due", "status", "due_at"),)


class PendingNotice(Base):
    """Something new for a recipient, waiting for the batching window to pass (then one mail per recipient)."""

    __tablename__ = "notify_pending"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(String(64))  # "user:<id>" or "practice"
    patient_id: Mapped[str] = mapped_column(String(64))  # whose record: access is checked again at send time
    kind: Mapped[str] = mapped_column(String(16))  # messages | results | documents
    created_at: Mapped[float] = mapped_column(Float)  # epoch seconds
    __table_args__ = (Index("ix_notify_pending_recipient", "recipient", "created_at"),
                      Index("ix_notify_pending_created", "created_at"))
