"""Composition-root tables: the mail outbox (every mail is stored before it is sent)."""
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
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | sending | retrying | sent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[float] = mapped_column(Float, default=0.0)  # epoch seconds of the next attempt / claim expiry
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (Index("ix_mail_outbox_status_due", "status", "due_at"),)
