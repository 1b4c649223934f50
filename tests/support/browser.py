"""Browser checks shared by the e2e suites: axe-core from npm, and one check of a page as a person sees it."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import ARTIFACTS, ROOT

AXE_DIR = ROOT / ".tmp" / "axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"


def install_axe() -> Path:
    """axe-core from npm, installed once into .tmp/axe (not part of the repository)."""
    if not AXE_JS.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(AXE_DIR), "axe-core@4"],
                       check=True, capture_output=True, timeout=300)
    return AXE_JS


def check_page(pg: Any, axe_js: Path, name: str) -> None:
    """No serious or critical axe violation, no horizontal scrolling, and a screenshot."""
    # evaluated through the DevTools protocol: the pages' Content-Security-Policy (scripts from the site
    # only) refuses an inline <script> tag, as it should
    pg.evaluate(axe_js.read_text() + "\n;0")
    result = pg.evaluate("""async () => { const r = await axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
        iframes: false});
      return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                     nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})); }""")
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, json.dumps(bad, indent=1)
    width = pg.viewport_size["width"]
    assert pg.evaluate("document.documentElement.scrollWidth") <= width, f"{name} scrolls sideways at {width}px"
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"portal-{name}-{pg.viewport_kind}.png"), full_page=True)
