"""Fault soak, at any size: apply a large simulated fleet while 10% of API calls answer HTTP 500,
10% answer 429, 2% lose their connection before processing and 2% after; re-run until converged
and check exactly-once rebuilds, no lost job_id and a valid state (the same harness as
``tests/test_fault_soak.py``).

Run: ``python bench/fault_soak.py [--desktops 10000] [--trials 3] [--seed 1] [--workers 1] [--keep]``.
Prints one row per trial (apply runs to converge, failed runs, rebuilds, jobs, API retries, lost
answers resolved, seconds), then the totals. Exits 1 if any trial failed, keeping its files.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.report import bench_main
from harness.trials import soak_trial

if __name__ == "__main__":
    sys.exit(bench_main(soak_trial, "RECONCILER_SOAK", sys.argv[1:], trials=3, desktops=2000))
