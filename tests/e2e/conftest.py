"""Fixtures of the end-to-end suites."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import install_axe


@pytest.fixture(scope="session")
def axe_js() -> Path:
    """axe-core's script, for check_page (installed from npm once per machine)."""
    return install_axe()
