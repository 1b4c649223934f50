"""OAuth tables: registered apps, codes, tokens, remembered consent, EHR launches and their encounter, used jti.

Secrets (client secrets, codes, tokens, launch handles) are stored only as SHA-256 digests, so a
database dump does not hand out working credentials.  Times are epoch seconds.
"""
from __future__ import annotations

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from smart_auth.accounts.models import Base


class OAuthClient(Base):
    """A registered SMART app or backend service."""

    __tablename__ = "oauth_client"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    auth_method: Mapped[str] = mapped_column(String(32))  # none | client_secret_basic | private_key_jwt
    redirect_uris: Mapped[str] = mapped_column(Text, default="")  # one per line
    scope: Mapped[str] = mapped_column(Text, default="")  # registered scopes; empty: any SMART scope
    grant_types: Mapped[str] = mapped_column(String(200), default="authorization_code refresh_token")
    jwks: Mapped[str | None] = mapped_column(Text, nullable=True)  # inline JWK Set (JSON)
    jwks_uri: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    launch_uri: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    dynamic: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(Integer)


class AuthCode(Base):
    """An authorization code: single use, about a minute long, bound to client, redirect URI and PKCE."""

    __tablename__ = "oauth_code"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(Integer)
    redirect_uri: Mapped[str] = mapped_column(String(1000))
    scope: Mapped[str] = mapped_column(Text)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fhir_user: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_challenge_method: Mapped[str | None] = mapped_column(String(8), nullable=True)
    nonce: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ehr_launch: Mapped[bool] = mapped_column(Boolean, default=False)
    app_grant_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[int] = mapped_column(Integer)
    used: Mapped[bool] = mapped_column(Boolean, default=False)


class OAuthToken(Base):
    """An access token and its refresh token (one row; rotation revokes the row and issues a new one)."""

    __tablename__ = "oauth_token"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: backend service
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fhir_user: Mapped[str | None] = mapped_column(String(128), nullable=True)
    scope: Mapped[str] = mapped_column(Text)
    access_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    issued_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer)
    refresh_expires_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    code_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    app_grant_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    id_token_sub: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ehr_launch: Mapped[bool] = mapped_column(Boolean, default=False)
    aud: Mapped[str] = mapped_column(String(1000), default="")
    __table_args__ = (Index("ix_oauth_token_user", "user_id", "client_id"), Index("ix_oauth_token_code", "code_id"))


class AppGrant(Base):
    """What a user allowed an app (remembered consent) and when the app last used it: "Connected apps"."""

    __tablename__ = "oauth_app_grant"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Integer)
    client_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    requested_scope: Mapped[str] = mapped_column(Text)
    granted_scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(Integer)
    last_used_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    __table_args__ = (Index("ix_oauth_app_grant_user", "user_id", "client_id"),)


class LaunchContext(Base):
    """An EHR launch started from "Connected apps": the opaque `launch` handle binds user and patient."""

    __tablename__ = "oauth_launch"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    handle_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(Integer)
    client_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[int] = mapped_column(Integer)


class EncounterContext(Base):
    """The Encounter an EHR launch binds, keyed by the launch and then by the code its tokens carry.

    A table of its own (not a column) so `carespace db upgrade` brings older databases along.
    """

    __tablename__ = "oauth_encounter_context"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    launch_id: Mapped[int | None] = mapped_column(Integer, unique=True, nullable=True)
    code_id: Mapped[int | None] = mapped_column(Integer, unique=True, nullable=True)
    encounter_id: Mapped[str] = mapped_column(String(64))


class UsedAssertion(Base):
    """jti values of client assertions already seen, kept until the assertion expires (replay guard)."""

    __tablename__ = "oauth_used_jti"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64))
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[int] = mapped_column(Integer)
    __table_args__ = (UniqueConstraint("client_id", "jti", name="uq_oauth_jti"),)
