"""The one adapter between the applier's progress events and what ``watch`` (and ``apply
--notify``) make of them: notices for webhooks and rebuild counts for metrics. No I/O.

The applier streams plain dicts today (``{"event": "batch_submitted", ...}``); if it grows typed
events, this module is the only reader to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import Change


@dataclass(frozen=True)
class Notice:
    """One notifiable event: ``kind`` is one of ``model.NOTIFICATION_EVENTS``."""

    kind: str
    text: str  # one line a person reads in a chat
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Submitted:
    group: str
    desktops: int


def notice_for(event: Mapping[str, Any]) -> Notice | None:
    """The notice an applier event is worth, if any."""
    kind = event.get("event")
    group = str(event.get("group", ""))
    if kind == "group_halted":
        return Notice("group_halted", f"group {group} halted: {event.get('reason')}",
                      {"group": group, "reason": event.get("reason"), "failures": event.get("failures")})
    if kind == "batch_failed":
        ids = list(event.get("desktop_ids", ()))
        return Notice("rebuild_failed", f"group {group}: rebuild of {len(ids)} desktops refused: {event.get('error')}",
                      {"group": group, "desktop_ids": ids, "error": event.get("error")})
    if kind == "job_finished" and int(event.get("failed", 0)) > 0:
        return Notice("rebuild_failed", f"job {event.get('job_id')}: {event.get('failed')} desktops failed to rebuild",
                      {"job_id": event.get("job_id"), "failed": event.get("failed"), "succeeded": event.get("succeeded")})
    return None


def submitted(event: Mapping[str, Any]) -> Submitted | None:
    """Rebuilds a call started (for ``reconciler_rebuilds_submitted_total``)."""
    if event.get("event") != "batch_submitted":
        return None
    return Submitted(str(event.get("group", "")), len(event.get("desktop_ids", ())))


def drift_notice(drifted: Sequence[Change]) -> Notice:
    groups: dict[str, int] = {}
    for change in drifted:
        groups[change.group or ""] = groups.get(change.group or "", 0) + 1
    listed = ", ".join(f"{name} {count}" for name, count in sorted(groups.items()))
    text = f"drift: {len(drifted)} desktop{'s' if len(drifted) != 1 else ''} changed outside reconciler ({listed})"
    return Notice("drift_detected", text, {"groups": groups, "desktop_ids": sorted(c.desktop_id for c in drifted)})


def apply_started(rebuilds: int, groups: Sequence[str]) -> Notice:
    return Notice("apply_started", f"apply started: {rebuilds} rebuilds in {', '.join(groups) or 'no group'}",
                  {"rebuilds": rebuilds, "groups": list(groups)})


def apply_finished(summary: Mapping[str, Any], ok: bool) -> Notice:
    text = (f"apply finished{'' if ok else ' with problems'}: {summary.get('rebuilds_submitted', 0)} rebuilds submitted, "
            f"{summary.get('failed', 0)} failed")
    return Notice("apply_finished", text, {"ok": ok, "summary": dict(summary)})


def cycle_failed(error: str) -> Notice:
    return Notice("cycle_failed", f"watch cycle failed: {error}", {"error": error})
