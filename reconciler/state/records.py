"""The journal's record kinds and the job statuses, as types. No I/O.

A record is a JSON object with a ``type`` field; each kind below is a ``TypedDict`` whose ``type``
is a literal, so a record built with a misspelt kind or field is a type error, and ``JournalRecord``
(their union) is what the recorder appends and the state builder folds. Records stay plain dicts
at run time: the journal stores exactly their JSON, and replaying thousands of them costs no
conversion. ``parse_record`` checks a record read back from a journal before it is folded.

Each rebuild call is bracketed: ``intent`` before it is sent, then ``submitted`` (a job id),
``rejected`` (the call certainly started nothing) or ``unknown`` (the answer was lost; the
desktops stay UNKNOWN until a ``resolved`` record says what the live API showed). ``job_status``
records observed sub-jobs; ``adopt`` and ``forget`` change what is managed; ``begin`` and ``end``
mark a run.
"""

# No ``from __future__ import annotations`` here: TypedDict reads ``NotRequired`` from the
# evaluated annotations to know which fields a record must have.
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict, cast


class JobStatus(StrEnum):
    """A desktop's (or a ledger job's) rebuild status. SUBMITTED: job id known, not observed
    yet. UNKNOWN: the rebuild call was sent but its answer was lost; the next look at the live
    API resolves it before anything is re-sent. The others are what the service reports."""

    SUBMITTED = "SUBMITTED"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"

    @property
    def in_progress(self) -> bool:
        return self in IN_PROGRESS_STATUSES

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


IN_PROGRESS_STATUSES = frozenset({JobStatus.SUBMITTED, JobStatus.WAITING, JobStatus.RUNNING, JobStatus.UNKNOWN})
FINISHED_STATUSES = frozenset({JobStatus.SUCCESS, JobStatus.FAILED})
# Text -> status by dict lookup: a state holds one status per desktop, and calling the enum
# class is ten times slower than indexing a dict.
STATUS_BY_NAME: Mapping[str, JobStatus] = {status.value: status for status in JobStatus}


def observed_status(text: str) -> JobStatus:
    """A status the service reported for a sub-job. One outside the documented four is taken as
    still running: the job exists and is not known to have finished."""
    return STATUS_BY_NAME.get(text, JobStatus.RUNNING)


class RecordKind(StrEnum):
    BEGIN = "begin"
    INTENT = "intent"
    SUBMITTED = "submitted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    RESOLVED = "resolved"
    JOB_STATUS = "job_status"
    ADOPT = "adopt"
    FORGET = "forget"
    END = "end"


class BeginRecord(TypedDict):
    """A run starts. A segment whose ``base_serial`` is older than the state was folded already."""

    type: Literal["begin"]
    at: str
    lineage: str
    base_serial: int
    operation: str


class BatchFields(TypedDict):
    """Names one rebuild call: the fields every record of its bracket carries."""

    batch_id: str
    group: str
    desktop_ids: list[str]


class IntentRecord(BatchFields):
    type: Literal["intent"]
    at: str
    image_id: str
    names: NotRequired[dict[str, str | None]]


class SubmittedRecord(BatchFields):
    type: Literal["submitted"]
    at: str
    job_id: str
    image_id: str
    names: NotRequired[dict[str, str | None]]


class RejectedRecord(BatchFields):
    """The call certainly started no job (refused, or never sent)."""

    type: Literal["rejected"]
    at: str
    error: NotRequired[str]


class UnknownRecord(BatchFields):
    """The call's answer was lost: its desktops stay UNKNOWN until resolved."""

    type: Literal["unknown"]
    at: str
    error: NotRequired[str]


class SubJobSeen(TypedDict):
    """One desktop's sub-job as observed; ``status`` is the service's text."""

    job_id: str
    status: str
    fail_reason: NotRequired[str | None]


class LostCallFound(TypedDict):
    """What the live API showed of a desktop a lost call was meant for: the job it got (with
    the sub-job's status then), or ``job_id`` null when the call never reached it."""

    job_id: str | None
    status: NotRequired[str]
    fail_reason: NotRequired[str | None]


class ResolvedRecord(TypedDict):
    type: Literal["resolved"]
    at: str
    desktops: dict[str, LostCallFound]


class JobStatusRecord(TypedDict):
    """Observed sub-jobs by desktop, and the overall status of their ledger jobs."""

    type: Literal["job_status"]
    at: str
    desktops: dict[str, SubJobSeen]
    jobs: NotRequired[dict[str, str]]


class AdoptedDesktop(TypedDict):
    group: str
    image_id: str | None
    name: str | None


class AdoptRecord(TypedDict):
    type: Literal["adopt"]
    at: str
    desktops: dict[str, AdoptedDesktop]


class ForgetRecord(TypedDict):
    type: Literal["forget"]
    at: str
    desktop_ids: list[str]


class EndRecord(TypedDict):
    """The run finished its work; folds to nothing."""

    type: Literal["end"]
    at: str


JournalRecord = (
    BeginRecord
    | IntentRecord
    | SubmittedRecord
    | RejectedRecord
    | UnknownRecord
    | ResolvedRecord
    | JobStatusRecord
    | AdoptRecord
    | ForgetRecord
    | EndRecord
)

RECORD_TYPES: Mapping[RecordKind, type[Any]] = {
    RecordKind.BEGIN: BeginRecord,
    RecordKind.INTENT: IntentRecord,
    RecordKind.SUBMITTED: SubmittedRecord,
    RecordKind.REJECTED: RejectedRecord,
    RecordKind.UNKNOWN: UnknownRecord,
    RecordKind.RESOLVED: ResolvedRecord,
    RecordKind.JOB_STATUS: JobStatusRecord,
    RecordKind.ADOPT: AdoptRecord,
    RecordKind.FORGET: ForgetRecord,
    RecordKind.END: EndRecord,
}
# Records that mark a run's start and end and change nothing in the state.
RUN_MARKERS = frozenset({RecordKind.BEGIN, RecordKind.END})
# Fields a journal written before a field existed may lack; folding defaults them.
_LENIENT: Mapping[RecordKind, frozenset[str]] = {
    RecordKind.BEGIN: frozenset({"lineage", "base_serial", "operation"}),
}
_REQUIRED: Mapping[RecordKind, frozenset[str]] = {
    kind: frozenset(cls.__required_keys__) - _LENIENT.get(kind, frozenset()) for kind, cls in RECORD_TYPES.items()
}
_KIND_BY_NAME: Mapping[str, RecordKind] = {kind.value: kind for kind in RecordKind}


class MalformedRecord(ValueError):
    """A journal record of no known kind, or without a field its kind requires."""


def record_kind(record: Mapping[str, Any]) -> RecordKind:
    name = record.get("type")
    kind = _KIND_BY_NAME.get(name) if isinstance(name, str) else None
    if kind is None:
        raise MalformedRecord(f"record of unknown type {record.get('type')!r}")
    return kind


def parse_record(raw: Mapping[str, Any]) -> JournalRecord:
    """``raw`` (a record read back from a journal) as a typed record, after checking its kind
    and required fields. The values' types are checked where they are folded."""
    kind = record_kind(raw)
    missing = _REQUIRED[kind] - raw.keys()
    if missing:
        raise MalformedRecord(f"malformed {kind.value!r} record (without {', '.join(sorted(missing))})")
    return cast(JournalRecord, raw)
