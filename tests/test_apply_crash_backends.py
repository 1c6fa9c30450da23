"""The crash harness on the shared state backends: ``reconciler apply`` SIGKILLed at aimed
moments with its state in PostgreSQL and in an S3 bucket (moto's server), then run again until
converged. The same checks as ``test_apply_crash.py``: every desktop rebuilt exactly once, no
job id lost, nothing left UNKNOWN, the stored state schema-valid after every kill — and the lock
free after every kill on postgres (the killed run's session ends, and its advisory lock with it).
On s3 a killed run's lock object stays; the harness force-unlocks it as an operator would.

Sized for CI (10 seeded trials of 200 desktops on each backend); more:
``RECONCILER_BACKEND_CRASH_TRIALS``, ``RECONCILER_BACKEND_CRASH_DESKTOPS``, ``RECONCILER_BACKEND_CRASH_SEED``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from harness.backends import require_postgres
from harness.report import Sizing, failures, run_trials, summary
from harness.trials import crash_trial

SIZING = Sizing.from_env("RECONCILER_BACKEND_CRASH", trials=10, desktops=200)


@pytest.mark.parametrize("backend", ["postgres", "s3"])
def test_apply_on_a_shared_backend_survives_sigkill(backend: str, tmp_path: Path, harness_report: list[str]) -> None:
    if backend == "postgres":
        require_postgres()
    reports, seconds = run_trials(functools.partial(crash_trial, backend=backend), SIZING, tmp_path)
    harness_report.extend(f"[{backend}] {line}" for line in summary(reports, seconds))
    problems = failures(reports, "RECONCILER_BACKEND_CRASH")
    assert not problems, f"{sum(1 for r in reports if r.problems)} of {len(reports)} {backend} crash trials failed:\n{problems}"
    assert sum(len(r.kills) for r in reports) >= SIZING.trials  # every trial killed at least one run
