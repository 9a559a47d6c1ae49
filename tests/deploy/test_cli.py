"""The command line: one table of commands, light to load, and the guide lists each of them."""

import re
import subprocess
import sys
from pathlib import Path

from deploy import cli

ROOT = Path(__file__).resolve().parents[2]
# Only the commands that use them may load these: the Docker SDK (building images) and httpx (loadtest).
HEAVY = {"docker", "httpx"}


def imported(*argv: str) -> set[str]:
    """Every module `python -m deploy ARGV` imports, as `-X importtime` reports them."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "deploy", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: python -m deploy {argv[0]}")
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines}


def test_status_help_loads_neither_the_docker_sdk_nor_httpx():
    modules = imported("status", "--help")
    assert {"deploy.cli", "deploy.commands", "deploy.loadtest", "boto3"} <= modules
    assert {name for name in modules if name.split(".")[0] in HEAVY} == set()


def test_the_guide_shows_how_to_run_every_command():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    listing = guide.split("```", 2)[1]
    assert set(re.findall(r"^python -m deploy (\w+)", listing, re.M)) == set(cli.COMMANDS)
