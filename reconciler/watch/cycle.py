"""One watch cycle: (git pull) → manifests (the last good set if they broke) → lock (report only
when busy) → refresh and plan → apply what ``--apply`` allows. Does file, process and network
I/O through the library (manifests, state store, client, applier) and ``git``.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.apply.engine import ApplyOptions, ApplyResult
from reconciler.connect import open_client
from reconciler.errors import ReconcilerError
from reconciler.manifest import load_manifests
from reconciler.model import Action, ManifestSet
from reconciler.plan import Plan
from reconciler.planner import PlanOptions
from reconciler.safety import mass_rebuild
from reconciler.session import Planned, Snapshot, StateTransaction, build_plan, snapshot, state_transaction, utc_now
from reconciler.state import StateLocked, StateStore, fold, open_store
from reconciler.watch import events
from reconciler.watch.events import Notice
from reconciler.watch.metrics import WatchMetrics
from reconciler.watch.policy import ApplyMode, narrow
from reconciler.watch.status import CycleReport, FleetStatus, fleet_status

# Long enough to ride out a `plan` or `state list` holding the lock; short enough that a
# replica that is not the applier reports within its cycle.
LOCK_TIMEOUT_SECONDS = 5.0
GIT_TIMEOUT_SECONDS = 120.0
_URL_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


class CycleError(ReconcilerError):
    """A cycle could not run (no manifests ever loaded, git failed, ...)."""


def refuse_mass_rebuild(plan: Plan) -> None:
    """The blast-radius guard of ``apply``: a watch never overrides it, a person does."""
    excess = mass_rebuild(plan)
    if excess is not None:
        raise CycleError(f"refusing to apply: {excess.describe()}. Nothing was sent. Review the plan and apply it "
                         "by hand (reconciler apply --allow-mass-rebuild) if it is right")


@dataclass(frozen=True)
class WatchConfig:
    path: str
    interval: float
    mode: ApplyMode
    git_pull: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    lock_timeout: float = LOCK_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Outcome:
    report: CycleReport
    fleet: FleetStatus | None = None
    plan: Plan | None = None  # the whole plan (not only what was applied): it says when to come back


@dataclass
class _Found:
    """What the reconcile step found, for the report."""

    plan: Plan
    fleet: FleetStatus
    lock_busy: bool = False
    applied: bool = False
    summary: dict[str, Any] = field(default_factory=dict)


def git_pull(path: str) -> str:
    """``git pull --ff-only`` in the manifest directory's repository; the commit now checked out."""
    where = Path(path)
    directory = str(where if where.is_dir() else where.parent)
    for args in (["pull", "--ff-only", "--quiet"], ["rev-parse", "HEAD"]):
        try:
            done = subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CycleError(f"git {args[0]} in {directory}: {exc}") from None
        if done.returncode != 0:
            detail = _URL_CREDENTIALS.sub(r"\1***@", done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "")
            raise CycleError(f"git {args[0]} in {directory} failed: {detail or f'exit {done.returncode}'}")
    return done.stdout.strip()


class Cycle:
    """Runs cycles one after another, remembering what a cycle needs from the last one: the
    last good manifests, which drift was already notified, which failure was."""

    def __init__(self, config: WatchConfig, metrics: WatchMetrics, notify: Callable[[Notice], None],
                 stop: threading.Event, on_event: Callable[[dict[str, Any]], None] = lambda e: None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.config = config
        self.metrics = metrics
        self.notify = notify
        self.stop = stop
        self.on_event = on_event
        self.clock = clock
        self.number = 0
        self.last_good: ManifestSet | None = None
        self._drifted: frozenset[str] = frozenset()
        self._failure: str | None = None

    def run(self) -> Outcome:
        self.number += 1
        started, began = self.clock(), time.monotonic()
        commit, problems, found = None, [], None
        manifest_error: str | None = None
        try:
            if self.config.git_pull:
                try:
                    commit = git_pull(self.config.path)
                except CycleError as exc:
                    problems.append(str(exc))  # reconcile what is checked out
            manifests, manifest_error = self._manifests()
            if manifest_error is not None:
                problems.append(manifest_error)
            found = self._reconcile(manifests)
        except ReconcilerError as exc:
            problems.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - a watch outlives a bug in one cycle
            problems.append(f"internal error: {type(exc).__name__}: {exc}")
        error = "; ".join(problems) or None
        self._failed(error)
        report = CycleReport(
            number=self.number, started_at=started.isoformat(timespec="seconds"),
            finished_at=self.clock().isoformat(timespec="seconds"), duration_seconds=round(time.monotonic() - began, 3),
            ok=error is None, mode=self.config.mode.value, error=error, manifest_error=manifest_error, commit=commit,
            lock_busy=bool(found and found.lock_busy), applied=bool(found and found.applied),
            summary=found.summary if found else {},
        )
        return Outcome(report, found.fleet if found else None, found.plan if found else None)

    def _manifests(self) -> tuple[ManifestSet, str | None]:
        """The manifests, or the last good ones and what is wrong with the new."""
        try:
            self.last_good = load_manifests([self.config.path])
        except ReconcilerError as exc:
            if self.last_good is None:
                raise
            return self.last_good, f"manifests: {exc} (reconciling with the last good manifests)"
        return self.last_good, None

    def _failed(self, error: str | None) -> None:
        """Notify a failure once, not at every cycle it repeats."""
        if error is not None and error != self._failure:
            self.notify(events.cycle_failed(error))
        self._failure = error

    def _reconcile(self, manifests: ManifestSet) -> _Found:
        store = open_store(manifests.settings, self.config.env)
        try:
            if self.config.mode is ApplyMode.NONE:
                return self._report_only(manifests, store)
            try:
                with state_transaction(store, lock_timeout=self.config.lock_timeout, operation="watch") as session:
                    return self._plan_and_apply(manifests, session)
            except StateLocked:
                found = self._report_only(manifests, store)
                found.lock_busy = True
                return found
        finally:
            # A store holds a database connection or a journal file: one cycle's, not the process's.
            close = getattr(store, "close", None)
            if callable(close):
                close()

    def _plan(self, manifests: ManifestSet, client: Any, base: Snapshot) -> Planned:
        now = self.clock()
        planned = build_plan(manifests, base, client, PlanOptions(now=now), now)
        drifted = {c.desktop_id: c for c in planned.plan.changes if c.drifted}
        new = [drifted[i] for i in sorted(set(drifted) - self._drifted)]
        if new:
            self.notify(events.drift_notice(new))
        self._drifted = frozenset(drifted)
        return planned

    def _report_only(self, manifests: ManifestSet, store: StateStore) -> _Found:
        snap = snapshot(store)
        with open_client(manifests.settings, self.config.env) as client:
            client.on_response(self.metrics.count_response)
            planned = self._plan(manifests, client, snap)
        state = fold(snap.state, planned.observed)
        return _Found(planned.plan, fleet_status(planned.plan, state, state, self.clock()))

    def _plan_and_apply(self, manifests: ManifestSet, session: StateTransaction) -> _Found:
        with open_client(manifests.settings, self.config.env) as client:
            client.on_response(self.metrics.count_response)
            planned = self._plan(manifests, client, session.snap)
            session.record(planned.observed)
            before = session.current()
            todo = narrow(planned.plan, self.config.mode)
            if self.stop.is_set() or not todo.has_actions:
                return _Found(planned.plan, fleet_status(planned.plan, before, before, self.clock()))
            refuse_mass_rebuild(todo)
            result = self._apply(session, todo, client)
        fleet = fleet_status(planned.plan, before, session.current(), self.clock(),
                             submitted=frozenset(result.submitted), refused=result.failed)
        return _Found(planned.plan, fleet, applied=True, summary={**result.summary(), "ok": result.ok})

    def _apply(self, session: StateTransaction, todo: Plan, client: Any) -> ApplyResult:
        rebuilds = [c for c in todo.changes if c.action is Action.REBUILD]
        self.notify(events.apply_started(len(rebuilds), sorted({c.group or "" for c in rebuilds})))
        api = todo.settings.api if todo.settings else None
        options = ApplyOptions(poll_interval=api.poll_interval_seconds if api else 15.0,
                               max_concurrent_calls=api.max_concurrent_calls if api else 4, stop=self.stop)
        result = session.execute(todo, client, options, self._event)
        self.notify(events.apply_finished(result.summary(), result.ok))
        return result

    def _event(self, event: dict[str, Any]) -> None:
        self.on_event(event)
        notice = events.notice_for(event)
        if notice is not None:
            self.notify(notice)
        started = events.submitted(event)
        if started is not None:
            self.metrics.submitted.labels(started.group).inc(started.desktops)
