"""How one group's rebuilds are released during an apply: batches, the canary wave, the
in-flight cap and the failure budget. A small state machine per group; no I/O — the applier
feeds it call results, job observations and settled lost calls, asks it what may be sent next,
and drains the events it reports (``wave_started``, ``group_halted``, ``group_deferred``).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from reconciler.apply.events import GroupDeferred, GroupEvent, GroupHalted, WaveStarted
from reconciler.cloud.models import RebuildRequest
from reconciler.model import Change, DesktopGroup
from reconciler.rollout import CANARY_WAVE, MAIN_WAVE

# Desktop ids the rebuild API takes in one call.
MAX_DESKTOPS_PER_CALL = 100


@dataclass(frozen=True)
class RebuildBatch:
    """One rebuild call: desktops of one group and wave sharing every request field."""

    id: str
    group: str
    wave: str
    request: RebuildRequest
    names: tuple[tuple[str, str], ...] = ()
    attempt: int = 1

    @property
    def desktop_ids(self) -> tuple[str, ...]:
        return self.request.desktop_ids

    def narrowed(self, desktop_ids: Sequence[str], *, retry: bool = False) -> RebuildBatch:
        """The same call for fewer desktops, as a new batch (its own journal intent)."""
        kept = set(desktop_ids)
        names = tuple((k, v) for k, v in self.names if k in kept)
        request = replace(self.request, desktop_ids=tuple(desktop_ids))
        # Only a refused call counts as an attempt: splitting a batch to fit max_in_flight does not.
        return replace(self, id=new_batch_id(), request=request, names=names, attempt=self.attempt + retry)


def new_batch_id() -> str:
    return uuid.uuid4().hex[:16]


def request_for(group: DesktopGroup, desktop_ids: Sequence[str]) -> RebuildRequest:
    rollout = group.rollout
    return RebuildRequest(
        desktop_ids=tuple(desktop_ids),
        image_id=group.image.id,
        image_type=group.image.type,
        os_type=group.image.os_type,
        delay_time=rollout.delay_time,
        message=rollout.message,
        order_id=group.image.order_id,
        enterprise_project_id=group.enterprise_project_id,
    )


def make_batches(group: DesktopGroup, changes: Iterable[Change], wave: str) -> list[RebuildBatch]:
    """Split a wave's rebuilds into calls of at most ``batch_size`` desktops, in id order."""
    picked = sorted((c for c in changes if c.wave == wave), key=lambda c: c.desktop_id)
    size = group.rollout.batch_size
    batches = []
    for start in range(0, len(picked), size):
        chunk = picked[start:start + size]
        names = tuple((c.desktop_id, c.desktop_name) for c in chunk if c.desktop_name)
        batches.append(
            RebuildBatch(new_batch_id(), group.name, wave, request_for(group, [c.desktop_id for c in chunk]), names)
        )
    return batches


class Phase(Enum):
    CANARY = "canary"
    CANARY_WAIT = "canary_wait"
    MAIN = "main"
    DONE = "done"
    HALTED = "halted"


@dataclass
class GroupRun:
    """The rollout of one group during one apply."""

    group: DesktopGroup
    canary: list[RebuildBatch]
    main: list[RebuildBatch]
    # Desktop id -> job id of every rebuild under way (None: its call's outcome is unknown), this
    # run's and those of earlier runs that count against max_in_flight.
    in_flight: dict[str, str | None] = field(default_factory=dict)
    failure_limit: int = 0
    failures: int = 0
    calls_running: int = 0
    desktops_in_calls: int = 0
    queue: deque[RebuildBatch] = field(default_factory=deque)
    phase: Phase = Phase.CANARY
    canary_ids: set[str] = field(default_factory=set)
    started: set[str] = field(default_factory=set)  # desktops this run submitted
    canaries_passed: int = 0
    events: list[GroupEvent] = field(default_factory=list)  # taken by drain_events()
    names: dict[str, str] = field(default_factory=dict)  # desktop id -> computer name, for resends

    def __post_init__(self) -> None:
        self.queue = deque(self.canary)
        self.canary_ids = {i for b in self.canary for i in b.desktop_ids}
        self.names = {i: n for b in (*self.canary, *self.main) for i, n in b.names}
        if self.canary:
            self._wave_started(CANARY_WAVE, self.canary)
        else:
            self._start_main()
        self.advance()

    def _wave_started(self, wave: str, batches: Sequence[RebuildBatch]) -> None:
        count = sum(len(b.desktop_ids) for b in batches)
        if count:
            self.events.append(WaveStarted(event="wave_started", group=self.name, wave=wave, desktops=count))

    def _start_main(self) -> None:
        self.phase = Phase.MAIN
        self.queue = deque(self.main)
        self._wave_started(MAIN_WAVE, self.main)

    @property
    def name(self) -> str:
        return self.group.name

    # -- what the applier asks ------------------------------------------------------------------

    def drain_events(self) -> list[GroupEvent]:
        """The events reported since the last drain, oldest first."""
        events, self.events = self.events, []
        return events

    def lost(self) -> list[str]:
        """Desktops whose rebuild call's outcome is unknown, not settled yet."""
        return [d for d, job_id in self.in_flight.items() if job_id is None]

    def job_ids(self) -> set[str]:
        """Jobs of the rebuilds under way."""
        return {job_id for job_id in self.in_flight.values() if job_id}

    def own_rebuilds_running(self) -> bool:
        """Rebuilds this run submitted are under way, and no call of it is on the wire."""
        return self.calls_running == 0 and any(d in self.started for d in self.in_flight)

    def progress(self) -> tuple[int, int]:
        """(rebuilds this run submitted that have finished, rebuilds it submitted)."""
        return len(self.started) - sum(1 for d in self.in_flight if d in self.started), len(self.started)

    def unknown_outcomes(self) -> list[str]:
        """Desktops this run sent whose outcome is still unknown."""
        return sorted(d for d in self.lost() if d in self.started)

    def _capacity(self) -> int | None:
        cap = self.group.rollout.max_in_flight
        if cap is None:
            return None
        return cap - len(self.in_flight) - self.desktops_in_calls

    def take(self, slots: int) -> list[RebuildBatch]:
        """Batches that may be sent now, at most ``slots`` of them."""
        taken: list[RebuildBatch] = []
        while self.queue and len(taken) < slots and self.phase in (Phase.CANARY, Phase.MAIN):
            capacity = self._capacity()
            if capacity is not None and capacity <= 0:
                break
            batch = self.queue.popleft()
            if capacity is not None and capacity < len(batch.desktop_ids):
                keep, rest = batch.desktop_ids[:capacity], batch.desktop_ids[capacity:]
                self.queue.appendleft(batch.narrowed(rest))
                batch = batch.narrowed(keep)
            self.calls_running += 1
            self.desktops_in_calls += len(batch.desktop_ids)
            taken.append(batch)
        return taken

    def call_returned(self, batch: RebuildBatch) -> None:
        self.calls_running -= 1
        self.desktops_in_calls -= len(batch.desktop_ids)

    def submitted(self, batch: RebuildBatch, job_id: str | None) -> None:
        """Rebuilds accepted (``job_id``), or sent with an unknown outcome (None)."""
        for desktop_id in batch.desktop_ids:
            self.in_flight[desktop_id] = job_id
            self.started.add(desktop_id)
        self.advance()

    def failed(self, desktop_ids: Sequence[str], reason: str) -> None:
        """Desktops of this run that will not be rebuilt (call refused, or sub-job FAILED)."""
        self.failures += len(desktop_ids)
        canaries = sorted(self.canary_ids.intersection(desktop_ids))
        if canaries:
            self.halt(f"canary failed ({', '.join(canaries)}): {reason}")
        elif self.failures > self.failure_limit:
            self.halt(f"{self.failures} failed desktops exceed max_failures {self.failure_limit}: {reason}")
        self.advance()

    def requeue(self, batch: RebuildBatch) -> None:
        """Send these desktops again (the rest of a refused batch, or a lost call's desktops).
        A main-wave batch that comes back before the canaries passed waits with the rest of the
        main wave; a canary batch reopens the canary wave."""
        if self.phase is Phase.HALTED:
            return
        if batch.wave == MAIN_WAVE and self.phase in (Phase.CANARY, Phase.CANARY_WAIT):
            self.main.insert(0, batch)
            return
        if self.phase is Phase.DONE:
            self.phase = Phase.MAIN
        if self.phase is Phase.CANARY_WAIT:
            self.phase = Phase.CANARY
        self.queue.appendleft(batch)

    def settle_lost(self, settled: Mapping[str, str | None]) -> dict[str, str]:
        """Lost calls' desktops whose fate is known (desktop id -> the job the call got, or None
        when it never reached the service): tie them to their jobs, send the others again.
        Returns the desktops tied to a job; desktops not lost in this run are ignored."""
        tied: dict[str, str] = {}
        resend = []
        for desktop_id, job_id in settled.items():
            if desktop_id not in self.in_flight or self.in_flight[desktop_id] is not None:
                continue
            if job_id:
                self.in_flight[desktop_id] = tied[desktop_id] = job_id
            else:
                del self.in_flight[desktop_id]
                resend.append(desktop_id)
        if resend:
            self.resend(resend)
        return tied

    def resend(self, desktop_ids: Sequence[str]) -> None:
        """Desktops of lost calls that the service never processed: they go out again in the
        wave they belong to, so a lost canary call still gates the main wave, in calls of at
        most ``batch_size`` (lost calls settled together can hold many more)."""
        size = min(self.group.rollout.batch_size, MAX_DESKTOPS_PER_CALL)
        for wave in (MAIN_WAVE, CANARY_WAVE):  # requeue puts each in front: canaries go first
            ids = sorted(i for i in desktop_ids if (i in self.canary_ids) == (wave == CANARY_WAVE))
            chunks = [ids[start:start + size] for start in range(0, len(ids), size)]
            for chunk in reversed(chunks):  # each goes in front: keep them in id order
                names = tuple((i, self.names[i]) for i in chunk if i in self.names)
                self.requeue(RebuildBatch(new_batch_id(), self.name, wave, request_for(self.group, chunk), names, attempt=2))

    def finished_rebuilds(self, outcomes: dict[str, str]) -> list[str]:
        """Record finished sub-jobs (desktop id -> SUCCESS/FAILED); return this run's failures."""
        failed = []
        for desktop_id, status in outcomes.items():
            if self.in_flight.pop(desktop_id, "absent") == "absent":
                continue
            if status == "FAILED" and desktop_id in self.started:
                failed.append(desktop_id)
            elif status == "SUCCESS" and desktop_id in self.canary_ids:
                self.canaries_passed += 1
        if failed:
            self.failed(failed, "rebuild sub-jobs FAILED")
        self.advance()
        return failed

    def _unsent(self) -> list[str]:
        batches = list(self.queue) + (self.main if self.phase in (Phase.CANARY, Phase.CANARY_WAIT) else [])
        return [i for b in batches for i in b.desktop_ids]

    def halt(self, reason: str) -> None:
        if self.phase is Phase.HALTED:
            return
        unsent = self._unsent()
        self.phase = Phase.HALTED
        self.queue.clear()
        self.events.append(
            GroupHalted(event="group_halted", group=self.name, reason=reason, failures=self.failures, not_started=len(unsent))
        )

    def defer(self, reason: str) -> list[str]:
        """Stop sending for now without failing (the maintenance window closed): what was not
        sent is left for a later run. Returns those desktops."""
        if self.phase in (Phase.HALTED, Phase.DONE):
            return []
        unsent = self._unsent()
        self.phase = Phase.DONE
        self.queue.clear()
        self.main = []
        if unsent:
            self.events.append(GroupDeferred(event="group_deferred", group=self.name, reason=reason, desktop_ids=unsent))
        return unsent

    def advance(self) -> None:
        if self.phase is Phase.CANARY and not self.queue and self.calls_running == 0:
            self.phase = Phase.CANARY_WAIT
        if self.phase is Phase.CANARY_WAIT and not (self.canary_ids & set(self.in_flight)):
            if self.canaries_passed:
                self._start_main()
            else:
                self.halt("no canary desktop could be rebuilt (busy or refused), so the wave was not proven")
        if self.phase is Phase.MAIN and not self.queue and self.calls_running == 0:
            self.phase = Phase.DONE

    @property
    def blocked_on_jobs(self) -> bool:
        """Waiting for rebuilds to finish before it may send more."""
        if self.phase is Phase.CANARY_WAIT:
            return True
        capacity = self._capacity()
        return bool(self.queue) and capacity is not None and capacity <= 0 and bool(self.in_flight)

