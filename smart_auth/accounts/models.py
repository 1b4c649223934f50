"""Account tables: users, and which patients each user may act for (self or proxy)."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Metadata of the smart_auth tables (accounts and OAuth share it)."""


class User(Base):
    """A person who signs in: a patient, a proxy (friend/family) or practice staff."""

    __tablename__ = "auth_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD, part of the login
    role: Mapped[str] = mapped_column(String(16))  # patient | proxy | staff
    status: Mapped[str] = mapped_column(String(16), default="invited")  # invited | active | disabled
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The FHIR resource that is this person: Patient/<id> for patients, Practitioner/<id> for staff.
    # Proxies have none of their own; their identity per patient is PatientAccess.related_person_id.
    fhir_user: Mapped[str | None] = mapped_column(String(128), nullable=True)
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)  # bumped to end every session
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The last TOTP time step accepted (RFC 6238 section 5.2: a code is used once), and a secret being set up,
    # sealed with the instance key (never in the session cookie) until its first code turns it on.
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    totp_pending: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PatientAccess(Base):
    """A user's right to act for a patient: `self` for the patient, `proxy` for friends and family.

    Proxy access is also a FHIR RelatedPerson (active, period) whose id is kept here; revoking sets
    status=revoked and ends the RelatedPerson's period, effective on the next request.
    """

    __tablename__ = "auth_patient_access"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("auth_user.id"), nullable=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    relationship: Mapped[str] = mapped_column(String(16))  # self | proxy
    related_person_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    invited_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    invited_birth_date: Mapped[str | None] = mapped_column(String(10), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | active | revoked
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (Index("ix_auth_access_user", "user_id", "status"),
                      Index("ix_auth_access_patient", "patient_id", "status"))


class NotifyPreference(Base):
    """Which "something new" mails a recipient wants; no row means all of them (on by default).

    `recipient` is "user:<id>" for a person, "practice" for the practice's address.
    """

    __tablename__ = "auth_notify_pref"
    recipient: Mapped[str] = mapped_column(String(64), primary_key=True)
    messages: Mapped[bool] = mapped_column(Boolean, default=True)
    results: Mapped[bool] = mapped_column(Boolean, default=True)
    documents: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuthToken(Base):
    """A single-use link token (registration invite or password reset); only its sha256 is stored."""

    __tablename__ = "auth_link_token"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    purpose: Mapped[str] = mapped_column(String(16))  # invite | reset
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("auth_user.id"), nullable=True)
    access_id: Mapped[int | None] = mapped_column(ForeignKey("auth_patient_access.id"), nullable=True)
    expires_at: Mapped[float] = mapped_column(Float)  # epoch seconds
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | used | replaced | revoked
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (Index("ix_auth_link_token_user", "purpose", "user_id"),
                      Index("ix_auth_link_token_access", "purpose", "access_id"))


class LoginThrottle(Base):
    """Failed attempts per key ("email:..." or "ip:..."), shared by every server process."""

    __tablename__ = "auth_throttle"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[float] = mapped_column(Float, default=0.0)
    locked_until: Mapped[float] = mapped_column(Float, default=0.0)
    strikes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # locks in a row: each lasts longer


class SignIn(Base):
    """One signed-in browser session, so signing out ends it on the server: the cookie names it by a random
    token, of which only the sha256 is stored. Password reset and disabling an account delete them all."""

    __tablename__ = "auth_session"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("auth_user.id"))
    created_at: Mapped[float] = mapped_column(Float)  # epoch seconds
    expires_at: Mapped[float] = mapped_column(Float)  # the absolute end, however active the session
    __table_args__ = (Index("ix_auth_session_user", "user_id"), Index("ix_auth_session_expires", "expires_at"))
