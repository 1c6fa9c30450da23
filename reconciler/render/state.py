"""The recorded state, tracked jobs and apply results as text. Pure: returns strings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from reconciler.render.common import plural, short
from reconciler.state import State


def columns(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows as aligned columns, two spaces apart; the last column is not padded."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip() for row in rows]


def state_list(state: State) -> str:
    if not state.desktops:
        return "The state is empty.\n"
    rows = [("DESKTOP", "GROUP", "IMAGE", "LAST JOB")]
    for desktop_id, record in sorted(state.desktops.items()):
        job = f"{record.job.id or '?'} {record.job.status}" if record.job else ""
        rows.append((desktop_id, record.group, short(record.image_id), job))
    return "\n".join(columns(rows)) + "\n"


def state_show(desktop_id: str, state: State) -> str:
    record = state.desktops[desktop_id]
    lines = [
        f"desktop:    {desktop_id}",
        f"name:       {record.name or ''}",
        f"group:      {record.group}",
        f"image:      {short(record.image_id)}",
        f"updated:    {record.updated_at}",
    ]
    if record.job:
        job = record.job
        lines += [
            f"job:        {job.id or '(unknown: the call was sent, its answer was lost)'}",
            f"job status: {job.status}",
            f"job image:  {job.image_id}",
            f"submitted:  {job.submitted_at}",
        ]
        lines += [f"finished:   {job.finished_at}"] if job.finished_at else []
        lines += [f"failure:    {job.fail_reason}"] if job.fail_reason else []
    return "\n".join(lines) + "\n"


def jobs_text(state: State) -> str:
    if not state.jobs:
        return "No rebuild jobs are tracked.\n"
    counts = Counter(j.status for j in state.jobs.values())
    rows = [("JOB", "STATUS", "GROUP", "DESKTOPS", "IMAGE", "SUBMITTED")]
    failures: dict[int, list[str]] = {}
    for job_id, job in sorted(state.jobs.items(), key=lambda item: (item[1].submitted_at, item[0])):
        rows.append((job_id, job.status, job.group, str(len(job.desktop_ids)), job.image_id, job.submitted_at))
        failed = [i for i in job.desktop_ids if (r := state.desktops.get(i)) and r.job and r.job.id == job_id and r.job.status == "FAILED"]
        failures[len(rows) - 1] = [f"    FAILED {i}: {state.desktops[i].job.fail_reason or 'no reason given'}"  # type: ignore[union-attr]
                                   for i in failed]
    lines = []
    for index, line in enumerate(columns(rows)):
        lines += [line, *failures.get(index, [])]
    lines += ["", "Jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    return "\n".join(lines) + "\n"


def apply_summary(summary: dict[str, Any], halted: dict[str, str], failed: dict[str, str]) -> str:
    lines = [
        f"Apply complete: {plural(summary['rebuilds_submitted'], 'rebuild')} submitted in "
        f"{plural(summary['jobs'], 'job')}, {summary['adopted']} adopted, {summary['forgotten']} forgotten."
    ]
    if summary["rebuilds_succeeded"]:
        lines.append(f"{plural(summary['rebuilds_succeeded'], 'rebuild')} finished successfully.")
    if running := summary.get("rebuilds_running"):
        verb = "is" if running == 1 else "are"
        lines.append(f"{plural(running, 'rebuild')} {verb} still running; `reconciler jobs --wait` follows them to the end.")
    if deferred := summary.get("deferred"):
        verb = "was" if deferred == 1 else "were"
        lines.append(f"{plural(deferred, 'desktop')} {verb} deferred (window closed or user connected) and wait for a later run.")
    if busy := summary["busy_deferred"]:
        lines.append(f"{plural(busy, 'desktop')} {'was' if busy == 1 else 'were'} busy and left for a later run.")
    if unknown := summary["unknown_outcome"]:
        has, them = ("has", "it") if unknown == 1 else ("have", "them")
        lines.append(f"{plural(unknown, 'desktop')} {has} an unknown outcome; the next run resolves {them}.")
    for group, reason in sorted(halted.items()):
        lines.append(f"Group {group} halted: {reason}")
    for desktop_id, reason in sorted(failed.items())[:50]:
        lines.append(f"Failed {desktop_id}: {reason}")
    if len(failed) > 50:
        lines.append(f"... and {len(failed) - 50} more failures")
    return "\n".join(lines) + "\n"
