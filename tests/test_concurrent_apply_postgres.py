"""Eight ``reconciler apply`` processes started at once on one PostgreSQL state, against one
served simulator: the lock lets one run at a time, every other run exits 3 naming the holder (or,
with ``--lock-timeout``, waits its turn and finds nothing left to do), and no desktop is rebuilt
twice."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.backends import TrialBackend
from harness.world import Cli, GroupSpec, ServedSimulator, fleet_document, reconciler_command, write_manifests

RUNS = 8
GROUPS = [GroupSpec("alpha", 60, batch_size=10), GroupSpec("bravo", 40, batch_size=25)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Cli, ServedSimulator]]:
    backend = TrialBackend.create("postgres")
    sim = ServedSimulator(fleet_document(7, GROUPS, job_seconds=0.5), tmp_path / "sim")
    try:
        manifests = write_manifests(tmp_path / "m", sim.url, GROUPS, state=backend.settings)
        yield Cli(manifests, backend=backend), sim
    finally:
        sim.stop()
        backend.close()


def run_at_once(cli: Cli, extra: list[str], directory: Path) -> list[tuple[int, str, str]]:
    """Start RUNS applies together; each one's exit code, stdout and stderr."""
    processes = []
    for number in range(RUNS):
        out, err = (directory / f"run-{number}.out").open("w+"), (directory / f"run-{number}.err").open("w+")
        args = [*reconciler_command(), "apply", str(cli.manifests), "--auto-approve", "--json", "--wait", *extra]
        processes.append((subprocess.Popen(args, env=cli.env, stdout=out, stderr=err, text=True), out, err))
    results = []
    for process, out, err in processes:
        code = process.wait(timeout=600)
        out.seek(0)
        err.seek(0)
        results.append((code, out.read(), err.read()))
        out.close()
        err.close()
    return results


def rebuilt_desktops(stdout: str) -> int:
    summary = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return sum(len(e.get("desktop_ids", [])) for e in summary if e.get("event") == "batch_submitted")


def assert_each_desktop_rebuilt_once(sim: ServedSimulator) -> None:
    counts = [d["rebuild_count"] for d in sim.desktops().values() if not d["name"].startswith("other-")]
    assert len(counts) == 100 and set(counts) == {1}, sorted(counts)


def test_eight_applies_at_once_one_holds_the_lock_the_others_exit_3(world: tuple[Cli, ServedSimulator], tmp_path: Path) -> None:
    cli, sim = world
    results = run_at_once(cli, [], tmp_path)
    codes = [code for code, _, _ in results]
    assert set(codes) <= {0, 3} and codes.count(0) >= 1, [(c, e[-300:]) for c, _, e in results]
    for code, _, err in results:
        if code == 3:
            assert "is locked" in err and "force-unlock" in err and "operation apply" in err
    # Only runs that held the lock submitted anything, and together exactly every desktop once.
    assert sum(rebuilt_desktops(out) for code, out, _ in results if code == 0) == 100
    assert all(rebuilt_desktops(out) == 0 for code, out, _ in results if code == 3)
    assert_each_desktop_rebuilt_once(sim)
    assert cli.run(["plan", str(cli.manifests), "--detailed-exitcode"]).returncode == 0
    assert cli.view.store().lock_info() is None


def test_eight_applies_with_a_lock_timeout_take_turns_and_find_nothing_left(world: tuple[Cli, ServedSimulator], tmp_path: Path) -> None:
    cli, sim = world
    results = run_at_once(cli, ["--lock-timeout", "300"], tmp_path)
    assert [code for code, _, _ in results] == [0] * RUNS, [e[-300:] for _, _, e in results]
    rebuilt = sorted(rebuilt_desktops(out) for _, out, _ in results)
    assert sum(rebuilt) == 100 and rebuilt.count(0) >= RUNS - 2  # the first run (or two) did it all
    assert_each_desktop_rebuilt_once(sim)
    assert cli.view.store().lock_info() is None
