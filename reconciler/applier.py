"""Executes a plan against a ``WorkspaceClient`` and a locked ``StateStore``. Network and journal
I/O, through those two objects only.

Every rebuild call is bracketed by journal records — ``intent`` before it is sent, ``submitted``,
``rejected`` or ``unknown`` right after — each fsynced, so a crash at any moment leaves a journal
the next run folds into the state without losing a job id. A call whose answer was lost is
resolved from the live API (sub-jobs, desktop state) before its desktops are sent again, and
only once the lost-call horizon has passed: until then a gateway may still deliver it. Other
batches go on meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reconciler.cloud import errors
from reconciler.lost_calls import LostCalls
from reconciler.model import Action, Change, DesktopGroup
from reconciler.plan import Plan
from reconciler.recheck import connected_users, window_closed
from reconciler.refresh import desktops_by_id, job_totals, resolve_unknown
from reconciler.rollout import CANARY_WAVE, MAIN_WAVE
from reconciler.state.recorder import Recorder
from reconciler.state.records import AdoptedDesktop, BatchFields, SubJobSeen
from reconciler.waves import GroupRun, RebuildBatch, make_batches

if TYPE_CHECKING:  # the HTTP client is only needed when a command talks to the cloud
    from reconciler.cloud.client import WorkspaceClient

# Statuses of a desktop that let a rebuild through; anything else answers 409.
REBUILDABLE_STATUSES = frozenset({"ACTIVE", "SHUTOFF", "ERROR"})
MAX_ATTEMPTS_PER_DESKTOP = 3

Emit = Callable[[dict[str, Any]], None]
# Consecutive failed looks at the jobs (each after the client's retries) before apply gives up.
MAX_POLL_FAILURES = 5
@dataclass(frozen=True)
class ApplyOptions:
    wait: bool | None = None  # None: each group's rollout.wait decides
    poll_interval: float = 15.0
    max_concurrent_calls: int = 4
    # Set from outside (a signal): send nothing more, let the calls in flight return, stop
    # waiting for jobs. What was not sent is left for the next run, which follows what was.
    stop: threading.Event | None = None


@dataclass
class ApplyResult:
    submitted: dict[str, str] = field(default_factory=dict)  # desktop id -> job id
    failed: dict[str, str] = field(default_factory=dict)  # desktop id -> reason
    busy: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # left for a later run: window closed, user connected
    unknown: list[str] = field(default_factory=list)
    halted: dict[str, str] = field(default_factory=dict)
    succeeded: list[str] = field(default_factory=list)
    adopted: int = 0
    forgotten: int = 0

    @property
    def ok(self) -> bool:
        return not (self.failed or self.halted or self.unknown)

    def summary(self) -> dict[str, Any]:
        return {
            "rebuilds_submitted": len(self.submitted),
            "jobs": len(set(self.submitted.values())),
            "rebuilds_succeeded": len(self.succeeded),
            "rebuilds_running": len(set(self.submitted) - set(self.succeeded) - set(self.failed)),
            "failed": len(self.failed),
            "busy_deferred": len(self.busy),
            "deferred": len(self.deferred),
            "unknown_outcome": len(self.unknown),
            "adopted": self.adopted,
            "forgotten": self.forgotten,
            "halted_groups": sorted(self.halted),
        }


@dataclass(frozen=True)
class _CallResult:
    batch: RebuildBatch  # as taken from the group (its size is what the group counted)
    sent: RebuildBatch | None = None  # as sent, without desktops deferred at the last moment
    job_id: str | None = None
    error: errors.WorkspaceError | None = None
    unknown: bool = False
    deferred: tuple[str, ...] = ()
    returned_at: datetime | None = None  # when the call ended (its horizon starts then)


class Applier:
    def __init__(
        self,
        client: WorkspaceClient,
        recorder: Recorder,
        *,
        options: ApplyOptions = ApplyOptions(),
        emit: Emit = lambda event: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.options = options
        self._emit_raw = emit
        self._sleep = sleep
        self.result = ApplyResult()
        self._emit_lock = threading.Lock()
        self._lost = LostCalls(client.lost_call_horizon)
        self._poll_failures = 0
        self._groups: dict[str, DesktopGroup] = {}
        self._ignore_window = False

    def emit(self, event: dict[str, Any]) -> None:
        with self._emit_lock:
            self._emit_raw({**event, "at": self.recorder.at()})

    # -- the run -----------------------------------------------------------------------------

    def run(self, plan: Plan) -> ApplyResult:
        self._groups = {group.name: group for group in plan.groups}
        self._ignore_window = plan.ignore_window
        self._state_only(plan.changes)
        runs = self._group_runs(plan)
        self._drain_events(runs)
        with ThreadPoolExecutor(max_workers=max(1, self.options.max_concurrent_calls)) as pool:
            self._execute(runs, pool)
        self._collect(runs)
        return self.result

    def _state_only(self, changes: Sequence[Change]) -> None:
        adopt: dict[str, AdoptedDesktop] = {
            c.desktop_id: {"group": c.group, "image_id": c.after_image, "name": c.desktop_name}
            for c in changes
            if c.action is Action.ADOPT and c.group is not None  # a plan always names an adopted desktop's group
        }
        forget = [c.desktop_id for c in changes if c.action is Action.FORGET]
        if adopt:
            self.recorder.record({"type": "adopt", "at": self.recorder.at(), "desktops": adopt})
            self.emit({"event": "adopted", "desktops": len(adopt)})
        if forget:
            self.recorder.record({"type": "forget", "at": self.recorder.at(), "desktop_ids": forget})
            self.emit({"event": "forgotten", "desktops": len(forget)})
        self.result.adopted, self.result.forgotten = len(adopt), len(forget)

    def _group_runs(self, plan: Plan) -> list[GroupRun]:
        rebuilds: dict[str, list[Change]] = {}
        for change in plan.changes:
            if change.action is Action.REBUILD and change.group:
                rebuilds.setdefault(change.group, []).append(change)
        state = self.recorder.state()
        runs = []
        for name, changes in sorted(rebuilds.items()):
            group = plan.group(name)
            in_flight = {
                i: r.job.id
                for i, r in state.desktops.items()
                if r.group == name and r.job is not None and r.job.in_progress
            }
            for desktop_id in (i for i, job_id in in_flight.items() if job_id is None):
                job = state.desktops[desktop_id].job
                assert job is not None
                self._lost.add_journaled([desktop_id], job.submitted_at)
            runs.append(
                GroupRun(
                    group,
                    make_batches(group, changes, CANARY_WAVE),
                    make_batches(group, changes, MAIN_WAVE),
                    in_flight=in_flight,
                    failure_limit=group.rollout.max_failures.limit(len(changes)),
                )
            )
        return runs

    def _drain_events(self, runs: Iterable[GroupRun]) -> None:
        for run in runs:
            while run.events:
                event = run.events.pop(0)
                if event["event"] == "group_halted":
                    self.result.halted[run.name] = str(event["reason"])
                elif event["event"] == "group_deferred":
                    self.result.deferred.extend(event["desktop_ids"])  # type: ignore[arg-type]
                self.emit(event)

    def _execute(self, runs: list[GroupRun], pool: ThreadPoolExecutor) -> None:
        """Send every batch the groups release; poll jobs while a group waits on them, while
        lost calls are being resolved, and until waited-for rebuilds finish."""
        running: dict[Future[_CallResult], GroupRun] = {}
        last_poll = time.monotonic()
        while True:
            slots = self.options.max_concurrent_calls - len(running)
            self._close_windows(runs)
            stopping = self._stopping(runs)
            for run in runs:
                for batch in run.take(slots):
                    running[pool.submit(self._send, batch)] = run
                    slots -= 1
            watched = [] if stopping else self._watched(runs)
            if not running and not watched:
                return
            if running:
                done, _ = wait(list(running), timeout=self.options.poll_interval if watched else None, return_when=FIRST_COMPLETED)
                for future in done:
                    self._returned(running.pop(future), future.result())
            else:
                self._pause(max(0.0, self.options.poll_interval - (time.monotonic() - last_poll)))
            if watched and time.monotonic() - last_poll >= self.options.poll_interval:
                self._poll_patiently(watched)
                last_poll = time.monotonic()
            self._drain_events(runs)

    def _close_windows(self, runs: Sequence[GroupRun]) -> None:
        """A group whose window has closed (a saved plan applied late, or a long apply) sends
        nothing more; what it did not send waits for the next window."""
        now = self.recorder.now()
        for run in runs:
            reason = window_closed(run.group, now, self._ignore_window)
            if reason is not None:
                run.defer(f"outside_window: {reason}")

    def _stopping(self, runs: Sequence[GroupRun]) -> bool:
        if self.options.stop is None or not self.options.stop.is_set():
            return False
        for run in runs:
            run.defer("stopping")
        return True

    def _pause(self, seconds: float) -> None:
        if self.options.stop is None:
            self._sleep(seconds)
        else:
            self.options.stop.wait(seconds)  # a stop request ends the pause at once

    def _poll_patiently(self, runs: Sequence[GroupRun]) -> None:
        """A look at the jobs that fails (after the client's own retries) is tried again at the
        next poll: one bad stretch must not abort a long rollout. Only a run of failures, or
        refused credentials, ends the apply; nothing is lost, a later run picks the jobs up."""
        try:
            self._poll(runs)
        except errors.WorkspaceError as exc:
            self._poll_failures += 1
            if isinstance(exc, errors.AuthFailure) or self._poll_failures >= MAX_POLL_FAILURES:
                raise
            self.emit({"event": "poll_failed", "error": str(exc), "failures": self._poll_failures})
            return
        self._poll_failures = 0

    def _waits(self, run: GroupRun) -> bool:
        return self.options.wait if self.options.wait is not None else run.group.rollout.wait

    def _watched(self, runs: Sequence[GroupRun]) -> list[GroupRun]:
        """Groups whose in-flight rebuilds must be polled now."""
        watched = []
        for run in runs:
            if not run.in_flight:
                continue
            unresolved = any(j is None and self._lost.waiting(d) for d, j in run.in_flight.items())
            waiting = self._waits(run) and bool(set(run.in_flight) & run.started) and run.calls_running == 0
            if run.blocked_on_jobs or unresolved or waiting:
                watched.append(run)
        return watched

    # -- one call ----------------------------------------------------------------------------

    def _send(self, taken: RebuildBatch) -> _CallResult:
        """Runs in a worker thread: a last look for connected users, then journal, call, journal."""
        connected = connected_users(self.client, self._groups[taken.group], taken.desktop_ids)
        if connected:
            rest = [i for i in taken.desktop_ids if i not in set(connected)]
            if not rest:
                return _CallResult(taken, deferred=tuple(connected))
            result = self._call(taken.narrowed(rest))
            return replace(result, batch=taken, deferred=tuple(connected))
        return self._call(taken)

    def _call(self, batch: RebuildBatch) -> _CallResult:
        base: BatchFields = {"batch_id": batch.id, "group": batch.group, "desktop_ids": list(batch.desktop_ids)}
        self.recorder.record(
            {"type": "intent", "at": self.recorder.at(), "image_id": batch.request.image_id, "names": dict(batch.names), **base}
        )
        try:
            job_id = self.client.rebuild_desktops(batch.request)
        except errors.UnknownOutcome as exc:
            returned_at = self.recorder.now()
            self.recorder.record({"type": "unknown", "at": self.recorder.at(), "error": str(exc), **base})
            return _CallResult(batch, batch, unknown=True, error=exc, returned_at=returned_at)
        except errors.WorkspaceError as exc:
            self.recorder.record({"type": "rejected", "at": self.recorder.at(), "error": str(exc), **base})
            return _CallResult(batch, batch, error=exc)
        self.recorder.record(
            {"type": "submitted", "at": self.recorder.at(), "job_id": job_id, "image_id": batch.request.image_id, "names": dict(batch.names), **base}
        )
        return _CallResult(batch, batch, job_id=job_id)

    def _returned(self, run: GroupRun, result: _CallResult) -> None:
        run.call_returned(result.batch)
        if result.deferred:
            self.result.deferred.extend(result.deferred)
            self.emit({"event": "desktops_deferred", "group": run.name, "reason": "user_connected", "desktop_ids": list(result.deferred)})
        batch = result.sent
        if batch is None:
            run.advance()
            return
        if result.job_id is not None:
            run.submitted(batch, result.job_id)
            self.result.submitted.update((i, result.job_id) for i in batch.desktop_ids)
            self.emit({"event": "batch_submitted", "group": run.name, "wave": batch.wave, "batch_id": batch.id, "job_id": result.job_id, "desktop_ids": list(batch.desktop_ids)})
        elif result.unknown:
            assert result.returned_at is not None
            self._lost.add(batch.desktop_ids, result.returned_at)
            run.submitted(batch, None)
            self.emit({"event": "batch_unknown", "group": run.name, "batch_id": batch.id, "desktop_ids": list(batch.desktop_ids), "error": str(result.error)})
        elif isinstance(result.error, (errors.Busy, errors.NotFound)) and batch.attempt < MAX_ATTEMPTS_PER_DESKTOP:
            self._isolate(run, batch, result.error)
        else:
            self._batch_failed(run, batch, result.error)
        run.advance()

    def _batch_failed(self, run: GroupRun, batch: RebuildBatch, error: errors.WorkspaceError | None) -> None:
        reason = str(error) if error else "rebuild failed"
        self.result.failed.update((i, reason) for i in batch.desktop_ids)
        run.failed(batch.desktop_ids, reason)
        self.emit(
            {
                "event": "batch_failed",
                "group": run.name,
                "batch_id": batch.id,
                "desktop_ids": list(batch.desktop_ids),
                "error": reason,
                "status": getattr(error, "status", None),
                "error_code": getattr(error, "error_code", None),
            }
        )
        if isinstance(error, errors.AuthFailure):
            # Retrying refused credentials can lock the access key: stop sending anything.
            run.halt(f"authentication failed: {reason}")

    def _isolate(self, run: GroupRun, batch: RebuildBatch, error: errors.WorkspaceError) -> None:
        """A 409/404 refuses the whole call: find the desktops that caused it, send the rest."""
        try:
            live = {d.id: d for d in self.client.iter_desktops(desktop_id=list(batch.desktop_ids))}
        except errors.WorkspaceError as exc:
            self._batch_failed(run, batch, exc)
            return
        missing = [i for i in batch.desktop_ids if i not in live]
        busy = [i for i in batch.desktop_ids if i in live and (live[i].task_status or live[i].status not in REBUILDABLE_STATUSES)]
        rest = [i for i in batch.desktop_ids if i not in missing and i not in busy]
        if missing:
            self._batch_failed(run, batch.narrowed(missing), errors.NotFound("desktop not found", status=404))
        if busy:
            self.result.busy.extend(busy)
            self.emit({"event": "desktops_busy", "group": run.name, "desktop_ids": busy, "error": str(error)})
        if rest:
            run.requeue(batch.narrowed(rest, retry=True))

    # -- jobs --------------------------------------------------------------------------------

    def _poll(self, runs: Sequence[GroupRun]) -> None:
        """Read the sub-jobs of in-flight rebuilds; record and feed back what finished."""
        ripe = self._lost.ripe(self.recorder.now())
        if ripe:
            self._resolve(runs, ripe)
        jobs = sorted({j for r in runs for j in r.in_flight.values() if j})
        seen: dict[str, SubJobSeen] = {}
        for job_id in jobs:
            for sub in self.client.iter_sub_jobs(job_id=job_id):
                seen[sub.desktop_id] = {"job_id": job_id, "status": sub.status, "fail_reason": sub.fail_reason or None}
        if not seen:
            return
        totals = job_totals(self.recorder.state(), seen)
        self.recorder.record({"type": "job_status", "at": self.recorder.at(), "desktops": seen, "jobs": totals})
        finished = {d: s["status"] for d, s in seen.items() if s["status"] in ("SUCCESS", "FAILED")}
        for run in runs:
            mine = {d: s for d, s in finished.items() if d in run.in_flight}
            for desktop_id in run.finished_rebuilds(mine):
                self.result.failed[desktop_id] = seen[desktop_id].get("fail_reason") or "rebuild FAILED"
            self.result.succeeded.extend(d for d, s in mine.items() if s == "SUCCESS" and d in run.started)
        self._progress(runs)
        for job_id, status in totals.items():
            if status in ("SUCCESS", "FAILED"):
                counts = [s["status"] for s in seen.values() if s["job_id"] == job_id]
                self.emit({"event": "job_finished", "job_id": job_id, "status": status, "succeeded": counts.count("SUCCESS"), "failed": counts.count("FAILED")})

    def _resolve(self, runs: Sequence[GroupRun], ripe: Sequence[str]) -> None:
        """Settle lost calls past their horizon; desktops they never reached go out again.
        Only desktops read live here can be found never reached; a job found for any lost
        desktop settles it at once."""
        live = desktops_by_id(self.client, ripe)
        record = resolve_unknown(self.client, self.recorder.state(), live, self.recorder.now())
        if record is not None:
            self.recorder.record(record)
        self._lost.looked(ripe)
        self._settle_lost(runs)

    def _settle_lost(self, runs: Sequence[GroupRun]) -> None:
        """Follow each lost call's desktops to what the state now knows of them, whichever
        record settled it. A lookup can run while another call is still on the wire and find
        that call's job before its own answer is lost: the state then has the job, and no later
        resolution will name those desktops again."""
        state = self.recorder.state()
        for run in runs:
            resend = []
            for desktop_id in [d for d, j in run.in_flight.items() if j is None]:
                record = state.desktops.get(desktop_id)
                job = record.job if record is not None else None
                if job is not None and job.status == "UNKNOWN":
                    continue  # not settled yet: looked at again at the next poll
                self._lost.settled(desktop_id)
                if job is not None and job.id:
                    run.in_flight[desktop_id] = job.id
                    self.result.submitted[desktop_id] = job.id
                else:
                    del run.in_flight[desktop_id]
                    resend.append(desktop_id)
            if resend:
                run.resend(resend)

    def _progress(self, runs: Sequence[GroupRun]) -> None:
        total = sum(len(r.started) for r in runs)
        left = sum(len(set(r.in_flight) & r.started) for r in runs)
        self.emit({"event": "wait_progress", "finished": total - left, "total": total})

    def _collect(self, runs: Sequence[GroupRun]) -> None:
        self.result.unknown = sorted(d for r in runs for d, j in r.in_flight.items() if j is None and d in r.started)
        self._drain_events(runs)
