"""Write the next schema revision into carespace/migrations/versions/ from what the models add to the revisions.

    .venv/bin/python scripts/new_migration.py "add the outbox priority"

It builds a scratch SQLite database with every existing revision, lets Alembic's autogenerate compare
it with the models and writes versions/NNNN_<message>.py. Read what it wrote before committing: keep
one change per revision, and build indexes on large tables with carespace.migrations.create_index
(CONCURRENTLY on PostgreSQL) instead of op.create_index.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402

from carespace import db, migrations  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("message", help="what the revision changes, in a few words")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        engine = db.make_engine(f"sqlite:///{tmp}/head.db")
        with engine.connect() as conn:
            cfg = migrations.config(conn)
            command.upgrade(cfg, "head")
            conn.commit()
            written = command.revision(cfg, message=args.message, autogenerate=True,
                                       rev_id=f"{int(migrations.head()) + 1:04d}")
        engine.dispose()
    scripts = written if isinstance(written, list) else [written]
    for s in scripts:
        if s is not None:
            print(f"wrote {Path(s.path).relative_to(ROOT)}: read it, then commit it with the models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
