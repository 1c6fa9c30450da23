"""Crash-proof apply, proven: ``reconciler apply`` is SIGKILLed at aimed moments — while it
plans, with a rebuild call on the wire, between journal records, while it waits for jobs, and
during its final state write — then run again until converged. After every kill the state
must be a complete, schema-valid file and a leftover journal must fold; at the end every
desktop was rebuilt exactly once, every job the cloud issued is in the state, nothing is left
UNKNOWN, and ``plan --detailed-exitcode`` exits 0.

Sized for CI (30 seeded trials of 300 desktops); larger runs: ``bench/crash_trials.py``, or
``RECONCILER_CRASH_TRIALS``, ``RECONCILER_CRASH_DESKTOPS`` and ``RECONCILER_CRASH_SEED``.
"""

from __future__ import annotations

from pathlib import Path

from harness.report import (
    REQUIRED_LANDINGS,
    Sizing,
    failures,
    missing_landings,
    run_trials,
    summary,
)
from harness.trials import crash_trial

SIZING = Sizing.from_env("RECONCILER_CRASH", trials=30, desktops=300)
# Fewer trials than this (a single seed rerun) cannot be expected to hit every moment.
COVERAGE_TRIALS = 30


def test_apply_survives_sigkill_at_every_moment(tmp_path: Path, harness_report: list[str]) -> None:
    reports, seconds = run_trials(crash_trial, SIZING, tmp_path)
    harness_report.extend(summary(reports, seconds))
    problems = failures(reports, "RECONCILER_CRASH")
    assert not problems, f"{sum(1 for r in reports if r.problems)} of {len(reports)} crash trials failed:\n{problems}"
    if SIZING.trials >= COVERAGE_TRIALS:
        missing = missing_landings(reports)
        assert not missing, f"no kill landed in: {', '.join(missing)} (required: {', '.join(REQUIRED_LANDINGS)})"
