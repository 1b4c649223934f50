"""${message}

Revision ${up_revision} (after ${down_revision | comma,n}), written ${create_date}.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from carespace.migrations import create_index, drop_index  # noqa: F401 - CONCURRENTLY on PostgreSQL
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
