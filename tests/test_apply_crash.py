"""Crash-proof apply, proven: ``reconciler apply`` is SIGKILLed at aimed moments — while it
plans, with a rebuild call on the wire, between journal records, while it waits for jobs, and
during its final state write — then run again until converged. After every kill the state
must be a complete, schema-valid file and a leftover journal must fold; at the end every
desktop was rebuilt exactly once, every job the cloud issued is in the state, nothing is left
UNKNOWN, and ``plan --detailed-exitcode`` exits 0. Half the trials reach the simulator
through a fault relay that mangles 15% of rebuild calls (answered 504 and forwarded late,
garbled or job-less 200s, hung past the timeout, dropped before or after forwarding). A moment
no kill landed in gets a few extra trials aimed at it, so a slow runner still proves them all.
The harness prints a progress line every 10 trials (without ``-s`` too).

Sized for CI (30 seeded trials of 300 desktops); larger runs: ``bench/crash_trials.py``, or
``RECONCILER_CRASH_TRIALS``, ``RECONCILER_CRASH_DESKTOPS`` and ``RECONCILER_CRASH_SEED``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.report import (
    REQUIRED_LANDINGS,
    Progress,
    Sizing,
    aim_at_missed_landings,
    failures,
    missing_landings,
    run_trials,
    summary,
)
from harness.trials import crash_trial

SIZING = Sizing.from_env("RECONCILER_CRASH", trials=30, desktops=300)
# Fewer trials than this (a single seed rerun) cannot be expected to hit every moment.
COVERAGE_TRIALS = 30


def test_apply_survives_sigkill_at_every_moment(tmp_path: Path, harness_report: list[str],
                                                harness_progress: Callable[[str], None]) -> None:
    reports, seconds = run_trials(crash_trial, SIZING, tmp_path, on_report=Progress("crash", SIZING.trials, harness_progress))
    if SIZING.trials >= COVERAGE_TRIALS:
        aimed = aim_at_missed_landings(crash_trial, reports, SIZING, tmp_path)
        if aimed:
            harness_progress(f"crash: {len(aimed)} more trials aimed at moments no kill had landed in")
        reports += aimed
    harness_report.extend(summary(reports, seconds))
    problems = failures(reports, "RECONCILER_CRASH")
    assert not problems, f"{sum(1 for r in reports if r.problems)} of {len(reports)} crash trials failed:\n{problems}"
    if SIZING.trials >= COVERAGE_TRIALS:
        missing = missing_landings(reports)
        assert not missing, f"no kill landed in: {', '.join(missing)} (required: {', '.join(REQUIRED_LANDINGS)})"
        assert any(r.relay_faults for r in reports), "no rebuild call met a fault of the relay"
