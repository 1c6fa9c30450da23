"""The two harness flows — crash trials and the fault soak.

A crash trial: serve a fresh simulated fleet, SIGKILL ``reconciler apply`` one to four times at
aimed moments (checking the files after every kill), re-run until converged, then check the
cloud and the state against each other. The soak: the same convergence on a large fleet while
every API call may get an HTTP 500, a 429, or lose its connection before or after processing.
Half the crash trials and every soak also reach the simulator through a fault relay that plays
a gateway mangling rebuild calls (answered 504 and forwarded late, garbled 200s, hangs, drops).
Both return a ``TrialReport``; a trial that breaks a rule reports problems instead of raising,
so one run of many shows every failing seed.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import TrialBackend
from harness.kills import NOT_KILLED, Aim, Kill, kill_run
from harness.relay import Fault, FaultRelay
from harness.world import (
    Cli,
    GroupSpec,
    ServedSimulator,
    converged_problems,
    durable_problems,
    fleet_document,
    write_manifests,
)

SOAK_FAULTS = {"error_rate": 0.10, "throttle_rate": 0.10, "drop_before_rate": 0.02, "drop_after_rate": 0.02}
# A third of the crash trials also lose answers and meet errors, so kills land on runs that are
# resolving lost calls and retrying, too.
CRASH_FAULTS = {"error_rate": 0.05, "throttle_rate": 0.05, "drop_before_rate": 0.03, "drop_after_rate": 0.03}
MAX_CONVERGE_RUNS = 8
# The share of rebuild calls the relay faults in the crash trials that have one; the soak faults
# every SOAK_RELAY_EVERY-th call, so each mode is met even in one small trial.
CRASH_RELAY_RATE = 0.15
SOAK_RELAY_EVERY = 6


@dataclass(frozen=True)
class RelayFaults:
    """Which rebuild calls a trial's relay faults (see ``FaultRelay``)."""

    rate: float = 0.0
    every: int = 0

    def start(self, upstream: str, seed: int) -> FaultRelay:
        return FaultRelay(upstream, tuple(Fault), rate=self.rate, every=self.every, seed=seed)


class NotConverged(AssertionError):
    pass


@dataclass
class TrialReport:
    kind: str
    seed: int
    desktops: int
    directory: Path
    groups: str = ""
    kills: list[Kill] = field(default_factory=list)
    runs_to_converge: int = 0
    failed_runs: int = 0  # convergence runs that exited non-zero before the one that converged
    rebuilds: int = 0
    jobs: int = 0
    retries: int = 0  # API calls retried after a 5xx, a 429 or a connection that failed
    lost_answers: int = 0  # rebuild calls whose answer was lost, resolved from the live API
    relay_faults: Counter[str] = field(default_factory=Counter)  # rebuild calls the relay faulted, by mode
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def landings(self) -> Counter[str]:
        return Counter(k.landing for k in self.kills if k.landing not in NOT_KILLED)


def random_groups(rng: random.Random, desktops: int) -> list[GroupSpec]:
    """Two or three groups sharing ``desktops``, with varied batches, canaries and in-flight caps."""
    names = ["alpha", "bravo", "charlie"][: rng.choice([2, 3])]
    cuts = sorted(rng.sample(range(20, desktops - 20), len(names) - 1))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, desktops], strict=False)]
    return [
        GroupSpec(name, size, batch_size=rng.choice([10, 25, 50, 100]), canary=rng.choice([0, 0, 2, 5]),
                  max_in_flight=rng.choice([None, None, 40, 75]), current=rng.randint(0, 4))
        for name, size in zip(names, sizes, strict=False)
    ]


def soak_groups(desktops: int) -> list[GroupSpec]:
    """Big batches, small batches behind a canary, and tiny batches under an in-flight cap: many
    calls, so many faults, on every path of the applier."""
    third = desktops // 3
    return [GroupSpec("north", third, batch_size=100, current=3),
            GroupSpec("south", third, batch_size=20, canary=5),
            GroupSpec("west", desktops - 2 * third, batch_size=10, max_in_flight=200)]


def converge(cli: Cli, report: TrialReport, *, max_runs: int = MAX_CONVERGE_RUNS) -> None:
    """Re-run ``apply --wait`` until it succeeds, every job has finished and ``plan
    --detailed-exitcode`` says there is nothing left to do. An apply that exits 0 while the plan
    right after it still has rebuilds claimed a success it did not have: a problem too."""
    manifests = str(cli.manifests)
    outputs: list[str] = []
    for run in range(1, max_runs + 1):
        applied = cli.run(cli.apply_args(wait=True))
        if applied.returncode != 0:
            report.failed_runs += 1
            outputs.append(f"apply exit {applied.returncode}: {applied.stderr.strip()[-400:]}")
            continue
        after = cli.run(["plan", manifests, "--detailed-exitcode"])
        if after.returncode == 2:
            summary = next((line for line in after.stdout.splitlines() if line.startswith("Plan:")), "")
            report.problems.append(f"apply run {run} exited 0, yet the next plan has changes: {summary}")
        waited = cli.run(["jobs", "-m", manifests, "--wait"])
        final = cli.run(["plan", manifests, "--detailed-exitcode"])
        if waited.returncode == 0 and final.returncode == 0:
            report.runs_to_converge = run
            return
        outputs.append(f"jobs exit {waited.returncode}, plan exit {final.returncode}: {final.stderr.strip()[-300:]}")
    raise NotConverged(f"not converged after {max_runs} apply runs:\n" + "\n".join(outputs))


def crash_trial(seed: int, desktops: int, directory: Path, aims: Sequence[Aim] = tuple(Aim), backend: str = "local") -> TrialReport:
    """One seeded trial: one to four kills, each aimed at one of ``aims``, then convergence and
    every check, with the state on ``backend`` (local, postgres or s3)."""
    rng = random.Random(seed)
    groups = random_groups(rng, desktops)
    report = TrialReport("crash", seed, desktops, directory, " ".join(g.describe() for g in groups))
    report.groups += "" if set(aims) == set(Aim) else f" aimed:{','.join(aims)}"

    def kill_then_converge(cli: Cli) -> None:
        for _ in range(rng.randint(1, 4)):
            aim = rng.choice(list(aims))
            kill = kill_run(cli, aim, rng, wait=aim is Aim.WAITING or rng.random() < 0.5)
            report.kills.append(kill)
            report.problems += [f"after a kill at {kill.landing}: {p}" for p in durable_problems(cli.view)]
            if kill.landing in NOT_KILLED:
                break  # the run ended first: later kills would mostly hit runs with nothing to do
        converge(cli, report)

    faults = CRASH_FAULTS if rng.random() < 1 / 3 else {}
    report.groups += " +faults" if faults else ""
    # Its own generator: the relay leaves the groups, kills and faults of each seed as they were.
    relay = RelayFaults(rate=CRASH_RELAY_RATE) if random.Random(-seed).random() < 0.5 else None
    report.groups += " +relay" if relay else ""
    report.groups += f" @{backend}" if backend != "local" else ""
    fleet = fleet_document(seed, groups, job_seconds=rng.choice([0.3, 0.6, 1.0]), faults=faults)
    _run(report, fleet, groups, kill_then_converge, poll_interval=0.2, relay=relay, backend=backend)
    return report


def soak_trial(seed: int, desktops: int, directory: Path, faults: dict[str, float] = SOAK_FAULTS) -> TrialReport:
    """A large fleet applied while every API call may fail, be throttled or lose its connection."""
    groups = soak_groups(desktops)
    report = TrialReport("soak", seed, desktops, directory, " ".join(g.describe() for g in groups))
    fleet = fleet_document(seed, groups, job_seconds=1.0, faults=faults)
    _run(report, fleet, groups, lambda cli: converge(cli, report, max_runs=12), poll_interval=0.5,
         relay=RelayFaults(every=SOAK_RELAY_EVERY))
    return report


def _run(report: TrialReport, fleet: dict[str, Any], groups: Sequence[GroupSpec], body: Callable[[Cli], None], *,
         poll_interval: float, relay: RelayFaults | None = None, backend: str = "local") -> None:
    """Serve the fleet (behind a fault relay, if given), run the trial's body against it with the
    state on ``backend``, then check everything."""
    started = time.monotonic()
    state = TrialBackend.create(backend)
    sim = ServedSimulator(fleet, report.directory / "sim")
    front = relay.start(sim.url, report.seed) if relay else None
    try:
        url = front.url if front else sim.url
        cli = Cli(write_manifests(report.directory / "m", url, groups, poll_interval=poll_interval, state=state.settings), backend=state)
        body(cli)
        if front is not None:
            front.close()  # every late delivery has landed before the cloud is checked
            report.relay_faults.update({str(f): n for f, n in front.injected.items()})
        jobs = sim.jobs()
        report.jobs, report.rebuilds = len(jobs), sum(len(j["sub_jobs"]) for j in jobs)
        log = cli.log.read_text()
        report.retries = log.count("; retrying in ")
        report.lost_answers = log.count('"event":"batch_unknown"')
        report.problems += converged_problems(sim, cli.view, groups)
    except AssertionError as exc:  # NotConverged, or a kill that never found its moment
        report.problems.append(str(exc))
    finally:
        if front is not None:
            front.close()
        sim.stop()
        state.close()
        report.seconds = round(time.monotonic() - started, 1)
