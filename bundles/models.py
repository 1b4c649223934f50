"""Tables of sent records (only the encrypted JWE is kept, never the password) and retrieval rate limits."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Metadata of the bundles tables (picked up by carespace.schema.metadatas)."""


class SentRecord(Base):
    """A record a patient sent to an outside provider: the JWE, who sent it, when its link dies, opens."""

    __tablename__ = "bundles_sent_record"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    sender_user_id: Mapped[int] = mapped_column(Integer)
    sender_name: Mapped[str] = mapped_column(String(200))
    sender_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)  # Patient/.. or RelatedPerson/..
    recipient_email: Mapped[str] = mapped_column(String(320))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the link token
    start_date: Mapped[str] = mapped_column(String(10))
    end_date: Mapped[str] = mapped_column(String(10))
    counts: Mapped[str] = mapped_column(Text, default="{}")  # JSON {kind: count}
    jwe: Mapped[str | None] = mapped_column(Text, nullable=True)  # erased once revoked or expired
    size: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    first_opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    open_count: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (Index("ix_bundles_sent_patient", "patient_id", "created_at"),)


class RetrievalCounter(Base):
    """Hits per key ("ip:..." or "record:...") in one fixed time window, shared by every server process."""

    __tablename__ = "bundles_rate"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window: Mapped[int] = mapped_column(Integer, primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)
