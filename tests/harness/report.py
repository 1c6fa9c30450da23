"""Running many harness trials and reporting them: seeds and sizes from the environment, trials
in parallel, a one-line-per-trial table for ``bench/`` and a few summary lines for pytest.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from harness.kills import FINAL_WRITE_LANDINGS, LANDINGS, Aim
from harness.trials import TrialReport

# Where kills must land over a full crash run (the moments docs/architecture.md says apply survives).
REQUIRED_LANDINGS = {
    "planning": {"planning"},
    "mid-batch (a rebuild call on the wire)": {"mid-call"},
    "between journal records (no call open)": {"between-calls", "recording"},
    "waiting for jobs": {"waiting"},
    "the final state write": set(FINAL_WRITE_LANDINGS),
}
# What to aim at when a moment was missed: timing on a slow runner can make random aims miss one.
AIMS_FOR = {
    "planning": (Aim.PLANNING,),
    "mid-batch (a rebuild call on the wire)": (Aim.MID_CALL,),
    "between journal records (no call open)": (Aim.RECORDS,),
    "waiting for jobs": (Aim.WAITING,),
    "the final state write": (Aim.FINAL_WRITE, Aim.STATE_SWAP),
}
# Extra trials aimed at one missed moment before the harness gives up on hitting it.
MAX_AIMED_TRIALS = 5


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


@dataclass(frozen=True)
class Sizing:
    """How big a harness run is: ``{prefix}_TRIALS``, ``_DESKTOPS``, ``_SEED`` (the first seed;
    trials use consecutive seeds) and ``RECONCILER_HARNESS_WORKERS`` (trials run at once)."""

    trials: int
    desktops: int
    first_seed: int
    workers: int

    @classmethod
    def from_env(cls, prefix: str, *, trials: int, desktops: int, seed: int = 1) -> Sizing:
        return cls(env_int(f"{prefix}_TRIALS", trials), env_int(f"{prefix}_DESKTOPS", desktops),
                   env_int(f"{prefix}_SEED", seed), env_int("RECONCILER_HARNESS_WORKERS", 2))

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.trials))


def run_trials(trial: Callable[[int, int, Path], TrialReport], sizing: Sizing, root: Path,
               on_report: Callable[[TrialReport], None] = lambda r: None) -> tuple[list[TrialReport], float]:
    """Every seed's trial (``sizing.workers`` at a time), in seed order, and the wall time.
    ``on_report`` sees each report as its trial ends, on the calling thread."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, sizing.workers)) as pool:
        futures = [pool.submit(trial, seed, sizing.desktops, root / f"seed-{seed}") for seed in sizing.seeds]
        for future in as_completed(futures):
            on_report(future.result())
        reports = [future.result() for future in futures]
    return reports, time.monotonic() - started


class Progress:
    """A line every ``every`` trials (and after the last), for runs that take minutes."""

    def __init__(self, kind: str, total: int, show: Callable[[str], None], every: int = 10) -> None:
        self.kind, self.total, self.show, self.every = kind, total, show, every
        self.done, self.failing = 0, 0
        self.started = time.monotonic()

    def __call__(self, report: TrialReport) -> None:
        self.done += 1
        self.failing += bool(report.problems)
        if self.done % self.every == 0 or self.done == self.total:
            self.show(f"{self.kind}: {self.done}/{self.total} trials done, {self.failing} failing, "
                      f"{time.monotonic() - self.started:.0f}s")


def aim_at_missed_landings(trial: Callable[[int, int, Path, Sequence[Aim]], TrialReport], reports: Sequence[TrialReport],
                           sizing: Sizing, root: Path) -> list[TrialReport]:
    """Extra trials, seeded after the others, whose kills are all aimed at a moment no kill
    landed in: random aims miss one now and then (on a slow runner more often), and a moment
    the harness never hit is one it did not prove. Each moment gets a few tries."""
    extra: list[TrialReport] = []
    for name in missing_landings(reports):
        for _ in range(MAX_AIMED_TRIALS):
            seed = sizing.first_seed + sizing.trials + len(extra)
            extra.append(trial(seed, sizing.desktops, root / f"aimed-{seed}", AIMS_FOR[name]))
            if REQUIRED_LANDINGS[name] & set(extra[-1].landings()):
                break
    return extra


def missing_landings(reports: Iterable[TrialReport]) -> list[str]:
    landed = set().union(*(r.landings() for r in reports))
    return [name for name, landings in REQUIRED_LANDINGS.items() if not landed & landings]


def failures(reports: Iterable[TrialReport], env_prefix: str) -> str:
    """Every failing trial with its problems and how to run it alone; empty when all passed."""
    lines = []
    for r in reports:
        if r.problems:
            lines.append(f"seed {r.seed} ({r.groups}; kills {[k.landing for k in r.kills]}; files in {r.directory}):")
            lines += [f"  - {p}" for p in r.problems[:8]]
            lines.append(f"  rerun: {env_prefix}_SEED={r.seed} {env_prefix}_TRIALS=1 {env_prefix}_DESKTOPS={r.desktops}")
    return "\n".join(lines)


def summary(reports: Sequence[TrialReport], seconds: float) -> list[str]:
    """A few lines for the terminal: trial count, seeds, kills and where they landed, figures."""
    if not reports:
        return []
    kind = reports[0].kind
    kills: Counter[str] = Counter()
    for r in reports:
        kills.update(r.landings())
    runs = [r.runs_to_converge for r in reports]
    lines = [
        (f"{kind}: {len(reports)} trials, seeds {seed_ranges([r.seed for r in reports])}, {reports[0].desktops} desktops each, "
         f"{seconds:.0f}s wall; failing trials: {sum(1 for r in reports if r.problems)}"),
        (f"{kind}: apply runs to converge max {max(runs)}, mean {sum(runs) / len(runs):.2f}, failed runs {sum(r.failed_runs for r in reports)}; "
         f"rebuilds {sum(r.rebuilds for r in reports)}, jobs {sum(r.jobs for r in reports)}, "
         f"API retries {sum(r.retries for r in reports)}, lost answers {sum(r.lost_answers for r in reports)}"),
    ]
    if kills:
        landed = ", ".join(f"{name} {kills[name]}" for name in LANDINGS if kills[name])
        lines.append(f"{kind}: {sum(kills.values())} kills landed: {landed}")
    relayed: Counter[str] = sum((r.relay_faults for r in reports), Counter())
    if relayed:
        met = ", ".join(f"{mode} {count}" for mode, count in sorted(relayed.items()))
        lines.append(f"{kind}: rebuild calls faulted by the relay ({sum(1 for r in reports if r.relay_faults)} trials): {met}")
    return lines


def table(reports: Iterable[TrialReport]) -> str:
    header = (f"{'seed':>6} {'desktops':>8} {'kills':>5} {'runs':>4} {'failed':>6} {'rebuilds':>8} {'jobs':>5} "
              f"{'retries':>7} {'lost':>4} {'relay':>5} {'secs':>6}  {'ok':<4} kills landed / groups")
    rows = [header, "-" * len(header)]
    for r in reports:
        landed = ",".join(k.landing for k in r.kills) or "-"
        rows.append(f"{r.seed:>6} {r.desktops:>8} {sum(r.landings().values()):>5} {r.runs_to_converge:>4} {r.failed_runs:>6} "
                    f"{r.rebuilds:>8} {r.jobs:>5} {r.retries:>7} {r.lost_answers:>4} {sum(r.relay_faults.values()):>5} {r.seconds:>6.1f}  "
                    f"{'FAIL' if r.problems else 'ok':<4} {landed}  [{r.groups}]")
    return "\n".join(rows)


def seed_ranges(values: Sequence[int]) -> str:
    """1,2,3,7 -> '1-3, 7'."""
    ordered = sorted(values)
    parts: list[str] = []
    start = prev = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ", ".join(parts)


def bench_main(trial: Callable[[int, int, Path], TrialReport], prefix: str, argv: Sequence[str] | None, *,
               trials: int, desktops: int) -> int:
    """The ``bench/`` entry point: run the harness at any size, print a row per trial as it
    finishes, then the summary; keep the files of failing trials. Exit 1 if any trial failed."""
    import argparse
    import shutil
    import tempfile

    defaults = Sizing.from_env(prefix, trials=trials, desktops=desktops)
    parser = argparse.ArgumentParser(description=f"Run the {prefix.split('_')[-1].lower()} harness and print its figures.")
    parser.add_argument("--trials", type=int, default=defaults.trials)
    parser.add_argument("--desktops", type=int, default=defaults.desktops)
    parser.add_argument("--seed", type=int, default=defaults.first_seed, help="first seed; trials use consecutive seeds")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="trials run at once")
    parser.add_argument("--keep", action="store_true", help="keep every trial's files, not only failing ones")
    args = parser.parse_args(argv)
    sizing = Sizing(args.trials, args.desktops, args.seed, args.workers)
    root = Path(tempfile.mkdtemp(prefix=f"{prefix.lower()}-"))
    header, rule = table([]).splitlines()
    print(header, rule, sep="\n", flush=True)
    reports, seconds = run_trials(trial, sizing, root, on_report=lambda r: print(table([r]).splitlines()[-1], flush=True))
    print(rule, *summary(reports, seconds), sep="\n")
    failed = failures(reports, prefix)
    if failed:
        print(failed)
    for report in reports:
        if not (report.problems or args.keep):
            shutil.rmtree(report.directory, ignore_errors=True)
    if failed or args.keep:
        print(f"files: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0
