"""Crash harness, at any size: serve a simulated fleet per trial, SIGKILL ``reconciler apply``
at aimed moments, re-run until converged, and check exactly-once rebuilds, no lost job_id and a
valid state (the same harness as ``tests/test_apply_crash.py``).

Run: ``python bench/crash_trials.py [--trials 200] [--desktops 1000] [--seed 1] [--workers 2] [--keep]``.
Prints one row per trial (seed, kills that landed, apply runs to converge, rebuilds, jobs,
seconds, where each kill landed), then the totals. Exits 1 if any trial failed, keeping its files.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.report import bench_main
from harness.trials import crash_trial

if __name__ == "__main__":
    sys.exit(bench_main(crash_trial, "RECONCILER_CRASH", sys.argv[1:], trials=100, desktops=300))
