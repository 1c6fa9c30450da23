"""What a watch cycle found, as values the metrics, ``/api/status`` and the status page read.
Pure: a plan, states and the moment in; frozen values and JSON out.

Every managed desktop has one status: ``current`` (runs the desired image, nothing to do),
``pending`` (a rebuild is due now), ``waiting`` (a rebuild is running, or is held back by a
window or a connected user), ``drifted`` (changed outside reconciler) or ``failed`` (its last
rebuild failed) — the last two whether their rebuild is due now or held back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from reconciler.model import Action, Change, Reason
from reconciler.plan import Plan
from reconciler.rollout.windows import describe, is_open, next_opening
from reconciler.state import State

STATUSES = ("current", "pending", "waiting", "drifted", "failed")
RECENT_JOBS = 10
RECENT_FAILURES = 20


@dataclass(frozen=True)
class GroupStatus:
    name: str
    image_id: str
    counts: Mapping[str, int]
    window: str | None = None
    window_open: bool | None = None
    next_opening: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class JobLine:
    id: str
    group: str
    status: str
    desktops: int
    submitted_at: str
    finished_at: str | None


@dataclass(frozen=True)
class FailureLine:
    desktop_id: str
    name: str | None
    group: str
    reason: str
    at: str


@dataclass(frozen=True)
class FleetStatus:
    groups: tuple[GroupStatus, ...] = ()
    jobs: tuple[JobLine, ...] = ()
    failures: tuple[FailureLine, ...] = ()
    job_counts: Mapping[str, int] = field(default_factory=dict)
    plan_changes: Mapping[tuple[str, str, str], int] = field(default_factory=dict)  # (group, action, reason)


@dataclass(frozen=True)
class CycleReport:
    number: int
    started_at: str
    finished_at: str
    duration_seconds: float
    ok: bool
    mode: str
    error: str | None = None
    manifest_error: str | None = None  # the cycle went on with the last good manifests
    commit: str | None = None
    lock_busy: bool = False
    applied: bool = False
    summary: Mapping[str, Any] = field(default_factory=dict)


def desktop_status(change: Change) -> str:
    """The status a change gives its desktop (``adopt``: it already runs the desired image)."""
    if change.action is Action.ADOPT:
        return "current"
    reason = change.pending if change.action is Action.WAIT and change.pending else change.reason
    if reason is Reason.DRIFT:
        return "drifted"
    if reason is Reason.RETRY_FAILED:
        return "failed"
    return "pending" if change.action is Action.REBUILD else "waiting"


def _statuses(plan: Plan, state: State, submitted: frozenset[str], failed: frozenset[str]) -> dict[str, Counter[str]]:
    names = {g.name for g in plan.groups}
    by_desktop = {i: (r.group, "current") for i, r in state.desktops.items() if r.group in names}
    for change in plan.changes:
        if change.action is Action.FORGET or change.group is None:
            by_desktop.pop(change.desktop_id, None)
            continue
        by_desktop[change.desktop_id] = (change.group, desktop_status(change))
    counts: dict[str, Counter[str]] = {g.name: Counter() for g in plan.groups}
    for desktop_id, (group, status) in by_desktop.items():
        if desktop_id in failed:
            status = "failed"
        elif desktop_id in submitted:
            status = "waiting"  # its rebuild started in this cycle
        counts[group][status] += 1
    return counts


def group_statuses(plan: Plan, state: State, now: datetime, submitted: frozenset[str] = frozenset(),
                   failed: frozenset[str] = frozenset()) -> tuple[GroupStatus, ...]:
    counts = _statuses(plan, state, submitted, failed)
    result = []
    for group in sorted(plan.groups, key=lambda g: g.name):
        window = group.rollout.window
        opened = is_open(window, now) if window is not None else None
        upcoming = next_opening(window, now).isoformat(timespec="minutes") if window is not None and not opened else None
        result.append(GroupStatus(group.name, group.image.id, {s: counts[group.name][s] for s in STATUSES},
                                  describe(window) if window else None, opened, upcoming))
    return tuple(result)


def recent_jobs(state: State, limit: int = RECENT_JOBS) -> tuple[JobLine, ...]:
    jobs = sorted(state.jobs.values(), key=lambda j: (j.submitted_at, j.id), reverse=True)[:limit]
    return tuple(JobLine(j.id, j.group, j.status, len(j.desktop_ids), j.submitted_at, j.finished_at) for j in jobs)


def recent_failures(state: State, refused: Mapping[str, str], now: datetime, limit: int = RECENT_FAILURES) -> tuple[FailureLine, ...]:
    """Desktops whose last rebuild failed, and rebuild calls refused in this cycle."""
    lines = [
        FailureLine(i, r.name, r.group, r.job.fail_reason or "rebuild FAILED", r.job.finished_at or r.job.submitted_at)
        for i, r in state.desktops.items() if r.job is not None and r.job.status == "FAILED"
    ]
    at = now.isoformat(timespec="seconds")
    for desktop_id, reason in refused.items():
        record = state.desktops.get(desktop_id)
        if record is None or record.job is None or record.job.status != "FAILED":
            lines.append(FailureLine(desktop_id, record.name if record else None, record.group if record else "", reason, at))
    return tuple(sorted(lines, key=lambda f: (f.at, f.desktop_id), reverse=True)[:limit])


def plan_changes(plan: Plan) -> dict[tuple[str, str, str], int]:
    counted = Counter((c.group or "", c.action.value, c.reason.value) for c in plan.changes)
    return dict(counted)


def job_counts(state: State) -> dict[str, int]:
    return dict(Counter(j.status for j in state.jobs.values()))


def fleet_status(plan: Plan, before: State, after: State, now: datetime, *, submitted: frozenset[str] = frozenset(),
                 refused: Mapping[str, str] | None = None) -> FleetStatus:
    """``before``: the state the plan was made from; ``after``: the state once the cycle applied."""
    refused = refused or {}
    return FleetStatus(
        group_statuses(plan, before, now, submitted, frozenset(refused)),
        recent_jobs(after),
        recent_failures(after, refused, now),
        job_counts(after),
        plan_changes(plan),
    )


def status_json(fleet: FleetStatus, cycle: CycleReport | None, ready: bool, interval: float) -> dict[str, Any]:
    return {
        "format_version": 1,
        "ready": ready,
        "interval_seconds": interval,
        "last_cycle": asdict(cycle) if cycle else None,
        "groups": [{**asdict(g), "total": g.total} for g in fleet.groups],
        "jobs": {"by_status": dict(fleet.job_counts), "recent": [asdict(j) for j in fleet.jobs]},
        "failures": [asdict(f) for f in fleet.failures],
    }
