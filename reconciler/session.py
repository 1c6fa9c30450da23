"""The use cases behind the CLI, as library calls: plan, apply (saved or fresh), refresh-only,
job tracking and state surgery. File and network I/O through a ``StateStore`` and a
``WorkspaceClient``; no printing, no exit codes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.cloud.models import Desktop
from reconciler.model import Action, Change, DesktopGroup, ManifestSet, Reason
from reconciler.plan import Plan, check_current
from reconciler.planner import Inventory, PlanOptions, selection
from reconciler.planner import plan as make_plan
from reconciler.refresh import desktops_by_id, observe_jobs, read_inventory, resolve_unknown
from reconciler.state import State, StateError, StateStore, fold
from reconciler.state.builder import StateBuilder
from reconciler.state.records import BeginRecord, EndRecord, JobStatus, JournalRecord, RecordKind
from reconciler.state.store import JournalWriteError, Salvage, StateWriteError

if TYPE_CHECKING:  # the HTTP client and the applier are only needed when a command acts
    from reconciler.apply.engine import ApplyOptions, ApplyResult
    from reconciler.apply.events import Emit
    from reconciler.cloud.client import WorkspaceClient
    from reconciler.state.recorder import Recorder

Clock = Callable[[], datetime]
log = logging.getLogger("reconciler.state")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Snapshot:
    """The state as a run sees it: the file, plus a leftover journal folded in memory."""

    state: State
    disk_lineage: str | None
    disk_serial: int
    journal_digest: str | None
    journal: tuple[dict[str, Any], ...]


def snapshot(store: StateStore) -> Snapshot:
    disk = store.read()
    records = tuple(store.replay())
    folded = fold(disk, records) if records else disk
    if records:
        log.debug("folded %d journal records into the state at %s (serial %d)", len(records), store.location, disk.serial)
    return Snapshot(folded, disk.lineage, disk.serial, store.journal_digest() if records else None, records)


def _in_progress_live(client: WorkspaceClient, state: State) -> dict[str, Desktop]:
    in_progress = sorted(i for i, r in state.desktops.items() if r.job is not None and r.job.in_progress)
    return desktops_by_id(client, in_progress)


def let_lost_calls_land(state: State, horizon: float, clock: Clock = utc_now, sleep: Callable[[float], None] = time.sleep) -> float:
    """Before anything live is read: give rebuild calls whose answer was lost time to reach the
    service; return the seconds waited.

    A run killed just after sending a call leaves the request on its way, and a gateway that
    answered 504 may forward it later still: looked up at once, it shows no sub-job and no busy
    desktop, and would be sent again. So the lookup waits until every lost call is as old as
    the lost-call horizon (the client's ``lost_call_horizon``), the wait an apply gives its own
    lost calls. Journal times are whole seconds, rounded down: one more second keeps the wait
    whole. The dead run sends nothing more, so no wait is longer than that from now.
    """
    sent = [r.job.submitted_at for r in state.desktops.values() if r.job is not None and r.job.status == JobStatus.UNKNOWN]
    if not sent:
        return 0.0
    youngest = max(datetime.fromisoformat(at) for at in sent)
    wait = min((youngest - clock()).total_seconds() + horizon + 1.0, horizon + 1.0)
    if wait <= 0:
        return 0.0
    sleep(wait)
    return wait


def observations(client: WorkspaceClient, state: State, live: Mapping[str, Desktop], now: datetime) -> list[JournalRecord]:
    """Journal records for lost calls resolved and unfinished jobs observed, in order."""
    records: list[JournalRecord] = []
    resolved = resolve_unknown(client, state, live, now)
    if resolved is not None:
        records.append(resolved)
        state = fold(state, [resolved])
    jobs = observe_jobs(client, state, live, now)
    if jobs is not None:
        records.append(jobs)
    return records


@dataclass(frozen=True)
class Planned:
    plan: Plan
    observed: tuple[JournalRecord, ...]  # records to journal if this plan is applied now


def _refreshed(client: WorkspaceClient, manifests: ManifestSet, state: State, now: datetime) -> tuple[State, Inventory, list[JournalRecord]]:
    """The live fleet, and the state with what the live API showed of lost calls and unfinished
    jobs folded in (those records are journalled if the plan is applied)."""
    let_lost_calls_land(state, client.lost_call_horizon)
    inventory = read_inventory(client, manifests.groups, state)
    observed = observations(client, state, dict(inventory.desktops), now)
    return fold(state, observed), inventory, observed


def _stamped(plan: Plan, manifests: ManifestSet, snap: Snapshot, now: datetime) -> Plan:
    """The plan tied to the state and manifests it was made from."""
    return replace(
        plan,
        lineage=snap.disk_lineage,
        serial=snap.disk_serial,
        journal_digest=snap.journal_digest,
        manifest_digest=manifests.digest,
        manifest_files=manifests.file_digests,
        settings=manifests.settings,
        created_at=now.isoformat(timespec="seconds"),
    )


def build_plan(
    manifests: ManifestSet,
    snap: Snapshot,
    client: WorkspaceClient | None,
    options: PlanOptions,
    now: datetime,
) -> Planned:
    """Plan against the snapshot; with a client, refresh from the live fleet first."""
    state, inventory = snap.state, None
    observed: list[JournalRecord] = []
    if client is not None:
        state, inventory, observed = _refreshed(client, manifests, state, now)
    result = make_plan(manifests.groups, state, inventory, options)
    if client is not None and inventory is not None:
        from reconciler.catalogue import verify_images

        verify_images(client, result, inventory.desktops)  # before anyone can apply the plan
    return Planned(_stamped(result, manifests, snap, now), tuple(observed))


def refresh_only_plan(manifests: ManifestSet, snap: Snapshot, client: WorkspaceClient, options: PlanOptions) -> Planned:
    """A plan that records every managed desktop's live image (and rebuilds nothing), limited
    by ``--target``/``--exclude`` like any plan."""
    state, inventory, observed = _refreshed(client, manifests, snap.state, options.now)
    base = make_plan(manifests.groups, state, inventory, replace(options, ignore_window=True))
    owners = _owners(manifests.groups, inventory)
    members: dict[str, list[str]] = {}
    for desktop_id, owner in owners.items():
        members.setdefault(owner.name, []).append(desktop_id)
    picked = selection(options, manifests.groups, members, state)
    changes: list[Change] = []
    for desktop_id, group in sorted(owners.items()):
        live, record = inventory.desktops.get(desktop_id), state.desktops.get(desktop_id)
        if live is None or live.is_rebuilding or (record and record.job and record.job.in_progress):
            continue
        if record is None or record.image_id != live.image_id or record.group != group.name:
            reason = Reason.ALREADY_CURRENT if live.image_id == group.image.id else Reason.LIVE_IMAGE
            changes.append(Change(desktop_id, Action.ADOPT, reason, group.name, live.name, record.image_id if record else None, live.image_id))
    if picked is not None:
        changes = [c for c in changes if picked(c)]
    plan = replace(base, changes=tuple(changes), refresh_only=True)
    return Planned(_stamped(plan, manifests, snap, options.now), tuple(observed))


def _owners(groups: Sequence[DesktopGroup], inventory: Inventory) -> dict[str, DesktopGroup]:
    owners = {}
    for group in groups:
        for desktop_id in (*group.ids, *inventory.selector_matches.get(group.name, ())):
            owners[desktop_id] = group
    return owners


def _journal_lineage(records: Iterable[dict[str, Any]]) -> str | None:
    """The lineage a killed run gave a state it never got to write. Reusing it keeps every
    segment of the journal in one lineage: a run killed after writing the state but before
    removing the journal leaves segments the next run must recognise as its own."""
    return next((r["lineage"] for r in records if r.get("type") == RecordKind.BEGIN and r.get("lineage")), None)


class StateTransaction:
    """The state, locked, for one command that changes it (``apply``, ``state rm``, ``jobs
    --refresh``): read it (with any leftover journal), journal each change, write it once.

    Leaving the ``with`` block writes the state once (if anything was recorded), removes the
    journal, and releases the lock. Declining a plan changes nothing.
    """

    def __init__(self, store: StateStore, snap: Snapshot, lock_id: str, now: Clock, operation: str = "apply") -> None:
        self.store = store
        self.snap = snap
        self.lock_id = lock_id
        self.now = now
        self.operation = operation
        self.recorder: Recorder | None = None
        self._lineage = snap.disk_lineage or _journal_lineage(snap.journal) or str(uuid.uuid4())

    def check_saved(self, plan: Plan) -> None:
        check_current(plan, self.snap.disk_lineage, self.snap.disk_serial, self.snap.journal_digest)

    def _begin(self) -> Recorder:
        if self.recorder is None:
            from reconciler.state.recorder import Recorder

            recorder = Recorder(self.store, self.snap.state, self.now)
            begin: BeginRecord = {
                "type": "begin", "at": recorder.at(), "lineage": self._lineage, "base_serial": self.snap.disk_serial, "operation": self.operation,
            }
            recorder.record(begin)
            self.recorder = recorder
        return self.recorder

    def submitted_jobs(self) -> list[str]:
        """Job ids this transaction recorded (all of them are in the journal)."""
        return self.recorder.new_jobs() if self.recorder else []

    def record(self, records: Iterable[JournalRecord]) -> None:
        recorder = self._begin()
        for record in records:
            recorder.record(record)

    def current(self) -> State:
        return self.recorder.state() if self.recorder else self.snap.state

    def observe(self, client: WorkspaceClient) -> int:
        """Bring unfinished jobs up to date (in-flight limits need it); return how many
        desktops are still being rebuilt."""
        state = self.current()
        let_lost_calls_land(state, client.lost_call_horizon)
        live = _in_progress_live(client, state)
        records = observations(client, state, live, self.now())
        if records:
            self.record(records)
        return sum(1 for r in self.current().desktops.values() if r.job is not None and r.job.in_progress)

    def execute(self, plan: Plan, client: WorkspaceClient, options: ApplyOptions, emit: Emit) -> ApplyResult:
        recorder = self._begin()
        from reconciler.apply.engine import Applier

        result = Applier(client, recorder, options=options, emit=emit).run(plan)
        end: EndRecord = {"type": "end", "at": recorder.at()}
        recorder.record(end)
        return result

    def finish(self) -> State | None:
        """Write the state if the run changed it (or recovered a journal). A run that changed
        nothing leaves the serial as it was, so the saved plans of open reviews stay valid."""
        changed = self.recorder is not None and self.recorder.changed
        if not changed and not self.snap.journal:
            if self.recorder is not None:
                self.store.discard()  # only this run's begin/end markers
            return None
        base = self.recorder.state() if self.recorder else self.snap.state
        final = base.next_version(self._lineage)
        self.store.write(final)
        self.store.discard()
        log.debug("wrote the state at %s (serial %d) and removed its journal", self.store.location, final.serial)
        return final


def track_jobs(
    session: StateTransaction, client: WorkspaceClient, *, wait: bool, poll_interval: float, emit: Emit, sleep: Callable[[float], None] = time.sleep
) -> None:
    """``jobs --refresh`` (one look) and ``jobs --wait`` (look until nothing is running)."""
    total = sum(1 for r in session.current().desktops.values() if r.job is not None and r.job.in_progress)
    while True:
        left = session.observe(client)
        emit({"event": "wait_progress", "finished": total - left, "total": total})
        if not wait or left == 0:
            return
        sleep(poll_interval)


@contextmanager
def state_transaction(
    store: StateStore, *, lock_timeout: float = 0.0, operation: str = "apply", now: Clock = utc_now
) -> Iterator[StateTransaction]:
    """Lock the state for ``operation``, yield the transaction, write and unlock on the way out.

    A journal or state write that fails is reported with the jobs this run submitted: the
    journal holds them, and the next run folds it in."""
    info = store.lock(operation, timeout=lock_timeout)
    log.debug("took the lock on %s for %s (ID %s)", store.location, operation, info.id)
    try:
        transaction = StateTransaction(store, snapshot(store), info.id, now, operation)
        try:
            yield transaction
        except JournalWriteError as exc:
            exc.submitted = transaction.submitted_jobs()
            _finish_after_failure(transaction)
            raise
        except BaseException:
            _finish_after_failure(transaction)
            raise
        try:
            transaction.finish()
        except StateWriteError as exc:
            exc.submitted = transaction.submitted_jobs()
            raise
    finally:
        store.unlock(info.id)
        log.debug("released the lock on %s (ID %s)", store.location, info.id)


def _finish_after_failure(transaction: StateTransaction) -> None:
    """Write what was recorded before a failure. If that fails too, the journal keeps it all
    (it is only removed after the state is written): the first failure is the one reported."""
    try:
        transaction.finish()
    except StateError as exc:
        log.debug("the state was not written after a failure (%s); the journal keeps the records", exc)


@dataclass(frozen=True)
class JournalRepair:
    """What ``repair_journal`` did: the salvage (records kept, lines set aside and where), the
    records that were readable but could not be folded (by position), and the state written."""

    salvage: Salvage
    unfoldable: tuple[int, ...]
    state: State | None


def repair_journal(store: StateStore, *, lock_timeout: float = 0.0, now: Clock = utc_now) -> JournalRepair:
    """``state repair-journal``: fold the readable records of a journal that ``replay`` refuses
    into the state, after the store set its unreadable lines aside (nothing is deleted). Lines
    lost this way only cost a look at the live API: a desktop whose call's outcome is gone stays
    UNKNOWN and is resolved before anything is sent again."""
    info = store.lock("state repair-journal", timeout=lock_timeout)
    try:
        disk = store.read()
        records, salvage = store.salvage_journal()
        foreign = {r.get("lineage") for r in records if r.get("type") == RecordKind.BEGIN} - {None, disk.lineage}
        if disk.lineage and foreign:
            raise StateError(
                f"the journal of {store.location} belongs to state lineage {', '.join(sorted(map(str, foreign)))}, "
                f"not {disk.lineage}: it is another state's journal; move it aside"
            )
        builder, unfoldable, folded = StateBuilder(disk), [], []
        for position, record in enumerate(records, start=1):
            try:
                builder.apply(record)
            except StateError:
                unfoldable.append(position)
                continue
            folded.append(record)
        snap = Snapshot(builder.build(), disk.lineage, disk.serial, None, tuple(folded))
        transaction = StateTransaction(store, snap, info.id, now, "state repair-journal")
        written = transaction.finish() if folded else None
        if not folded and salvage.set_aside:
            store.discard()  # nothing readable in it; its copy is kept beside it
        return JournalRepair(salvage, tuple(unfoldable), written)
    finally:
        store.unlock(info.id)


# The names before the rename, kept until the branches started before it have landed.
ApplySession = StateTransaction
apply_session = state_transaction
