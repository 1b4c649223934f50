"""Server-side sign-in sessions (auth_session), single-use TOTP steps and the pending TOTP secret on
auth_user, and the count of locks in a row on auth_throttle (each lock lasts longer).

Every new column is nullable or has a server default, so rows already stored stay valid.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["auth_user.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_auth_session_expires", "auth_session", ["expires_at"], unique=False)
    op.create_index("ix_auth_session_user", "auth_session", ["user_id"], unique=False)  # a new, empty table
    op.add_column("auth_throttle", sa.Column("strikes", sa.Integer(), server_default="0", nullable=False))
    op.add_column("auth_user", sa.Column("totp_last_step", sa.Integer(), nullable=True))
    op.add_column("auth_user", sa.Column("totp_pending", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auth_user") as batch_op:
        batch_op.drop_column("totp_pending")
        batch_op.drop_column("totp_last_step")
    with op.batch_alter_table("auth_throttle") as batch_op:
        batch_op.drop_column("strikes")
    op.drop_index("ix_auth_session_user", table_name="auth_session")
    op.drop_index("ix_auth_session_expires", table_name="auth_session")
    op.drop_table("auth_session")
