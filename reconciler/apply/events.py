"""The events an apply reports as it goes — one ``TypedDict`` per kind — and ``Emit``, the seam
that receives them. No I/O.

Events are plain dicts on the wire: ``apply --json`` prints each as one JSON line exactly as it
is, so the shapes below are the wire format. The applier builds every event as its TypedDict, so
a misspelt kind or field is a type error where the event is made, and adds ``at`` (UTC, whole
seconds) when it emits it.

Listening to an apply: pass any ``Emit`` — a function taking one event as a dict — as ``emit=``
to ``Applier`` (or ``StateTransaction.execute``). It is called once per event, in order, one call at
a time, on the thread that runs the apply (never on a worker thread), so it needs no locking of
its own, and should return quickly (a slow listener slows the rollout). Check ``event["event"]``
against ``EventKind`` and read the fields its TypedDict names. ``fan_out`` gives several listeners
one seam (the terminal printer and, say, metrics and notifications).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict


class EventKind(StrEnum):
    PLAN = "plan"
    WAVE_STARTED = "wave_started"
    BATCH_SUBMITTED = "batch_submitted"
    BATCH_FAILED = "batch_failed"
    BATCH_UNKNOWN = "batch_unknown"
    DESKTOPS_BUSY = "desktops_busy"
    JOB_FINISHED = "job_finished"
    GROUP_HALTED = "group_halted"
    GROUP_DEFERRED = "group_deferred"
    DESKTOPS_DEFERRED = "desktops_deferred"
    ADOPTED = "adopted"
    FORGOTTEN = "forgotten"
    WAIT_PROGRESS = "wait_progress"
    POLL_FAILED = "poll_failed"
    SUMMARY = "summary"


class WaveStarted(TypedDict):
    event: Literal["wave_started"]
    group: str
    wave: str
    desktops: int
    at: NotRequired[str]


class BatchSubmitted(TypedDict):
    event: Literal["batch_submitted"]
    group: str
    wave: str
    batch_id: str
    job_id: str
    desktop_ids: list[str]
    at: NotRequired[str]


class BatchFailed(TypedDict):
    """A call refused (its desktops will not be rebuilt by this run)."""

    event: Literal["batch_failed"]
    group: str
    batch_id: str
    desktop_ids: list[str]
    error: str
    status: int | None
    error_code: str | None
    at: NotRequired[str]


class BatchUnknown(TypedDict):
    """A call whose outcome is unknown: its desktops are looked up before anything is re-sent."""

    event: Literal["batch_unknown"]
    group: str
    batch_id: str
    desktop_ids: list[str]
    error: str
    at: NotRequired[str]


class DesktopsBusy(TypedDict):
    event: Literal["desktops_busy"]
    group: str
    desktop_ids: list[str]
    error: str
    at: NotRequired[str]


class JobFinished(TypedDict):
    event: Literal["job_finished"]
    job_id: str
    status: str
    succeeded: int
    failed: int
    at: NotRequired[str]


class GroupHalted(TypedDict):
    event: Literal["group_halted"]
    group: str
    reason: str
    failures: int
    not_started: int
    at: NotRequired[str]


class GroupDeferred(TypedDict):
    """The group sends nothing more in this run (its window closed); the rest waits."""

    event: Literal["group_deferred"]
    group: str
    reason: str
    desktop_ids: list[str]
    at: NotRequired[str]


class DesktopsDeferred(TypedDict):
    event: Literal["desktops_deferred"]
    group: str
    reason: str
    desktop_ids: list[str]
    at: NotRequired[str]


class StateOnly(TypedDict):
    """Desktops adopted into, or forgotten from, the state (no API call)."""

    event: Literal["adopted", "forgotten"]
    desktops: int
    at: NotRequired[str]


class WaitProgress(TypedDict):
    event: Literal["wait_progress"]
    finished: int
    total: int
    at: NotRequired[str]


class PollFailed(TypedDict):
    event: Literal["poll_failed"]
    error: str
    failures: int
    at: NotRequired[str]


# What a group's rollout reports by itself (drained by the applier, which emits them).
GroupEvent = WaveStarted | GroupHalted | GroupDeferred
# Every event an apply emits. ``plan`` and ``summary`` are the CLI's own, around it.
ApplyEvent = (
    GroupEvent | BatchSubmitted | BatchFailed | BatchUnknown | DesktopsBusy | JobFinished | DesktopsDeferred
    | StateOnly | WaitProgress | PollFailed
)
# What a listener receives: the event's own dict (see the module docstring).
Emit = Callable[[dict[str, Any]], None]
# ``apply --json`` streams every kind.
JSON_EVENTS = frozenset(EventKind)


def fan_out(*listeners: Emit) -> Emit:
    """One seam for several listeners, called in the order given."""

    def emit(event: dict[str, Any]) -> None:
        for listener in listeners:
            listener(event)

    return emit
