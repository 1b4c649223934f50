"""A throwaway PostgreSQL cluster from Debian's packages, started and stopped by the tests."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (make test installs Debian's postgresql)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """initdb + postgres on a free loopback port; as root both run as the `postgres` user."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="carespace-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.as_root = os.geteuid() == 0

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", "postgres", "--"] if self.as_root else []) + list(args)

    def start(self) -> "Cluster":
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(self._cmd(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                 "-E", "UTF8", "--no-locale"), check=True, capture_output=True)
        return self._serve()

    def replica(self) -> "Cluster":
        """A streaming replica of this cluster: pg_basebackup -R (standby.signal + primary_conninfo), started."""
        standby = Cluster()
        if standby.as_root:
            shutil.chown(standby.dir, "postgres", "postgres")
        subprocess.run(standby._cmd(_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                                    "-D", str(standby.data), "-R", "-X", "stream", "-c", "fast"),
                       check=True, capture_output=True)
        return standby._serve()

    def restart(self) -> "Cluster":
        """Start again after stop_server(), on the same port and data."""
        return self._serve()

    def stop_server(self) -> None:
        """Stop the server and keep its data (restart() starts it again)."""
        stop_process(self.proc)

    def _serve(self) -> "Cluster":
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(self._cmd(_bin("postgres"), "-D", str(self.data), "-p", str(self.port),
                                               "-k", str(self.dir), "-h", "127.0.0.1", "-c", "fsync=off",
                                               "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                                               "-c", "max_connections=200"),
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.dir / "server.log").read_text()) from None
                time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not start in 30 s")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, statement: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement as the superuser (autocommit) and return its rows."""
        import psycopg
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}",
                             autocommit=True) as conn:
            cur = conn.execute(statement)
            return list(cur.fetchall()) if cur.description else []

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate a server started by the tests, killing it if it does not exit within 10 s."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
