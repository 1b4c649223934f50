"""Tables of the FHIR store: current resources, every version, and HAPI-style search indexes."""
from __future__ import annotations

from typing import Any

from sqlalchemy import DDL, BigInteger, Boolean, Float, Index, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

PK = BigInteger().with_variant(Integer(), "sqlite")  # SQLite only autoincrements INTEGER PRIMARY KEY


class Base(DeclarativeBase):
    """Metadata of the fhir_server tables."""


class ResourceRow(Base):
    """The current version of a resource; `text` is the compact JSON served as stored."""

    __tablename__ = "fhir_resource"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    res_type: Mapped[str] = mapped_column(String(64))
    fhir_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    last_updated: Mapped[str] = mapped_column(String(40))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    # (res_type, pk): a type's resources in key order, the keyset pages of a Bulk Data export
    __table_args__ = (UniqueConstraint("res_type", "fhir_id", name="uq_fhir_resource_type_id"),
                      Index("ix_fhir_resource_type_updated", "res_type", "updated_ms"),
                      Index("ix_fhir_resource_type_pk", "res_type", "pk"))


class ResourceVersion(Base):
    """Every version ever written (history, vread); pk doubles as a global change sequence."""

    __tablename__ = "fhir_resource_version"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    res_pk: Mapped[int] = mapped_column(BigInteger)
    res_type: Mapped[str] = mapped_column(String(64))
    fhir_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    last_updated: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(8))
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (UniqueConstraint("res_pk", "version", name="uq_fhir_version"),
                      Index("ix_fhir_version_type", "res_type", "pk"))


class TokenIndex(Base):
    """token parameters: system|code, plus display/text (case- and accent-folded) for :text."""

    __tablename__ = "fhir_idx_token"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    res_pk: Mapped[int] = mapped_column(BigInteger)
    res_type: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code: Mapped[str | None] = mapped_column(String(255), nullable=True)
    text: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # (res_pk, param, code, system): a search tests each candidate's tokens (category=...) in the index alone
    __table_args__ = (Index("ix_fhir_idx_token_value", "res_type", "param", "code", "system", "res_pk"),
                      Index("ix_fhir_idx_token_res_code", "res_pk", "param", "code", "system"))


class StringIndex(Base):
    """string parameters: `norm` is case- and accent-folded for default and :contains matching."""

    __tablename__ = "fhir_idx_string"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    res_pk: Mapped[int] = mapped_column(BigInteger)
    res_type: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    norm: Mapped[str] = mapped_column(String(255))
    exact: Mapped[str] = mapped_column(String(255))
    __table_args__ = (Index("ix_fhir_idx_string_value", "res_type", "param", "norm"),
                      Index("ix_fhir_idx_string_res", "res_pk", "param"))


class DateIndex(Base):
    """date parameters as an interval [low, high] in epoch milliseconds (UTC)."""

    __tablename__ = "fhir_idx_date"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    res_pk: Mapped[int] = mapped_column(BigInteger)
    res_type: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    low: Mapped[int] = mapped_column(BigInteger)
    high: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_fhir_idx_date_low", "res_type", "param", "low"),
                      Index("ix_fhir_idx_date_res", "res_pk", "param", "high"))


class ReferenceIndex(Base):
    """reference parameters: the target as type + id (local) or as an absolute url."""

    __tablename__ = "fhir_idx_reference"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    res_pk: Mapped[int] = mapped_column(BigInteger)
    res_type: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    __table_args__ = (Index("ix_fhir_idx_ref_value", "res_type", "param", "target_id", "target_type", "res_pk"),
                      Index("ix_fhir_idx_ref_target", "target_type", "target_id"),
                      Index("ix_fhir_idx_ref_res", "res_pk", "param"))


class QuantityIndex(Base):
    """quantity parameters: value with unit system and code."""

    __tablename__ = "fhir_idx_quantity"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    res_pk: Mapped[int] = mapped_column(BigInteger)
    res_type: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    __table_args__ = (Index("ix_fhir_idx_qty_value", "res_type", "param", "value"),
                      Index("ix_fhir_idx_qty_res", "res_pk", "param"))


class NumberIndex(Base):
    """number parameters."""

    __tablename__ = "fhir_idx_number"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    res_pk: Mapped[int] = mapped_column(BigInteger)
    res_type: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    __table_args__ = (Index("ix_fhir_idx_num_value", "res_type", "param", "value"),
                      Index("ix_fhir_idx_num_res", "res_pk", "param"))


class UriIndex(Base):
    """uri parameters (exact, :below, :above)."""

    __tablename__ = "fhir_idx_uri"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    res_pk: Mapped[int] = mapped_column(BigInteger)
    res_type: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(512))
    __table_args__ = (Index("ix_fhir_idx_uri_value", "res_type", "param", "value"),
                      Index("ix_fhir_idx_uri_res", "res_pk", "param"))


class CompartmentIndex(Base):
    """Patient compartment membership, with the resource's clinical date for $everything ranges."""

    __tablename__ = "fhir_idx_compartment"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    res_pk: Mapped[int] = mapped_column(BigInteger)
    res_type: Mapped[str] = mapped_column(String(64))
    date_low: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    date_high: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (Index("ix_fhir_idx_comp_patient", "patient_id", "res_type", "res_pk"),
                      Index("ix_fhir_idx_comp_res", "res_pk"))


INDEX_TABLES: dict[str, Any] = {
    "token": TokenIndex, "string": StringIndex, "date": DateIndex, "reference": ReferenceIndex,
    "quantity": QuantityIndex, "number": NumberIndex, "uri": UriIndex,
}


class ReadFence(Base):
    """Where in the primary's WAL a reader's last write ended: its reads use a replica that has replayed it.

    UNLOGGED on PostgreSQL: it is read on the primary only, and losing it in a crash only sends a few reads
    to the primary that a replica could have answered.
    """

    __tablename__ = "fhir_read_fence"
    reader: Mapped[str] = mapped_column(String(255), primary_key=True)
    lsn: Mapped[str] = mapped_column(String(32))


event.listen(ReadFence.__table__, "after_create",
             DDL("ALTER TABLE fhir_read_fence SET UNLOGGED").execute_if(dialect="postgresql"))


class ExportJob(Base):
    """One Bulk Data $export: its request, the caller it runs as, its state and the lease of the worker running it.

    status: queued | running | done | failed. A worker claims a job with one conditional UPDATE (queued, or
    running with an expired lease) and renews the lease while it writes; a job whose runner died is claimed
    again when its lease runs out (resumed from the start), or failed after `attempts` runs.
    """

    __tablename__ = "fhir_export_job"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str | None] = mapped_column(String(255), nullable=True)  # who may poll and download
    access: Mapped[str] = mapped_column(Text)  # JSON: the scopes and client of the AccessContext it runs as
    request_url: Mapped[str] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text)  # JSON: level, group, types, since, type filters, patients
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[str | None] = mapped_column(String(200), nullable=True)
    transaction_time: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)  # epoch seconds
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_poll: Mapped[float] = mapped_column(Float, default=0.0)
    manifest: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: output and error files
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    __table_args__ = (Index("ix_fhir_export_job_status", "status", "lease_until"),)
