"""Fresh CareSpace stores on SQLite or a throwaway PostgreSQL cluster, each with its own app."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.postgres import Cluster

SECRET = "bench-secret"


@dataclass
class Store:
    """One database with the real app (create_app) over it, and the folder that holds its instance."""

    backend: str
    url: str
    folder: Path
    app: Any = field(repr=False)

    @property
    def engine(self) -> Any:
        return self.app.extensions["carespace.engine"]

    @property
    def svc(self) -> Any:
        return self.app.extensions["fhir_service"]

    def config(self, base_url: str = "http://127.0.0.1") -> dict[str, Any]:
        """The create_app settings of this store (also used by the server subprocess)."""
        return {"INSTANCE_DIR": str(self.folder / "instance"), "DATABASE_URL": self.url, "BASE_URL": base_url,
                "SECRET_KEY": SECRET}

    def close(self) -> None:
        from carespace import close_app
        close_app(self.app)


class Stores:
    """Makes stores for one backend; owns the PostgreSQL cluster and the temporary folders."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.root = Path(tempfile.mkdtemp(prefix=f"carespace-bench-{backend}-"))
        self.cluster: Cluster | None = Cluster().start() if backend == "postgres" else None
        self.count = 0
        self.opened: list[Store] = []

    def new(self, name: str) -> Store:
        """An empty, upgraded store."""
        from carespace import create_app, db
        self.count += 1
        folder = self.root / f"{self.count:02d}-{name}"
        folder.mkdir()
        if self.cluster is not None:
            url = self.cluster.create_database(f"bench_{self.count}_{name}")
        else:
            url = f"sqlite:///{folder / 'carespace.db'}"
        store = Store(self.backend, url, folder, None)
        store.app = create_app(store.config())
        db.upgrade(store.engine)
        self.opened.append(store)
        return store

    def version(self) -> str:
        """The database server's version string."""
        store = self.opened[0]
        with store.engine.connect() as conn:
            if self.cluster is not None:
                return str(conn.exec_driver_sql("SHOW server_version").scalar())
            return str(conn.exec_driver_sql("SELECT sqlite_version()").scalar())

    def close(self) -> None:
        for store in self.opened:
            store.close()
        if self.cluster is not None:
            self.cluster.stop()
        shutil.rmtree(self.root, ignore_errors=True)
