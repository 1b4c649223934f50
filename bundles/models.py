"""Tables of sent records and share links (only ciphertext is kept, never a password, passcode or plain key)."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text
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


class ShareLink(Base):
    """A SMART Health Link a patient made: its ciphertext, passcode hash and countdown, never the plain key."""

    __tablename__ = "bundles_share_link"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    creator_user_id: Mapped[int] = mapped_column(Integer)
    creator_name: Mapped[str] = mapped_column(String(200))
    creator_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)  # Patient/.. or RelatedPerson/..
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the manifest URL's token
    label: Mapped[str] = mapped_column(String(80), default="")
    passcode_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)  # argon2; None: no passcode
    attempts_left: Mapped[int] = mapped_column(Integer, default=0)  # wrong passcodes before the link dies
    start_date: Mapped[str] = mapped_column(String(10), default="")  # "" = from the beginning
    end_date: Mapped[str] = mapped_column(String(10), default="")  # "" = to today
    kinds: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of builder.KINDS; [] = every kind
    counts: Mapped[str] = mapped_column(Text, default="{}")  # JSON {kind: count} of the content
    long_term: Mapped[bool] = mapped_column(Boolean, default=False)  # flag L: content rebuilt when the record changes
    wrapped_key: Mapped[str | None] = mapped_column(Text, nullable=True)  # L only: the key sealed under the server key
    jwe: Mapped[str | None] = mapped_column(Text, nullable=True)  # erased once revoked, expired or dead
    content_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  # when jwe was built
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    open_count: Mapped[int] = mapped_column(Integer, default=0)
    last_opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (Index("ix_bundles_share_patient", "patient_id", "created_at"),)


class ShareLinkAccess(Base):
    """One manifest request of a share link: when, who the recipient said they are, and how it ended."""

    __tablename__ = "bundles_share_access"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    link_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    recipient: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))  # opened | wrong-passcode
    __table_args__ = (Index("ix_bundles_share_access_link", "link_id", "at"),)


class ShareLinkFile(Base):
    """A short-lived, single-use `location` URL handed out in a manifest (only the token's hash is kept)."""

    __tablename__ = "bundles_share_file"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    link_id: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (Index("ix_bundles_share_file_expires", "expires_at"),)
