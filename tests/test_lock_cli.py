"""The state lock through the CLI: a second apply exits 3 naming the holder; force-unlock frees it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.state import LocalStateStore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    target = tmp_path / "qs"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".reconciler"))
    settings = target / "settings.yaml"
    settings.write_text(settings.read_text().replace("poll_interval_seconds: 0.5", "poll_interval_seconds: 0.1"))
    return target


def run(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)


def test_second_apply_while_another_runs_exits_3_and_names_it(quickstart: Path, reconciler_command: list[str]) -> None:
    # The first apply waits for 2-second jobs, holding the lock meanwhile.
    first = subprocess.Popen([*reconciler_command, "apply", str(quickstart), "--auto-approve", "--wait"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.stderr is not None
    submitted = next((line for line in first.stderr if "submitted (job" in line), "")
    assert submitted, "the first apply submitted nothing"  # it holds the lock from before the first call
    second = run(reconciler_command, "apply", str(quickstart), "--auto-approve")
    first_out, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 3, second.stdout + second.stderr
    assert second.stderr.startswith("Error: the state at ")
    assert f"(pid {first.pid})" in second.stderr and "operation apply" in second.stderr
    assert "reconciler force-unlock" in second.stderr and "Traceback" not in second.stderr


def test_force_unlock_with_the_lock_id_releases_it(quickstart: Path, reconciler_command: list[str]) -> None:
    store = LocalStateStore(quickstart / ".reconciler" / "state.json")
    held = store.lock("apply")  # a run that hangs: this test process
    locked = run(reconciler_command, "apply", str(quickstart), "--auto-approve")
    assert locked.returncode == 3 and held.id in locked.stderr and held.who in locked.stderr
    lock_id = re.search(r"force-unlock (\S+)", locked.stderr).group(1)  # type: ignore[union-attr]
    assert lock_id == held.id

    wrong = run(reconciler_command, "force-unlock", "not-the-id", "-m", str(quickstart))
    assert wrong.returncode == 1 and f"has ID {held.id}" in wrong.stderr
    released = run(reconciler_command, "force-unlock", lock_id, "-m", str(quickstart))
    assert released.returncode == 0 and f"Released lock {lock_id}" in released.stdout
    applied = run(reconciler_command, "apply", str(quickstart), "--auto-approve")
    assert applied.returncode == 0, applied.stderr


def test_lock_timeout_waits_for_the_holder(quickstart: Path, reconciler_command: list[str]) -> None:
    store = LocalStateStore(quickstart / ".reconciler" / "state.json")
    held = store.lock("apply")
    waiting = subprocess.Popen([*reconciler_command, "apply", str(quickstart), "--auto-approve", "--lock-timeout", "30"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.stderr is not None
    announced = waiting.stderr.readline()  # said before it waits: no sleep needed to know it waits
    assert announced.startswith("Waiting up to 30s for the state lock held by ") and held.id in announced
    assert waiting.poll() is None
    store.unlock(held.id)
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
