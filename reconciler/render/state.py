"""The recorded state, tracked jobs and apply results as text. Pure: returns strings."""

from __future__ import annotations

from collections import Counter
from typing import Any

from reconciler.render.common import short
from reconciler.state import State


def state_list(state: State) -> str:
    if not state.desktops:
        return "The state is empty.\n"
    lines = []
    for desktop_id, record in sorted(state.desktops.items()):
        job = f"  job {record.job.id or '?'} {record.job.status}" if record.job else ""
        lines.append(f"{desktop_id}  {record.group}  {short(record.image_id)}{job}")
    return "\n".join(lines) + "\n"


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
    lines = []
    for job_id, job in sorted(state.jobs.items(), key=lambda item: (item[1].submitted_at, item[0])):
        lines.append(f"{job_id}  {job.status:<9} {job.group}  {len(job.desktop_ids)} desktops  -> {job.image_id}  {job.submitted_at}")
        failed = [i for i in job.desktop_ids if (r := state.desktops.get(i)) and r.job and r.job.id == job_id and r.job.status == "FAILED"]
        lines.extend(f"    FAILED {i}: {state.desktops[i].job.fail_reason or 'no reason given'}" for i in failed)  # type: ignore[union-attr]
    lines.append("")
    lines.append("Jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines) + "\n"


def apply_summary(summary: dict[str, Any], halted: dict[str, str], failed: dict[str, str]) -> str:
    lines = [
        f"Apply complete: {summary['rebuilds_submitted']} rebuilds submitted in {summary['jobs']} jobs, "
        f"{summary['adopted']} adopted, {summary['forgotten']} forgotten."
    ]
    if summary["rebuilds_succeeded"]:
        lines.append(f"{summary['rebuilds_succeeded']} rebuilds finished successfully.")
    if summary.get("rebuilds_running"):
        lines.append(f"{summary['rebuilds_running']} rebuilds are still running; `reconciler jobs --wait` follows them to the end.")
    if summary.get("deferred"):
        lines.append(f"{summary['deferred']} desktops were deferred (window closed or user connected) and wait for a later run.")
    if summary["busy_deferred"]:
        lines.append(f"{summary['busy_deferred']} desktops were busy and are left for a later run.")
    if summary["unknown_outcome"]:
        lines.append(f"{summary['unknown_outcome']} desktops have an unknown outcome; the next run resolves them.")
    for group, reason in sorted(halted.items()):
        lines.append(f"Group {group} halted: {reason}")
    for desktop_id, reason in sorted(failed.items())[:50]:
        lines.append(f"Failed {desktop_id}: {reason}")
    if len(failed) > 50:
        lines.append(f"... and {len(failed) - 50} more failures")
    return "\n".join(lines) + "\n"
