"""Bad input around the manifests — plan file paths, simulator fleets, hand-edited journals —
gives one clear Error and exit 1, never an internal error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.cloud.pacing import RateLimiter

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    target = tmp_path / "qs"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".reconciler"))
    return target


def cli(*args: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(main, list(args))


def test_a_plan_file_in_a_missing_directory_is_refused_before_any_work(quickstart: Path) -> None:
    result = cli("plan", str(quickstart), "-o", str(quickstart / "nodir" / "plan.json"))
    assert result.exit_code == 1 and "the directory" in result.stderr and "does not exist" in result.stderr
    assert "internal error" not in result.stderr
    assert not (quickstart / ".reconciler").exists()  # not even the simulated cloud was touched


def test_a_missing_simulator_fleet_is_a_manifest_problem(quickstart: Path) -> None:
    (quickstart / "fleet.yaml").unlink()
    result = cli("validate", str(quickstart))
    assert result.exit_code == 1 and "settings.yaml:5" in result.stderr and "spec.simulator.fleet: no such file" in result.stderr


def test_a_broken_simulator_fleet_is_reported_briefly(quickstart: Path) -> None:
    fleet = quickstart / "fleet.yaml"
    fleet.write_text(fleet.read_text().replace("job_seconds: 2", "job_seconds: -2"))
    result = cli("plan", str(quickstart))
    assert result.exit_code == 1 and result.stderr.startswith("Error: ") and "fleet.yaml:" in result.stderr
    assert "internal error" not in result.stderr


def test_a_malformed_journal_record_is_a_state_error(quickstart: Path) -> None:
    journal = quickstart / ".reconciler" / "state.json.journal"
    journal.parent.mkdir()
    journal.write_text(json.dumps({"type": "submitted", "at": "2026-11-27T00:00:00+00:00"}) + "\n")
    result = cli("plan", str(quickstart), "--no-refresh")
    assert result.exit_code == 1 and "malformed 'submitted' record" in result.stderr
    assert "internal error" not in result.stderr


def test_a_huge_retry_after_holds_for_a_minute_at_most() -> None:
    assert RateLimiter(60, sleep=lambda s: None).throttled(86_400) == 60
