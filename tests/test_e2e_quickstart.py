"""The quickstart end to end, through the real CLI in subprocesses, on a copy of
examples/quickstart (embedded simulator)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    target = tmp_path / "quickstart"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".reconciler"))
    # Fast jobs keep the test short; everything else is the example as shipped.
    fleet = target / "fleet.yaml"
    fleet.write_text(fleet.read_text().replace("job_seconds: 2", "job_seconds: 0.4"))
    settings = target / "settings.yaml"
    settings.write_text(settings.read_text().replace("poll_interval_seconds: 0.5", "poll_interval_seconds: 0.1"))
    return target


def run(command: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def state_of(root: Path) -> dict:
    return json.loads((root / ".reconciler" / "state.json").read_text())


def test_quickstart_plan_apply_converge_and_change(quickstart: Path, reconciler_command: list[str]) -> None:
    cwd = quickstart.parent
    first = run(reconciler_command, "plan", "quickstart", "--detailed-exitcode", cwd=cwd)
    assert first.returncode == 2, first.stderr
    assert "Plan: 270 to rebuild (0 drifted), 22 to adopt, 0 to forget, 0 waiting." in first.stdout
    # Grouped by default: each group's image change once, its desktops named several to a line.
    assert "# group finance-win11  img-win10-2025-06 -> img-win11-2026-11 (private)" in first.stdout
    assert re.search(r"~ rebuild \[not_recorded\] \(10\): fin-0001, fin-0002, ", first.stdout)
    assert max(len(line) for line in first.stdout.splitlines()) <= 100
    full = run(reconciler_command, "plan", "quickstart", "--full", cwd=cwd)
    assert re.search(r"~ rebuild\s+fin-0001-desk \(fin-0001\)\s+img-win10-2025-06 -> img-win11-2026-11", full.stdout)
    assert re.search(r"\+ adopt\s+fin-0009-desk \(fin-0009\)", full.stdout)
    assert not (quickstart / ".reconciler" / "state.json").exists()  # plan never writes the state

    applied = run(reconciler_command, "apply", "quickstart", "--auto-approve", cwd=cwd)
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete: 270 rebuilds submitted" in applied.stdout
    state = state_of(quickstart)
    rebuilt = [r for r in state["desktops"].values() if r.get("job")]
    assert len(rebuilt) == 270 and all(r["job"]["id"] for r in rebuilt)
    assert set(state["jobs"]) == {r["job"]["id"] for r in rebuilt}
    assert not (quickstart / ".reconciler" / "state.json.journal").exists()

    after = run(reconciler_command, "plan", "quickstart", "--detailed-exitcode", cwd=cwd)
    assert after.returncode == 0, after.stdout + after.stderr

    waited = run(reconciler_command, "jobs", "-m", "quickstart", "--wait", cwd=cwd)
    assert waited.returncode == 0 and "Jobs: 8 SUCCESS" in waited.stdout, waited.stdout + waited.stderr

    labs = quickstart / "labs.yaml"
    labs.write_text(labs.read_text().replace("img-win11-2026-11", "img-win10-2025-06"))
    changed = run(reconciler_command, "plan", "quickstart", "--detailed-exitcode", "--json", cwd=cwd)
    assert changed.returncode == 2
    changes = json.loads(changed.stdout)["changes"]
    assert len(changes) == 120
    assert {(c["group"], c["action"], c["reason"]) for c in changes} == {("training-lab", "rebuild", "image_changed")}


def test_saved_plan_is_refused_once_the_state_moved_on(quickstart: Path, reconciler_command: list[str]) -> None:
    cwd = quickstart.parent
    assert run(reconciler_command, "apply", "quickstart", "--auto-approve", "--target", "finance-win11", cwd=cwd).returncode == 0
    saved = run(reconciler_command, "plan", "quickstart", "-o", "plan.json", cwd=cwd)
    assert saved.returncode == 0 and "Saved the plan to plan.json" in saved.stdout
    moved = run(reconciler_command, "state", "rm", "fin-0001-desk", "-m", "quickstart", cwd=cwd)
    assert moved.returncode == 0, moved.stderr
    refused = run(reconciler_command, "apply", "plan.json", cwd=cwd)
    assert refused.returncode == 1
    assert "Error: the plan is stale" in refused.stderr and "run `reconciler plan -o` again" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_saved_plan_applies_exactly_what_was_reviewed(quickstart: Path, reconciler_command: list[str]) -> None:
    cwd = quickstart.parent
    assert run(reconciler_command, "plan", "quickstart", "--target", "finance-win11", "-o", "plan.json", cwd=cwd).returncode == 0
    shown = run(reconciler_command, "show", "plan.json", "--json", cwd=cwd)
    reviewed = {c["desktop_id"] for c in json.loads(shown.stdout)["changes"] if c["action"] == "rebuild"}
    assert len(reviewed) == 10
    # The manifests change after review: the plan is refused, before the state is touched...
    engineering = quickstart / "engineering.yaml"
    engineering.write_text(engineering.read_text().replace("img-ubuntu-24-04", "img-ubuntu-22-04"))
    refused = run(reconciler_command, "apply", "plan.json", "--json", cwd=cwd)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == "Error: the manifests changed since plan.json was made (engineering.yaml)\n"
    assert not (quickstart / ".reconciler" / "state.json").exists()
    # ...and, told not to compare, it still does exactly what was reviewed.
    applied = run(reconciler_command, "apply", "plan.json", "--json", "--no-manifest-check", cwd=cwd)
    assert applied.returncode == 0, applied.stderr
    assert "applied without comparing it with the manifests" in applied.stderr
    events = [json.loads(line) for line in applied.stdout.splitlines()]
    submitted = {i for e in events if e["event"] == "batch_submitted" for i in e["desktop_ids"]}
    assert submitted == reviewed
    assert events[0]["event"] == "plan" and events[-1]["event"] == "summary"
    again = run(reconciler_command, "apply", "plan.json", "--no-manifest-check", cwd=cwd)
    assert again.returncode == 1 and "stale" in again.stderr


def test_modified_plan_file_is_refused(quickstart: Path, reconciler_command: list[str]) -> None:
    cwd = quickstart.parent
    assert run(reconciler_command, "plan", "quickstart", "-o", "plan.json", cwd=cwd).returncode == 0
    plan_file = cwd / "plan.json"
    document = json.loads(plan_file.read_text())
    document["changes"] = document["changes"][:1]
    plan_file.write_text(json.dumps(document))
    refused = run(reconciler_command, "apply", "plan.json", cwd=cwd)
    assert refused.returncode == 1 and "was modified after it was written" in refused.stderr
    assert not (quickstart / ".reconciler" / "state.json").exists()


def test_a_saved_plan_applies_to_its_own_state_from_any_directory(quickstart: Path, reconciler_command: list[str]) -> None:
    cwd = quickstart.parent
    assert run(reconciler_command, "plan", "quickstart", "--target", "finance-win11", "-o", "plan.json", cwd=cwd).returncode == 0
    elsewhere = cwd / "elsewhere"
    elsewhere.mkdir()
    applied = run(reconciler_command, "apply", "../plan.json", cwd=elsewhere)
    assert applied.returncode == 0, applied.stderr
    assert (quickstart / ".reconciler" / "state.json").exists()
    assert not (elsewhere / ".reconciler").exists()
