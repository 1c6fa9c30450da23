"""A real full disk: the state directory on a tiny tmpfs that fills up in the middle of an apply.
Needs permission to mount (root in a container that allows it); skipped with the reason elsewhere.

The apply stops with one ``Error:`` line that names the journal and the jobs it submitted, each of
which the journal holds; once there is room again, the next apply folds the journal and carries
on, and in the end every desktop was rebuilt at most once and every job the simulator issued is
in the state.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.state import LocalStateStore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """The quickstart with its state on a 64 KiB tmpfs, all but 8 KiB of it taken."""
    root = tmp_path / "qs"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".reconciler"))
    settings = root / "settings.yaml"
    text = settings.read_text().replace("path: .reconciler/state.json", "path: disk/state.json")
    # The simulator is in-process: nothing is still on its way once a call returns, so the
    # desktops the stopped run left UNKNOWN may be looked up after a short horizon.
    text = text.replace("  api:\n", "  api:\n    timeout_seconds: 2\n    lost_call_horizon_seconds: 2\n")
    settings.write_text(text)
    disk = root / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    mounted = mount("-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(disk))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        (disk / "filler").write_bytes(b"\0" * 56 * 1024)
        yield root
    finally:
        assert subprocess.run(["umount", str(disk)], check=False).returncode == 0  # nothing left open on it


def apply(root: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, ["apply", str(root), "--auto-approve", *extra])


def test_a_disk_that_fills_up_during_apply_loses_no_job(tiny_disk: Path) -> None:
    store = LocalStateStore(tiny_disk / "disk" / "state.json")
    stopped = apply(tiny_disk, "--no-wait")
    assert stopped.exit_code == 1
    error = stopped.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: cannot append to the journal {store.journal_path}: No space left on device.")
    assert "internal error" not in stopped.stderr and "Traceback" not in stopped.stderr
    journalled = {r["job_id"] for r in store.replay() if r.get("type") == "submitted"}
    named = error.split("(", 1)[1].split(")", 1)[0].split(", ") if "This run submitted" in error else []
    assert set(named) <= journalled  # every job the message names is in the journal

    assert mount("-o", "remount,size=4m", str(tiny_disk / "disk")).returncode == 0  # room again
    finished = apply(tiny_disk, "--wait")
    assert finished.exit_code == 0, finished.stderr
    simulator = json.loads((tiny_disk / ".reconciler" / "simulator.json").read_text())["simulator"]
    state = store.read()
    assert {job["id"] for job in simulator["jobs"]} <= set(state.jobs)
    assert all(desktop["rebuild_count"] <= 1 for desktop in simulator["desktops"])
    assert not store.journal_path.exists()
    assert "No changes" in CliRunner().invoke(main, ["plan", str(tiny_disk)]).stdout


def test_a_read_only_state_directory_is_one_clear_error(tiny_disk: Path) -> None:
    disk = tiny_disk / "disk"
    assert mount("-o", "remount,size=4m", str(disk)).returncode == 0
    assert apply(tiny_disk, "--no-wait").exit_code == 0
    assert mount("-o", "remount,ro", str(disk)).returncode == 0
    before = (disk / "state.json").read_bytes()
    refused = CliRunner().invoke(main, ["state", "rm", "fin-0001-desk", "-m", str(tiny_disk)])
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(f"Error: cannot lock the state at {disk / 'state.json'}") and "Read-only file system" in refused.stderr
    assert (disk / "state.json").read_bytes() == before
    mount("-o", "remount,rw", str(disk))  # so that the fixture can unmount it
