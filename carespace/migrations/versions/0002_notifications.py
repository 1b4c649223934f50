"""Notifications: pending notices (batched per recipient), email preferences, extra headers on outbox mail.

Revision 0002 (after 0001). New tables only, and one nullable column: no rows are rewritten. What
already exists is left as it is (a database made from the models before it was stamped).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    found = sa.inspect(op.get_bind())
    tables = set(found.get_table_names())
    if "auth_notify_pref" not in tables:
        _prefs()
    if "notify_pending" not in tables:
        _pending()
    if "headers" not in {c["name"] for c in found.get_columns("mail_outbox")}:
        op.add_column("mail_outbox", sa.Column("headers", sa.Text(), nullable=True))


def _prefs() -> None:
    op.create_table(
        "auth_notify_pref",
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("messages", sa.Boolean(), nullable=False),
        sa.Column("results", sa.Boolean(), nullable=False),
        sa.Column("documents", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("recipient"),
    )


def _pending() -> None:
    op.create_table(
        "notify_pending",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notify_pending_created", "notify_pending", ["created_at"])
    op.create_index("ix_notify_pending_recipient", "notify_pending", ["recipient", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("mail_outbox") as batch_op:
        batch_op.drop_column("headers")
    op.drop_index("ix_notify_pending_recipient", table_name="notify_pending")
    op.drop_index("ix_notify_pending_created", table_name="notify_pending")
    op.drop_table("notify_pending")
    op.drop_table("auth_notify_pref")
