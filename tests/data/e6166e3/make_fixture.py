"""Write sqlite.sql and postgres.sql: a database made by CareSpace at commit e6166e3 (before Alembic).

Run from a checkout of that commit, which is the code that made the files committed beside this one:

    git archive e6166e3 | tar -x -C /tmp/e6166e3
    cd /tmp/e6166e3 && PYTHONPATH=. python /path/to/make_fixture.py /path/to/tests/data/e6166e3

It uses only what that release had: `carespace db upgrade` and `carespace demo`, a SMART app authorized
by the demo patient (client, code, token, remembered grant), an invitation (link token, outbox mail),
a failed sign-in (throttle) and a Send Record (sent record, retrieval counter), so most tables hold rows.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path


def fill(url: str, folder: Path) -> None:
    """Make the schema and the rows with the release's own code paths."""
    from carespace import close_app, create_app, db
    from smart_auth.accounts.demo import load_demo
    from tests.support import portal_data as pd
    from tests.support.smart import Smart

    app = create_app({"INSTANCE_DIR": str(folder), "DATABASE_URL": url, "BASE_URL": "http://localhost",
                      "SECRET_KEY": "fixture", "MAIL_WORKER": False, "TESTING": True})
    db.upgrade(app.extensions["carespace.engine"])
    load_demo(app.extensions["fhir_service"])
    client = app.test_client()
    smart = Smart(app, client)
    client.post("/login", data={"email": "alex.morgan@example.com", "password": "wrong", "birth_date": "1968-03-21"})
    from smart_auth.accounts.models import User
    with app.extensions["carespace.sessions"]() as s:
        alex = s.query(User).filter_by(email="alex.morgan@example.com").one()
    token = smart.launch(alex)
    assert smart.get("Observation?category=laboratory", token["access_token"]).status_code == 200
    app.extensions["accounts"].invite_patient(patient_id=None, email="nia.fixture@example.com",
                                              birth_date="1980-01-02", name="Nia Fixture")
    pd.sign_in(app, client, alex.id)
    sent = client.post("/health/send-record", data={
        "csrf_token": pd.csrf(client, "/health/send-record"), "recipient": "dr.outside@example.org",
        "start": "2000-01-01", "end": "2030-01-01", "notes": "fixture", "password": "Share-with-Dr-7!",
        "confirm": "Share-with-Dr-7!", "action": "send"})
    assert sent.status_code == 303, sent.status_code
    link = next(x for m in app.extensions["mailer"].outbox() for x in m["links"] if "/records/" in x)
    assert client.get(link.replace("http://localhost", ""), headers={"Accept": "application/jose"}).status_code == 200
    close_app(app)


def sqlite_dump(folder: Path, out: Path) -> None:
    path = folder / "carespace.db"
    fill(f"sqlite:///{path}", folder / "instance-sqlite")
    conn = sqlite3.connect(path)
    out.write_text("\n".join(conn.iterdump()) + "\n")
    conn.close()


def postgres_dump(folder: Path, out: Path) -> None:
    from tests.support.postgres import Cluster, _bin
    cluster = Cluster().start()
    try:
        fill(cluster.create_database("fixture"), folder / "instance-postgres")
        cmd = [_bin("pg_dump"), "--no-owner", "--no-privileges", "-h", "127.0.0.1", "-p", str(cluster.port),
               "-U", "postgres", "fixture"]
        out.write_text(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    finally:
        cluster.stop()


def main(argv: list[str]) -> int:
    target = Path(argv[0]).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_dump(Path(tmp), target / "sqlite.sql")
        postgres_dump(Path(tmp), target / "postgres.sql")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
