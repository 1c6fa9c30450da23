"""Checking a state document against ``schemas/state.schema.json``. No I/O (the schema is read
from the package once, and only to explain a refusal).

Every command reads the state, and a state holds one record per managed desktop: the check of a
valid state must cost little next to parsing its JSON. ``state_is_valid`` is the schema written
out as plain type tests (about a third of what a compiled generic check costs); jsonschema runs
only when it says no, to name the field. Tests check that the two agree.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

from reconciler.state.records import STATUS_BY_NAME, JobStatus

TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})")
_TOP = frozenset({"format_version", "lineage", "serial", "desktops", "jobs"})
_DESKTOP = frozenset({"group", "image_id", "name", "updated_at", "job"})
_DESKTOP_REQUIRED = frozenset({"group", "image_id", "updated_at"})
_JOB = frozenset({"id", "status", "image_id", "submitted_at", "finished_at", "fail_reason", "batch_id"})
_JOB_REQUIRED = frozenset({"status", "image_id", "submitted_at"})
_LEDGER = frozenset({"group", "image_id", "desktop_ids", "submitted_at", "status", "finished_at"})
_LEDGER_REQUIRED = frozenset({"group", "image_id", "desktop_ids", "submitted_at", "status"})
_LEDGER_STATUSES = frozenset(STATUS_BY_NAME) - {JobStatus.UNKNOWN.value}


@functools.lru_cache(maxsize=1 << 12)
def _timestamp_text(value: str) -> bool:
    return TIMESTAMP.fullmatch(value) is not None


def _timestamp(value: Any) -> bool:
    # Cached: the desktops of one batch share their times, and a lookup is cheaper than a match.
    return type(value) is str and _timestamp_text(value)


def _job_ok(job: Any) -> bool:
    if type(job) is not dict or not _JOB.issuperset(job) or not job.keys() >= _JOB_REQUIRED:
        return False
    status, get = job["status"], job.get
    return (
        type(status) is str and status in STATUS_BY_NAME
        and type(job["image_id"]) is str
        and _timestamp(job["submitted_at"])
        and ("finished_at" not in job or _timestamp(job["finished_at"]))
        and type(get("id", "")) is str and type(get("fail_reason", "")) is str and type(get("batch_id", "")) is str
    )


def _desktop_ok(record: Any) -> bool:
    if type(record) is not dict or not _DESKTOP.issuperset(record) or not record.keys() >= _DESKTOP_REQUIRED:
        return False
    image = record["image_id"]
    return (
        type(record["group"]) is str
        and (image is None or type(image) is str)
        and type(record["updated_at"]) is str
        and type(record.get("name", "")) is str
        and ("job" not in record or _job_ok(record["job"]))
    )


def _ledger_ok(job: Any) -> bool:
    if type(job) is not dict or not _LEDGER.issuperset(job) or not job.keys() >= _LEDGER_REQUIRED:
        return False
    ids = job["desktop_ids"]
    status = job["status"]
    return (
        type(job["group"]) is str and type(job["image_id"]) is str
        and type(ids) is list and all(type(i) is str for i in ids)
        and _timestamp(job["submitted_at"])
        and type(status) is str and status in _LEDGER_STATUSES
        and ("finished_at" not in job or _timestamp(job["finished_at"]))
    )


def state_is_valid(data: Any) -> bool:
    """Whether ``data`` matches the state schema."""
    if type(data) is not dict or not _TOP.issuperset(data) or not _TOP.issubset(data):
        return False
    version, lineage, serial, desktops, jobs = (data[k] for k in ("format_version", "lineage", "serial", "desktops", "jobs"))
    return (
        type(version) is int and version == 1
        and (lineage is None or type(lineage) is str)
        and type(serial) is int and serial >= 0
        and type(desktops) is dict and all(map(_desktop_ok, desktops.values()))
        and type(jobs) is dict and all(map(_ledger_ok, jobs.values()))
    )


@functools.cache
def state_schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        resources.files("reconciler").joinpath("schemas", "state.schema.json").read_text("utf-8")
    )
    return document


def _field(path: Any) -> str:
    parts = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif str(part).isidentifier():
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part)}]")
    return "".join(parts).lstrip(".") or "(the document)"


def _first_error(data: Any) -> tuple[Any, list[Any]] | None:
    """jsonschema's best error and the path to it. Only the first entry the plain check refuses
    is given to jsonschema: on 100,000 desktops, validating them all would take half a minute."""
    import jsonschema

    schema = state_schema()
    instance, prefix, definition = data, [], None
    for section, check, name in (("desktops", _desktop_ok, "desktop"), ("jobs", _ledger_ok, "ledgerJob")):
        entries = data.get(section) if isinstance(data, dict) else None
        if isinstance(entries, dict):
            bad = next((k for k, v in entries.items() if not check(v)), None)
            if bad is not None:
                instance, prefix, definition = entries[bad], [section, bad], name
                break
    if definition is not None:
        schema = {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    elif isinstance(data, dict):  # the problem is at the top: its records need not be checked again
        instance = {k: ({} if k in ("desktops", "jobs") and isinstance(v, dict) else v) for k, v in data.items()}
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(instance))
    return None if error is None else (error, prefix + list(error.absolute_path))


def schema_problem(data: Any) -> str | None:
    """None when ``data`` is a valid state; otherwise its first problem, naming the field."""
    if state_is_valid(data):
        return None
    found = _first_error(data)
    if found is None:  # the plain check is stricter than the schema here: name no field wrongly
        return "it does not match the state schema"
    error, path = found
    message = error.message
    if error.validator == "pattern":  # the only pattern is the timestamp's
        message = f"{error.instance!r} is not a date and time with a time zone (like 2026-11-27T10:00:00+00:00)"
    return f"field {_field(path)}: {message}"
