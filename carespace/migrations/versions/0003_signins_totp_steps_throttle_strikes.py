"""Server-side sign-in sessions (auth_session), single-use TOTP steps and the pending TOTP secret on
auth_user, and the count of locks in a row on auth_throttle (each lock lasts longer).

Revision 0003 (after 0002). Every new column is nullable or has a server default, so rows already stored
stay valid. What already exists is left as it is (a database made from the models before it was stamped).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    found = sa.inspect(op.get_bind())
    if "auth_session" not in found.get_table_names():
        _sessions()
    have = {t: {c["name"] for c in found.get_columns(t)} for t in ("auth_throttle", "auth_user")}
    if "strikes" not in have["auth_throttle"]:
        op.add_column("auth_throttle", sa.Column("strikes", sa.Integer(), server_default="0", nullable=False))
    if "totp_last_step" not in have["auth_user"]:
        op.add_column("auth_user", sa.Column("totp_last_step", sa.Integer(), nullable=True))
    if "totp_pending" not in have["auth_user"]:
        op.add_column("auth_user", sa.Column("totp_pending", sa.String(length=255), nullable=True))


def _sessions() -> None:
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


def downgrade() -> None:
    with op.batch_alter_table("auth_user") as batch_op:
        batch_op.drop_column("totp_pending")
        batch_op.drop_column("totp_last_step")
    with op.batch_alter_table("auth_throttle") as batch_op:
        batch_op.drop_column("strikes")
    op.drop_index("ix_auth_session_user", table_name="auth_session")
    op.drop_index("ix_auth_session_expires", table_name="auth_session")
    op.drop_table("auth_session")
