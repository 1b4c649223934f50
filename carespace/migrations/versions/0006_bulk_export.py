"""Bulk Data export jobs (fhir_export_job): the request, the caller, the state and the worker's lease; and
the index (res_type, pk) on fhir_resource that walks one type in key order (the export's keyset pages).

Revision 0006 (after 0005). What already exists is left as it is (a database made from the models before it
was stamped).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from carespace.migrations import create_index, drop_index

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    found = sa.inspect(op.get_bind())
    if "fhir_export_job" not in found.get_table_names():
        _jobs()
    if "ix_fhir_resource_type_pk" not in {i["name"] for i in found.get_indexes("fhir_resource")}:
        # last: on PostgreSQL it is built CONCURRENTLY (writers go on), which commits what came before
        create_index("ix_fhir_resource_type_pk", "fhir_resource", ["res_type", "pk"])


def _jobs() -> None:
    op.create_table(
        "fhir_export_job",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=True),
        sa.Column("access", sa.Text(), nullable=False),
        sa.Column("request_url", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.String(length=200), nullable=True),
        sa.Column("transaction_time", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_poll", sa.Float(), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_fhir_export_job_status", "fhir_export_job", ["status", "lease_until"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_fhir_export_job_status", table_name="fhir_export_job")
    op.drop_table("fhir_export_job")
    drop_index("ix_fhir_resource_type_pk", "fhir_resource")
