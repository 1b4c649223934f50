"""Read fences (fhir_read_fence): where each reader's last write ended in the primary's WAL, so that with a
read replica configured that reader's reads go to the primary until the replica has replayed it.

Revision 0004 (after 0003). One new table, UNLOGGED on PostgreSQL (read on the primary only; a crash
empties it, which only sends a few reads to the primary). Left as it is when it exists already.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "fhir_read_fence" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "fhir_read_fence",
        sa.Column("reader", sa.String(length=255), nullable=False),
        sa.Column("lsn", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("reader"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE fhir_read_fence SET UNLOGGED")


def downgrade() -> None:
    op.drop_table("fhir_read_fence")
