"""Executes a plan against a ``WorkspaceClient`` and a locked ``StateStore``. Network and journal
I/O, through those two objects only, in three parts with narrow interfaces: ``Submitter`` sends
a batch (``reconciler.apply.submitting``), ``JobPoller`` looks at the jobs under way
(``reconciler.apply.polling``) and ``LostCallResolver`` settles calls whose outcome is unknown
(``reconciler.apply.lost_calls``). The ``Applier`` drives them and each group's ``GroupRun``.

Every rebuild call is bracketed by journal records — ``intent`` before it is sent, ``submitted``,
``rejected`` or ``unknown`` right after — each fsynced, so a crash at any moment leaves a journal
the next run folds into the state without losing a job id. A call whose answer was lost is
resolved from the live API (sub-jobs, desktop state) before its desktops are sent again, and
only once the lost-call horizon has passed: until then a gateway may still deliver it. Other
batches go on meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.apply.events import (
    ApplyEvent,
    BatchFailed,
    BatchSubmitted,
    BatchUnknown,
    DesktopsBusy,
    DesktopsDeferred,
    Emit,
    PollFailed,
    StateOnly,
    WaitProgress,
)
from reconciler.apply.lost_calls import LostCallResolver
from reconciler.apply.polling import JobPoller
from reconciler.apply.submitting import CallResult, Submitter
from reconciler.cloud import errors
from reconciler.model import Action, Change
from reconciler.plan import Plan
from reconciler.rollout import CANARY_WAVE, MAIN_WAVE
from reconciler.rollout.apply_waves import GroupRun, RebuildBatch, make_batches
from reconciler.rollout.plan_shaping import window_wait
from reconciler.state.recorder import Recorder
from reconciler.state.records import AdoptedDesktop

if TYPE_CHECKING:  # the HTTP client is only needed when a command talks to the cloud
    from reconciler.cloud.client import WorkspaceClient

# Statuses of a desktop that let a rebuild through; anything else answers 409.
REBUILDABLE_STATUSES = frozenset({"ACTIVE", "SHUTOFF", "ERROR"})
MAX_ATTEMPTS_PER_DESKTOP = 3

log = logging.getLogger("reconciler.apply")
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


class Applier:
    """Runs one plan's rollout.

    Threads: ``run`` drives everything on the caller's thread — it takes batches from the groups,
    acts on what each call returned, looks at jobs, settles lost calls and emits every event.
    Only ``Submitter.send`` runs on worker threads (``max_concurrent_calls`` of them): it uses
    the client and the recorder, both thread-safe, and nothing of the applier's own state.
    """

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
        self._poller = JobPoller(client, recorder)
        self._lost = LostCallResolver(client, recorder)
        self._poll_failures = 0
        self._ignore_window = False

    def emit(self, event: ApplyEvent) -> None:
        with self._emit_lock:
            self._emit_raw({**event, "at": self.recorder.at()})

    # -- the run -----------------------------------------------------------------------------

    def run(self, plan: Plan) -> ApplyResult:
        self._ignore_window = plan.ignore_window
        self._state_only(plan.changes)
        runs = self._group_runs(plan)
        self._drain_events(runs)
        submitter = Submitter(self.client, self.recorder, {group.name: group for group in plan.groups})
        with ThreadPoolExecutor(max_workers=max(1, self.options.max_concurrent_calls)) as pool:
            self._execute(runs, pool, submitter)
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
            self.emit(StateOnly(event="adopted", desktops=len(adopt)))
        if forget:
            self.recorder.record({"type": "forget", "at": self.recorder.at(), "desktop_ids": forget})
            self.emit(StateOnly(event="forgotten", desktops=len(forget)))
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
            in_flight = {}
            for desktop_id, record in state.desktops.items():
                if record.group == name and record.job is not None and record.job.in_progress:
                    in_flight[desktop_id] = record.job.id
                    if record.job.id is None:  # left UNKNOWN by an earlier run
                        self._lost.calls.add_journaled([desktop_id], record.job.submitted_at)
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

    def _drain_events(self, runs: Sequence[GroupRun]) -> None:
        for run in runs:
            for event in run.drain_events():
                if event["event"] == "group_halted":
                    self.result.halted[run.name] = event["reason"]
                    log.debug("group %s halted: %s", run.name, event["reason"])
                elif event["event"] == "group_deferred":
                    self.result.deferred.extend(event["desktop_ids"])
                    log.debug("group %s deferred %d desktops: %s", run.name, len(event["desktop_ids"]), event["reason"])
                self.emit(event)

    def _execute(self, runs: list[GroupRun], pool: ThreadPoolExecutor, submitter: Submitter) -> None:
        """Send every batch the groups release; poll jobs while a group waits on them, while
        lost calls are being resolved, and until waited-for rebuilds finish."""
        running: dict[Future[CallResult], GroupRun] = {}
        last_poll = time.monotonic()
        while True:
            slots = self.options.max_concurrent_calls - len(running)
            self._close_windows(runs)
            stopping = self._stopping(runs)
            for run in runs:
                for batch in run.take(slots):
                    running[pool.submit(submitter.send, batch)] = run
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
            reason = window_wait(run.group, now, self._ignore_window)
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
            log.debug("a look at the jobs failed (%d in a row): %s", self._poll_failures, exc)
            self.emit(PollFailed(event="poll_failed", error=str(exc), failures=self._poll_failures))
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
            unresolved = any(self._lost.calls.waiting(d) for d in run.lost())
            waiting = self._waits(run) and run.own_rebuilds_running()
            if run.blocked_on_jobs or unresolved or waiting:
                watched.append(run)
        return watched

    # -- what a call returned ----------------------------------------------------------------

    def _returned(self, run: GroupRun, result: CallResult) -> None:
        run.call_returned(result.batch)
        if result.deferred:
            self.result.deferred.extend(result.deferred)
            self.emit(DesktopsDeferred(event="desktops_deferred", group=run.name, reason="user_connected", desktop_ids=list(result.deferred)))
        batch = result.sent
        if batch is None:
            run.advance()
            return
        if result.job_id is not None:
            run.submitted(batch, result.job_id)
            self.result.submitted.update((i, result.job_id) for i in batch.desktop_ids)
            self.emit(BatchSubmitted(event="batch_submitted", group=run.name, wave=batch.wave, batch_id=batch.id,
                                     job_id=result.job_id, desktop_ids=list(batch.desktop_ids)))
        elif result.unknown:
            assert result.returned_at is not None
            self._lost.calls.add(batch.desktop_ids, result.returned_at)
            run.submitted(batch, None)
            self.emit(BatchUnknown(event="batch_unknown", group=run.name, batch_id=batch.id, desktop_ids=list(batch.desktop_ids),
                                   error=str(result.error)))
        elif isinstance(result.error, (errors.Busy, errors.NotFound)) and batch.attempt < MAX_ATTEMPTS_PER_DESKTOP:
            self._isolate(run, batch, result.error)
        else:
            self._batch_failed(run, batch, result.error)
        run.advance()

    def _batch_failed(self, run: GroupRun, batch: RebuildBatch, error: errors.WorkspaceError | None) -> None:
        reason = str(error) if error else "rebuild failed"
        self.result.failed.update((i, reason) for i in batch.desktop_ids)
        run.failed(batch.desktop_ids, reason)
        self.emit(BatchFailed(event="batch_failed", group=run.name, batch_id=batch.id, desktop_ids=list(batch.desktop_ids), error=reason,
                              status=getattr(error, "status", None), error_code=getattr(error, "error_code", None)))
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
        log.debug("batch %s refused (%s): %d missing, %d busy, %d sent again", batch.id, error, len(missing), len(busy), len(rest))
        if missing:
            self._batch_failed(run, batch.narrowed(missing), errors.NotFound("desktop not found", status=404))
        if busy:
            self.result.busy.extend(busy)
            self.emit(DesktopsBusy(event="desktops_busy", group=run.name, desktop_ids=busy, error=str(error)))
        if rest:
            run.requeue(batch.narrowed(rest, retry=True))

    # -- jobs and lost calls -----------------------------------------------------------------

    def _poll(self, runs: Sequence[GroupRun]) -> None:
        """Settle lost calls past their horizon; read the sub-jobs of in-flight rebuilds;
        record and feed back what finished."""
        self._lost.look()
        for run in runs:
            self.result.submitted.update(run.settle_lost(self._lost.settled(run.lost())))
        seen = self._poller.look(job_id for run in runs for job_id in run.job_ids())
        if seen is None:
            return
        finished = seen.finished()
        for run in runs:
            mine = {d: status for d, status in finished.items() if d in run.in_flight}
            for desktop_id in run.finished_rebuilds(mine):
                self.result.failed[desktop_id] = seen.fail_reason(desktop_id)
            self.result.succeeded.extend(d for d, status in mine.items() if status == "SUCCESS" and d in run.started)
        self._progress(runs)
        for event in seen.finished_jobs():
            self.emit(event)

    def _progress(self, runs: Sequence[GroupRun]) -> None:
        finished = total = 0
        for run in runs:
            done, started = run.progress()
            finished, total = finished + done, total + started
        self.emit(WaitProgress(event="wait_progress", finished=finished, total=total))

    def _collect(self, runs: Sequence[GroupRun]) -> None:
        self.result.unknown = sorted(d for r in runs for d in r.unknown_outcomes())
        self._drain_events(runs)
