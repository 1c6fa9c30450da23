"""How journal records fold into a state. No I/O.

One fold serves both the normal path (the recorder applies each record to its in-memory state as
it appends it to the journal) and recovery (the next run replays a leftover journal), so the crash
path is the everyday path. Each record kind has one handler, named in ``StateBuilder``'s dispatch
table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from reconciler.state.records import (
    FINISHED_STATUSES,
    AdoptRecord,
    BeginRecord,
    EndRecord,
    ForgetRecord,
    IntentRecord,
    JobStatus,
    JobStatusRecord,
    JournalRecord,
    LostCallFound,
    MalformedRecord,
    RecordKind,
    RejectedRecord,
    ResolvedRecord,
    SubJobSeen,
    SubmittedRecord,
    UnknownRecord,
    observed_status,
    parse_record,
    record_kind,
)
from reconciler.state.state import DesktopRecord, JobRecord, JobRef, State, StateError


class StateBuilder:
    """Applies journal records to a state, in order. Mutable on purpose: a large run folds
    thousands of records, and copying 100,000 records per record would be quadratic."""

    def __init__(self, state: State) -> None:
        self.lineage = state.lineage
        self.serial = state.serial
        self.desktops: dict[str, DesktopRecord] = dict(state.desktops)
        self.jobs: dict[str, JobRecord] = dict(state.jobs)
        # batch_id -> the records the intent replaced (None: there was none), restored if the
        # call is known not to have happened
        self._pending: dict[str, dict[str, DesktopRecord | None]] = {}
        self._skipping = False
        # Every kind has exactly one handler; tests check the table covers RecordKind.
        self._handlers: Mapping[RecordKind, Callable[[Any], None]] = {
            RecordKind.BEGIN: self._on_begin,
            RecordKind.INTENT: self._on_intent,
            RecordKind.SUBMITTED: self._on_submitted,
            RecordKind.REJECTED: self._on_rejected,
            RecordKind.UNKNOWN: self._on_unknown,
            RecordKind.RESOLVED: self._on_resolved,
            RecordKind.JOB_STATUS: self._on_job_status,
            RecordKind.ADOPT: self._on_adopt,
            RecordKind.FORGET: self._on_forget,
            RecordKind.END: self._on_end,
        }

    def build(self) -> State:
        return State(self.lineage, self.serial, MappingProxyType(dict(self.desktops)), MappingProxyType(dict(self.jobs)))

    def apply_all(self, records: Iterable[Mapping[str, Any]]) -> StateBuilder:
        for record in records:
            self.apply(record)
        return self

    def apply(self, record: JournalRecord | Mapping[str, Any]) -> None:
        """Fold one record (typed, or as read back from a journal: checked first)."""
        try:
            kind = record_kind(record)
            if kind is not RecordKind.BEGIN and self._skipping:
                return
            self._handlers[kind](parse_record(record))
        except MalformedRecord as exc:
            raise StateError(f"the journal holds a {exc}") from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise StateError(
                f"the journal holds a malformed {record.get('type')!r} record ({type(exc).__name__}: {exc})"
            ) from None

    def _on_begin(self, record: BeginRecord) -> None:
        lineage = record.get("lineage")
        if lineage and self.lineage and lineage != self.lineage:
            raise StateError(
                f"the journal belongs to state lineage {lineage}, not {self.lineage}; move it aside to continue"
            )
        # A segment whose run already wrote its state (crash between the write and the journal's
        # removal) is in the state already; folding it again must change nothing.
        self._skipping = int(record.get("base_serial", 0)) < self.serial

    def _touch(self, desktop_id: str, at: str, **changes: Any) -> None:
        record = self.desktops.get(desktop_id)
        if record is None:
            record = DesktopRecord(group=changes.pop("group", ""), image_id=None)
        self.desktops[desktop_id] = record._replace(updated_at=at, **changes)

    def _on_intent(self, r: IntentRecord) -> None:
        names = r.get("names") or {}
        previous = {}
        for desktop_id in r["desktop_ids"]:
            previous[desktop_id] = self.desktops.get(desktop_id)
            job = JobRef(None, JobStatus.UNKNOWN, r["image_id"], r["at"], batch_id=r["batch_id"])
            self._touch(desktop_id, r["at"], group=r["group"], name=names.get(desktop_id), job=job)
        self._pending[r["batch_id"]] = previous

    def _on_submitted(self, r: SubmittedRecord) -> None:
        self._pending.pop(r["batch_id"], None)
        names = r.get("names") or {}
        for desktop_id in r["desktop_ids"]:
            job = JobRef(r["job_id"], JobStatus.SUBMITTED, r["image_id"], r["at"], batch_id=r["batch_id"])
            self._touch(desktop_id, r["at"], group=r["group"], name=names.get(desktop_id), job=job)
        self.jobs[r["job_id"]] = JobRecord(
            r["job_id"], r["group"], r["image_id"], tuple(r["desktop_ids"]), r["at"]
        )

    def _on_rejected(self, r: RejectedRecord) -> None:
        """The call definitely did not start a job (refused, or never sent)."""
        previous = self._pending.pop(r["batch_id"], {})
        for desktop_id, record in previous.items():
            if record is None:
                # No record before the intent: none after (a record without an image would
                # read as drift on the next plan).
                self.desktops.pop(desktop_id, None)
            else:
                self.desktops[desktop_id] = record

    def _on_unknown(self, r: UnknownRecord) -> None:
        # The desktops stay UNKNOWN (as the intent left them) until resolved from the live API.
        self._pending.pop(r["batch_id"], None)

    def _on_resolved(self, r: ResolvedRecord) -> None:
        """An UNKNOWN desktop looked up live: ``job_id`` found (with the sub-job's status then),
        or null when the call never reached it."""
        for desktop_id, found in r["desktops"].items():
            record = self.desktops.get(desktop_id)
            if record is None or record.job is None or record.job.status != JobStatus.UNKNOWN:
                continue
            job_id = found.get("job_id")
            if not job_id:
                if record.image_id is None:
                    del self.desktops[desktop_id]  # recorded only by the intent: as if never sent
                else:
                    self._touch(desktop_id, r["at"], job=None)
                continue
            self._touch(desktop_id, r["at"], job=record.job._replace(id=job_id, status=JobStatus.SUBMITTED))
            # A lost call's job has often finished by the time it is found: its status must
            # count exactly as an observed one (a SUCCESS confirms the image), or the next plan
            # sees a desktop on the desired image it never recorded and adopts it, dropping the job.
            self._observed(desktop_id, _as_seen(job_id, found), r["at"])
            self._ledger_add(job_id, desktop_id, r["at"])

    def _ledger_add(self, job_id: str, desktop_id: str, at: str) -> None:
        """Add a resolved desktop to its job in the ledger, whose status follows its desktops'."""
        job = self.desktops[desktop_id].job
        assert job is not None
        known = self.jobs.get(job_id)
        ids = tuple(sorted({*known.desktop_ids, desktop_id})) if known else (desktop_id,)
        statuses = [d.job.status for i in ids if (d := self.desktops.get(i)) and d.job and d.job.id == job_id]
        status = JobStatus.SUBMITTED if set(statuses) <= {JobStatus.SUBMITTED} else aggregate_status(statuses)
        finished = at if status in FINISHED_STATUSES else None
        self.jobs[job_id] = JobRecord(job_id, self.desktops[desktop_id].group, job.image_id, ids, job.submitted_at, status, finished)

    def _observed(self, desktop_id: str, seen: SubJobSeen, at: str) -> None:
        """One desktop's sub-job seen in ``status``; a SUCCESS confirms the job's image."""
        record = self.desktops.get(desktop_id)
        if record is None or record.job is None or record.job.id != seen["job_id"]:
            return
        status = observed_status(seen["status"])
        finished = at if status in FINISHED_STATUSES else None
        job = record.job._replace(status=status, finished_at=finished, fail_reason=seen.get("fail_reason"))
        image = record.job.image_id if status == JobStatus.SUCCESS else record.image_id
        self._touch(desktop_id, at, job=job, image_id=image)

    def _on_job_status(self, r: JobStatusRecord) -> None:
        """Observed sub-job statuses by desktop, and their ledger jobs' overall status."""
        for desktop_id, seen in r["desktops"].items():
            self._observed(desktop_id, seen, r["at"])
        for job_id, text in (r.get("jobs") or {}).items():
            if job_id in self.jobs:
                status = observed_status(text)
                finished = r["at"] if status in FINISHED_STATUSES else None
                self.jobs[job_id] = replace(self.jobs[job_id], status=status, finished_at=finished)

    def _on_adopt(self, r: AdoptRecord) -> None:
        for desktop_id, seen in r["desktops"].items():
            self._touch(desktop_id, r["at"], group=seen["group"], image_id=seen["image_id"], name=seen.get("name"), job=None)

    def _on_forget(self, r: ForgetRecord) -> None:
        for desktop_id in r["desktop_ids"]:
            self.desktops.pop(desktop_id, None)

    def _on_end(self, r: EndRecord) -> None:
        """Marks a run that finished its work; nothing to fold."""


def _as_seen(job_id: str, found: LostCallFound) -> SubJobSeen:
    seen: SubJobSeen = {"job_id": job_id, "status": found.get("status", JobStatus.SUBMITTED)}
    if "fail_reason" in found:
        seen["fail_reason"] = found["fail_reason"]
    return seen


def aggregate_status(statuses: Iterable[str]) -> JobStatus:
    """A job's overall status from its desktops' sub-job statuses."""
    values = set(statuses)
    if values <= {JobStatus.SUCCESS}:
        return JobStatus.SUCCESS
    if values <= {JobStatus.SUCCESS, JobStatus.FAILED}:
        return JobStatus.FAILED
    busy = JobStatus.RUNNING in values or JobStatus.SUCCESS in values or JobStatus.FAILED in values
    return JobStatus.RUNNING if busy else JobStatus.WAITING


def fold(state: State, records: Iterable[Mapping[str, Any]]) -> State:
    return StateBuilder(state).apply_all(records).build()
