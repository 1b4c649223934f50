"""Share by link (SMART Health Links): the links, their manifest accesses and single-use file locations.

Revision 0005 (after 0004). New tables only: no rows are rewritten. What already exists is left as it is (a database
made from the models before it was stamped).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = set(sa.inspect(op.get_bind()).get_table_names())
    if "bundles_share_link" not in tables:
        _links()
    if "bundles_share_access" not in tables:
        _accesses()
    if "bundles_share_file" not in tables:
        _files()


def _links() -> None:
    op.create_table(
        "bundles_share_link",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("creator_user_id", sa.Integer(), nullable=False),
        sa.Column("creator_name", sa.String(length=200), nullable=False),
        sa.Column("creator_ref", sa.String(length=128), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("passcode_hash", sa.String(length=255), nullable=True),
        sa.Column("attempts_left", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.String(length=10), nullable=False),
        sa.Column("end_date", sa.String(length=10), nullable=False),
        sa.Column("kinds", sa.Text(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("long_term", sa.Boolean(), nullable=False),
        sa.Column("wrapped_key", sa.Text(), nullable=True),
        sa.Column("jwe", sa.Text(), nullable=True),
        sa.Column("content_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("open_count", sa.Integer(), nullable=False),
        sa.Column("last_opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_bundles_share_patient", "bundles_share_link", ["patient_id", "created_at"])


def _accesses() -> None:
    op.create_table(
        "bundles_share_access",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_bundles_share_access_link", "bundles_share_access", ["link_id", "at"])


def _files() -> None:
    op.create_table(
        "bundles_share_file",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_bundles_share_file_expires", "bundles_share_file", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_bundles_share_file_expires", table_name="bundles_share_file")
    op.drop_table("bundles_share_file")
    op.drop_index("ix_bundles_share_access_link", table_name="bundles_share_access")
    op.drop_table("bundles_share_access")
    op.drop_index("ix_bundles_share_patient", table_name="bundles_share_link")
    op.drop_table("bundles_share_link")
