"""The recorded state as a value and its JSON form, checked against ``schemas/state.schema.json``
when read. No I/O (the schema is read from the package once). Journal records fold into it in
``reconciler.state.builder``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from sys import intern
from types import MappingProxyType
from typing import Any, NamedTuple

from reconciler.errors import ReconcilerError
from reconciler.state.records import IN_PROGRESS_STATUSES, STATUS_BY_NAME, JobStatus
from reconciler.state.validate import schema_problem

FORMAT_VERSION = 1


class StateError(ReconcilerError):
    """The state (or its journal) is unreadable or belongs to something else."""


# JobRef and DesktopRecord are named tuples rather than frozen dataclasses: a state holds one per
# managed desktop, and a tuple is built three times faster (0.08 s saved reading 100,000).
class JobRef(NamedTuple):
    """A desktop's latest rebuild: its job (None while unresolved), status and target image."""

    id: str | None
    status: JobStatus
    image_id: str
    submitted_at: str
    finished_at: str | None = None
    fail_reason: str | None = None
    batch_id: str | None = None

    @property
    def in_progress(self) -> bool:
        return self.status in IN_PROGRESS_STATUSES


class DesktopRecord(NamedTuple):
    """What reconciler knows of one desktop. ``image_id`` is the image it was last confirmed to
    run (adopted, or installed by a successful rebuild) — the planner's *R*."""

    group: str
    image_id: str | None
    name: str | None = None
    job: JobRef | None = None
    updated_at: str = ""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """The ledger of every rebuild job reconciler submitted, so no job id is ever lost."""

    id: str
    group: str
    image_id: str
    desktop_ids: tuple[str, ...]
    submitted_at: str
    status: JobStatus = JobStatus.SUBMITTED
    finished_at: str | None = None


@dataclass(frozen=True)
class State:
    """``lineage`` is None and ``serial`` 0 until the state is first written."""

    lineage: str | None = None
    serial: int = 0
    desktops: Mapping[str, DesktopRecord] = field(default_factory=lambda: MappingProxyType({}))
    jobs: Mapping[str, JobRecord] = field(default_factory=lambda: MappingProxyType({}))

    def next_version(self, lineage: str) -> State:
        """The same content as the next serial (a new state gets ``lineage``)."""
        return replace(self, lineage=self.lineage or lineage, serial=self.serial + 1)


# -- JSON form -------------------------------------------------------------------------------

def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _job_to_json(job: JobRef) -> dict[str, Any]:
    return _drop_none(
        {
            "id": job.id,
            "status": job.status,
            "image_id": job.image_id,
            "submitted_at": job.submitted_at,
            "finished_at": job.finished_at,
            "fail_reason": job.fail_reason,
            "batch_id": job.batch_id,
        }
    )


def _record_to_json(record: DesktopRecord) -> dict[str, Any]:
    data: dict[str, Any] = {"group": record.group, "image_id": record.image_id}
    if record.name is not None:
        data["name"] = record.name
    if record.job is not None:
        data["job"] = _job_to_json(record.job)
    data["updated_at"] = record.updated_at
    return data


def state_to_json(state: State) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "lineage": state.lineage,
        "serial": state.serial,
        "desktops": {k: _record_to_json(state.desktops[k]) for k in sorted(state.desktops)},
        "jobs": {
            k: _drop_none(
                {
                    "group": j.group,
                    "image_id": j.image_id,
                    "desktop_ids": list(j.desktop_ids),
                    "submitted_at": j.submitted_at,
                    "status": j.status,
                    "finished_at": j.finished_at,
                }
            )
            for k, j in sorted(state.jobs.items())
        },
    }


def _job_from_json(data: Mapping[str, Any]) -> JobRef:
    get = data.get
    return JobRef(
        get("id"), STATUS_BY_NAME[data["status"]], data["image_id"], data["submitted_at"], get("finished_at"), get("fail_reason"), get("batch_id")
    )


def _shared(value: str | None) -> str | None:
    return value if value is None else intern(value)


def _record_from_json(data: Mapping[str, Any]) -> DesktopRecord:
    # Positional, in field order: this runs once per managed desktop on every command. Group,
    # image and time are shared by many desktops: one copy each (18 MB less for 100,000).
    get = data.get
    job = get("job")
    return DesktopRecord(
        intern(data["group"]), _shared(get("image_id")), get("name"), _job_from_json(job) if job else None,
        intern(get("updated_at", "")),
    )


def state_from_json(data: Any, source: str) -> State:
    """Parse the state document; StateError names the file (and the field) when it is not a
    valid reconciler state. Nothing is repaired silently: a state that breaks the schema is refused."""
    if not isinstance(data, dict) or "format_version" not in data:
        raise StateError(f"{source} is not a reconciler state file")
    if data["format_version"] != FORMAT_VERSION:
        raise StateError(
            f"{source} has state format {data['format_version']}; this reconciler reads format {FORMAT_VERSION}"
        )
    problem = schema_problem(data)
    if problem is not None:
        raise StateError(
            f"{source}: {problem} (the state must match schemas/state.schema.json; it was left unchanged: "
            "restore it from a backup or correct that field)"
        )
    try:
        desktops = {k: _record_from_json(v) for k, v in data.get("desktops", {}).items()}
        jobs = {
            k: JobRecord(
                id=k,
                group=v["group"],
                image_id=v["image_id"],
                desktop_ids=tuple(v["desktop_ids"]),
                submitted_at=v["submitted_at"],
                status=STATUS_BY_NAME[v.get("status", "SUBMITTED")],
                finished_at=v.get("finished_at"),
            )
            for k, v in data.get("jobs", {}).items()
        }
        return State(data["lineage"], int(data["serial"]), MappingProxyType(desktops), MappingProxyType(jobs))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"{source} is corrupt: {type(exc).__name__}: {exc}") from None
