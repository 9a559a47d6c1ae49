"""A real browser for the page tests: Debian's Chromium (scripts/setup.sh installs it), driven by Playwright,
whose own browser download cannot work here; axe-core from npm in .kennel/axe (set-up again)."""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing of Chromium's own that would reach out to the network on its own.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = ROOT / ".kennel" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / ".kennel" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 800}
# 200% zoom doubles every CSS pixel: a 1280 px wide window then lays the page out 640 CSS pixels wide.
ZOOMED = {"width": 640, "height": 450}


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.is_file():
        pytest.fail(f"no {CHROMIUM}: `scripts/setup.sh browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield chromium
        chromium.close()


def human_name(label: str) -> str:
    """What the page shows for a label: the rule of kennel_proxy/page/index.html's humanName, written again
    here from its description so the test checks the page rather than itself."""
    small = {"and", "of", "the", "de", "du", "des", "la", "le", "von", "van"}
    words = [w for w in re.split(r"[_\s]+", re.sub(r"^\d+[.\s_-]*", "", label)) if w]
    named = [w.lower() if i and w.lower() in small else w[:1].upper() + w[1:] for i, w in enumerate(words)]
    return " ".join(named) or label


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2.1 A and AA rules)."""
    if not AXE.is_file():
        pytest.fail(f"no {AXE}: `scripts/setup.sh axe` installs axe-core")
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
        ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"],
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in {"serious", "critical"}
    ]


def save_json(name: str, data: object) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
