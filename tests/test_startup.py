"""Start-up: the commands a pre-commit hook and a quick look run import only what they use.
Each command runs in a fresh interpreter, which then lists the modules it imported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from reconciler.cli import COMMANDS, SUMMARIES, main

QUICKSTART = Path(__file__).parent.parent / "examples" / "quickstart"
HEAVY = ("httpx", "jsonschema", "referencing", "reconciler.cloud.client", "reconciler.apply.engine", "reconciler.connect")
RUN_AND_LIST = """
import atexit, json, sys
atexit.register(lambda: open(sys.argv[1], "w").write(json.dumps(sorted(sys.modules))))
from reconciler.cli import main
main(sys.argv[2:])
"""


def imported(tmp_path: Path, *args: str) -> set[str]:
    listing = tmp_path / "modules.json"
    result = subprocess.run([sys.executable, "-c", RUN_AND_LIST, str(listing), *args], capture_output=True, text=True)
    assert result.returncode in (0, 2), result.stderr
    return set(json.loads(listing.read_text()))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.startswith(HEAVY) or (m.startswith("reconciler.simulator.") and
                                                                  m not in ("reconciler.simulator.loader", "reconciler.simulator.spec")))


def region_copy(tmp_path: Path) -> Path:
    """The quickstart pointed at a real region instead of the embedded simulator."""
    root = tmp_path / "m"
    shutil.copytree(QUICKSTART, root, ignore=shutil.ignore_patterns(".reconciler", "fleet.yaml"))
    settings = root / "settings.yaml"
    settings.write_text(settings.read_text().replace("simulator:\n    fleet: fleet.yaml", "region: cn-north-4"))
    return root


def test_help_imports_no_command(tmp_path: Path) -> None:
    modules = imported(tmp_path, "--help")
    assert heavy(modules) == [] and "reconciler.simulator" not in modules
    assert not any(m.startswith("reconciler.cli.") and m != "reconciler.cli.common" for m in modules)


@pytest.mark.parametrize("command", [["validate"], ["plan", "--no-refresh"]])
def test_offline_commands_import_no_http_client_and_no_validator(tmp_path: Path, command: list[str]) -> None:
    root = region_copy(tmp_path)
    assert "region: cn-north-4" in (root / "settings.yaml").read_text()
    modules = imported(tmp_path, *command, str(root))
    assert heavy(modules) == [] and not any(m.startswith("reconciler.simulator") for m in modules)


@pytest.mark.parametrize("command", [["validate"], ["plan", "--no-refresh"]])
def test_the_quickstart_offline_needs_no_http_client(tmp_path: Path, command: list[str]) -> None:
    root = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, root, ignore=shutil.ignore_patterns(".reconciler"))
    modules = imported(tmp_path, *command, str(root))
    assert not [m for m in heavy(modules) if not m.startswith(("jsonschema", "referencing"))]  # the fleet is checked


def test_the_help_summaries_are_the_commands_own() -> None:
    ctx = click.Context(main)
    assert set(SUMMARIES) == set(COMMANDS)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None and SUMMARIES[name] == command.get_short_help_str(1000)
