"""The test data the repository carries (tests/data/*.tar.xz), unpacked once per test process.

The tests never read anything beside the clone: the 12 Synthea bundles and the R4 artefacts the
table generator needs travel with the repository, compressed, and are unpacked into a temporary
folder of this process (pytest-xdist workers each unpack their own, so nothing is shared or raced).
"""
from __future__ import annotations

import atexit
import shutil
import tarfile
import tempfile
from functools import cache, lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
TEMP_PREFIX = "carespace-testdata-"


@lru_cache(maxsize=1)
def _folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@cache
def unpacked(name: str) -> Path:
    """tests/data/<name>.tar.xz unpacked (first call only); returns the folder that holds its files."""
    archive = DATA / f"{name}.tar.xz"
    if not archive.is_file():
        raise FileNotFoundError(f"the repository lacks its test data {archive.relative_to(ROOT)}")
    target = _folder() / name
    with tarfile.open(archive, "r:xz") as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse links and paths leaving the folder
            tar.extractall(target, filter="data")
        else:  # pragma: no cover - older 3.11 releases
            tar.extractall(target)
    return target


def synthea_dir() -> Path:
    """The 12 Synthea patients (FHIR R4 transaction Bundles), as in ../shared/synthea."""
    return unpacked("synthea")


def fhir_r4_dir() -> Path:
    """The official R4 artefacts the table generator reads, as in ../shared/fhir-r4."""
    return unpacked("fhir-r4")
