"""Fault soak, proven: 2,000 desktops applied while the simulator answers 10% of API calls with
HTTP 500 and 10% with 429, and drops 2% of connections before processing and 2% after, and a
fault relay in front of it mangles every 6th rebuild call, in each of its modes in turn. Re-runs
are allowed; at the end every desktop was rebuilt exactly once, no job_id is missing from the
state, nothing is left UNKNOWN, and ``plan --detailed-exitcode`` exits 0.

Sized for CI (one 2,000-desktop trial); larger runs: ``bench/fault_soak.py``, or
``RECONCILER_SOAK_DESKTOPS``, ``RECONCILER_SOAK_TRIALS`` and ``RECONCILER_SOAK_SEED``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from harness.relay import Fault
from harness.report import Progress, Sizing, failures, run_trials, summary
from harness.trials import soak_trial

SIZING = Sizing.from_env("RECONCILER_SOAK", trials=1, desktops=2000)


def test_apply_converges_exactly_once_through_injected_faults(tmp_path: Path, harness_report: list[str],
                                                              harness_progress: Callable[[str], None]) -> None:
    reports, seconds = run_trials(soak_trial, SIZING, tmp_path, on_report=Progress("soak", SIZING.trials, harness_progress))
    harness_report.extend(summary(reports, seconds))
    problems = failures(reports, "RECONCILER_SOAK")
    assert not problems, f"{sum(1 for r in reports if r.problems)} of {len(reports)} soak trials failed:\n{problems}"
    # The faults must really have been met, or the soak proves nothing.
    assert all(r.retries > 0 for r in reports), [(r.seed, r.retries) for r in reports]
    assert sum(r.lost_answers for r in reports) > 0, "no rebuild call lost its answer"
    relayed: Counter[str] = sum((r.relay_faults for r in reports), Counter())
    assert set(relayed) == {str(mode) for mode in Fault}, f"relay modes met: {dict(relayed)}"
