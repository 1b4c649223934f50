"""Baseline: the schema of CareSpace 0.1.0 (commit e6166e3), frozen here as it was; adopts older databases.

On an empty database it creates every table. On a database made before revisions existed it
creates only the tables and indexes that are missing (indexes on tables that already hold rows are
built CONCURRENTLY on PostgreSQL), drops the indexes those releases retired, and leaves every row as
it is. The tables are written out here, not taken from the models, so that later revisions start
from exactly this schema whatever the models become.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from carespace.migrations import create_index, drop_index

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = sa.MetaData()
# Indexes an earlier release made and none declares any more, per table.
RETIRED = {"fhir_idx_token": ["ix_fhir_idx_token_res"]}  # (res_pk, param): a prefix of ix_fhir_idx_token_res_code

sa.Table(
    "fhir_idx_compartment", SCHEMA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("patient_id", sa.String(length=64), nullable=False),
    sa.Column("res_pk", sa.BigInteger(), nullable=False),
    sa.Column("res_type", sa.String(length=64), nullable=False),
    sa.Column("date_low", sa.BigInteger(), nullable=True),
    sa.Column("date_high", sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_fhir_idx_comp_patient", "patient_id", "res_type", "res_pk"),
    sa.Index("ix_fhir_idx_comp_res", "res_pk"),
)
sa.Table(
    "fhir_idx_date", SCHEMA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("res_pk", sa.BigInteger(), nullable=False),
    sa.Column("res_type", sa.String(length=64), nullable=False),
    sa.Column("param", sa.String(length=64), nullable=False),
    sa.Column("low", sa.BigInteger(), nullable=False),
    sa.Column("high", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_fhir_idx_date_low", "res_type", "param", "low"),
    sa.Index("ix_fhir_idx_date_res", "res_pk", "param", "high"),
)
sa.Table(
    "fhir_idx_number", SCHEMA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("res_pk", sa.BigInteger(), nullable=False),
    sa.Column("res_type", sa.String(length=64), nullable=False),
    sa.Column("param", sa.String(length=64), nullable=False),
    sa.Column("value", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_fhir_idx_num_res", "res_pk", "param"),
    sa.Index("ix_fhir_idx_num_value", "res_type", "param", "value"),
)
sa.Table(
    "fhir_idx_quantity", SCHEMA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("res_pk", sa.BigInteger(), nullable=False),
    sa.Column("res_type", sa.String(length=64), nullable=False),
    sa.Column("param", sa.String(length=64), nullable=False),
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("system", sa.String(length=255), nullable=True),
    sa.Column("code", sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_fhir_idx_qty_res", "res_pk", "param"),
    sa.Index("ix_fhir_idx_qty_value", "res_type", "param", "value"),
)
sa.Table(
    "fhir_idx_reference", SCHEMA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("res_pk", sa.BigInteger(), nullable=False),
    sa.Column("res_type", sa.String(length=64), nullable=False),
    sa.Column("param", sa.String(length=64), nullable=False),
    sa.Column("target_type", sa.String(length=64), nullable=True),
    sa.Column("target_id", sa.String(length=255), nullable=True),
    sa.Column("url", sa.String(length=512), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_fhir_idx_ref_res", "res_pk", "param"),
    sa.Index("ix_fhir_idx_ref_target", "target_type", "target_id"),
    sa.Index("ix_fhir_idx_ref_value", "res_type", "param", "target_id", "target_type", "res_pk"),
)
sa.Table(
    "fhir_idx_string", SCHEMA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("res_pk", sa.BigInteger(), nullable=False),
    sa.Column("res_type", sa.String(length=64), nullable=False),
    sa.Column("param", sa.String(length=64), nullable=False),
    sa.Column("norm", sa.String(length=255), nullable=False),
    sa.Column("exact", sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_fhir_idx_string_res", "res_pk", "param"),
    sa.Index("ix_fhir_idx_string_value", "res_type", "param", "norm"),
)
sa.Table(
    "fhir_idx_token", SCHEMA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("res_pk", sa.BigInteger(), nullable=False),
    sa.Column("res_type", sa.String(length=64), nullable=False),
    sa.Column("param", sa.String(length=64), nullable=False),
    sa.Column("system", sa.String(length=255), nullable=True),
    sa.Column("code", sa.String(length=255), nullable=True),
    sa.Column("text", sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_fhir_idx_token_res_code", "res_pk", "param", "code", "system"),
    sa.Index("ix_fhir_idx_token_value", "res_type", "param", "code", "system", "res_pk"),
)
sa.Table(
    "fhir_idx_uri", SCHEMA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("res_pk", sa.BigInteger(), nullable=False),
    sa.Column("res_type", sa.String(length=64), nullable=False),
    sa.Column("param", sa.String(length=64), nullable=False),
    sa.Column("value", sa.String(length=512), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_fhir_idx_uri_res", "res_pk", "param"),
    sa.Index("ix_fhir_idx_uri_value", "res_type", "param", "value"),
)
sa.Table(
    "fhir_resource", SCHEMA,
    sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("res_type", sa.String(length=64), nullable=False),
    sa.Column("fhir_id", sa.String(length=64), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    sa.Column("last_updated", sa.String(length=40), nullable=False),
    sa.Column("deleted", sa.Boolean(), nullable=False),
    sa.Column("text", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("pk"),
    sa.UniqueConstraint("res_type", "fhir_id", name="uq_fhir_resource_type_id"),
    sa.Index("ix_fhir_resource_type_updated", "res_type", "updated_ms"),
)
sa.Table(
    "fhir_resource_version", SCHEMA,
    sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("res_pk", sa.BigInteger(), nullable=False),
    sa.Column("res_type", sa.String(length=64), nullable=False),
    sa.Column("fhir_id", sa.String(length=64), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    sa.Column("last_updated", sa.String(length=40), nullable=False),
    sa.Column("method", sa.String(length=8), nullable=False),
    sa.Column("text", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("pk"),
    sa.UniqueConstraint("res_pk", "version", name="uq_fhir_version"),
    sa.Index("ix_fhir_version_type", "res_type", "pk"),
)
sa.Table(
    "auth_throttle", SCHEMA,
    sa.Column("key", sa.String(length=400), nullable=False),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("window_start", sa.Float(), nullable=False),
    sa.Column("locked_until", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("key"),
)
sa.Table(
    "auth_user", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("email", sa.String(length=320), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("birth_date", sa.String(length=10), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("password_hash", sa.String(length=255), nullable=True),
    sa.Column("fhir_user", sa.String(length=128), nullable=True),
    sa.Column("session_epoch", sa.Integer(), nullable=False),
    sa.Column("totp_secret", sa.String(length=64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("email"),
)
sa.Table(
    "oauth_app_grant", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("user_id", sa.Integer(), nullable=False),
    sa.Column("client_id", sa.String(length=64), nullable=False),
    sa.Column("patient_id", sa.String(length=64), nullable=True),
    sa.Column("requested_scope", sa.Text(), nullable=False),
    sa.Column("granted_scope", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Integer(), nullable=False),
    sa.Column("last_used_at", sa.Integer(), nullable=True),
    sa.Column("revoked_at", sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_oauth_app_grant_user", "user_id", "client_id"),
)
sa.Table(
    "oauth_client", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("client_id", sa.String(length=64), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("secret_hash", sa.String(length=64), nullable=True),
    sa.Column("auth_method", sa.String(length=32), nullable=False),
    sa.Column("redirect_uris", sa.Text(), nullable=False),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("grant_types", sa.String(length=200), nullable=False),
    sa.Column("jwks", sa.Text(), nullable=True),
    sa.Column("jwks_uri", sa.String(length=1000), nullable=True),
    sa.Column("launch_uri", sa.String(length=1000), nullable=True),
    sa.Column("dynamic", sa.Boolean(), nullable=False),
    sa.Column("created_at", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("client_id"),
)
sa.Table(
    "oauth_code", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("code_hash", sa.String(length=64), nullable=False),
    sa.Column("client_id", sa.String(length=64), nullable=False),
    sa.Column("user_id", sa.Integer(), nullable=False),
    sa.Column("redirect_uri", sa.String(length=1000), nullable=False),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("patient_id", sa.String(length=64), nullable=True),
    sa.Column("fhir_user", sa.String(length=128), nullable=True),
    sa.Column("code_challenge", sa.String(length=128), nullable=True),
    sa.Column("code_challenge_method", sa.String(length=8), nullable=True),
    sa.Column("nonce", sa.String(length=255), nullable=True),
    sa.Column("ehr_launch", sa.Boolean(), nullable=False),
    sa.Column("app_grant_id", sa.Integer(), nullable=True),
    sa.Column("expires_at", sa.Integer(), nullable=False),
    sa.Column("used", sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("code_hash"),
)
sa.Table(
    "oauth_encounter_context", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("launch_id", sa.Integer(), nullable=True),
    sa.Column("code_id", sa.Integer(), nullable=True),
    sa.Column("encounter_id", sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("code_id"),
    sa.UniqueConstraint("launch_id"),
)
sa.Table(
    "oauth_launch", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("handle_hash", sa.String(length=64), nullable=False),
    sa.Column("user_id", sa.Integer(), nullable=False),
    sa.Column("client_id", sa.String(length=64), nullable=False),
    sa.Column("patient_id", sa.String(length=64), nullable=False),
    sa.Column("expires_at", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("handle_hash"),
)
sa.Table(
    "oauth_token", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("client_id", sa.String(length=64), nullable=False),
    sa.Column("user_id", sa.Integer(), nullable=True),
    sa.Column("patient_id", sa.String(length=64), nullable=True),
    sa.Column("fhir_user", sa.String(length=128), nullable=True),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("access_hash", sa.String(length=64), nullable=False),
    sa.Column("refresh_hash", sa.String(length=64), nullable=True),
    sa.Column("issued_at", sa.Integer(), nullable=False),
    sa.Column("expires_at", sa.Integer(), nullable=False),
    sa.Column("refresh_expires_at", sa.Integer(), nullable=True),
    sa.Column("revoked", sa.Boolean(), nullable=False),
    sa.Column("code_id", sa.Integer(), nullable=True),
    sa.Column("app_grant_id", sa.Integer(), nullable=True),
    sa.Column("id_token_sub", sa.String(length=255), nullable=True),
    sa.Column("ehr_launch", sa.Boolean(), nullable=False),
    sa.Column("aud", sa.String(length=1000), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("access_hash"),
    sa.UniqueConstraint("refresh_hash"),
    sa.Index("ix_oauth_token_code", "code_id"),
    sa.Index("ix_oauth_token_user", "user_id", "client_id"),
)
sa.Table(
    "oauth_used_jti", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("client_id", sa.String(length=64), nullable=False),
    sa.Column("jti", sa.String(length=255), nullable=False),
    sa.Column("expires_at", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("client_id", "jti", name="uq_oauth_jti"),
)
sa.Table(
    "auth_patient_access", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("user_id", sa.Integer(), nullable=True),
    sa.Column("patient_id", sa.String(length=64), nullable=False),
    sa.Column("relationship", sa.String(length=16), nullable=False),
    sa.Column("related_person_id", sa.String(length=64), nullable=True),
    sa.Column("invited_email", sa.String(length=320), nullable=True),
    sa.Column("invited_birth_date", sa.String(length=10), nullable=True),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["user_id"], ["auth_user.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_auth_access_patient", "patient_id", "status"),
    sa.Index("ix_auth_access_user", "user_id", "status"),
)
sa.Table(
    "auth_link_token", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("purpose", sa.String(length=16), nullable=False),
    sa.Column("token_hash", sa.String(length=64), nullable=False),
    sa.Column("user_id", sa.Integer(), nullable=True),
    sa.Column("access_id", sa.Integer(), nullable=True),
    sa.Column("expires_at", sa.Float(), nullable=False),
    sa.Column("state", sa.String(length=16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["access_id"], ["auth_patient_access.id"], ),
    sa.ForeignKeyConstraint(["user_id"], ["auth_user.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("token_hash"),
    sa.Index("ix_auth_link_token_access", "purpose", "access_id"),
    sa.Index("ix_auth_link_token_user", "purpose", "user_id"),
)
sa.Table(
    "bundles_rate", SCHEMA,
    sa.Column("key", sa.String(length=200), nullable=False),
    sa.Column("window", sa.Integer(), nullable=False),
    sa.Column("hits", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("key", "window"),
)
sa.Table(
    "bundles_sent_record", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("patient_id", sa.String(length=64), nullable=False),
    sa.Column("sender_user_id", sa.Integer(), nullable=False),
    sa.Column("sender_name", sa.String(length=200), nullable=False),
    sa.Column("sender_ref", sa.String(length=128), nullable=True),
    sa.Column("recipient_email", sa.String(length=320), nullable=False),
    sa.Column("token_hash", sa.String(length=64), nullable=False),
    sa.Column("start_date", sa.String(length=10), nullable=False),
    sa.Column("end_date", sa.String(length=10), nullable=False),
    sa.Column("counts", sa.Text(), nullable=False),
    sa.Column("jwe", sa.Text(), nullable=True),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("first_opened_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_opened_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("open_count", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("token_hash"),
    sa.Index("ix_bundles_sent_patient", "patient_id", "created_at"),
)
sa.Table(
    "mail_outbox", SCHEMA,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("to_addr", sa.String(length=320), nullable=False),
    sa.Column("subject", sa.String(length=500), nullable=False),
    sa.Column("text_body", sa.Text(), nullable=False),
    sa.Column("html_body", sa.Text(), nullable=True),
    sa.Column("links", sa.Text(), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("due_at", sa.Float(), nullable=False),
    sa.Column("last_error", sa.String(length=500), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_mail_outbox_status_due", "status", "due_at"),
)


def upgrade() -> None:
    bind = op.get_bind()
    found = set(sa.inspect(bind).get_table_names())
    SCHEMA.create_all(bind, tables=[t for t in SCHEMA.sorted_tables if t.name not in found])
    existing = [t for t in SCHEMA.sorted_tables if t.name in found]
    inspector = sa.inspect(bind)
    present = {t.name: {ix["name"] for ix in inspector.get_indexes(t.name)} for t in existing}
    for table in existing:
        for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
            if index.name not in present[table.name]:
                create_index(str(index.name), table.name, [c.name for c in index.columns], unique=bool(index.unique))
        for name in RETIRED.get(table.name, []):
            if name in present[table.name]:
                drop_index(name, table.name)


def downgrade() -> None:
    for table in reversed(SCHEMA.sorted_tables):
        op.drop_table(table.name)
