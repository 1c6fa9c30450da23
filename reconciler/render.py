"""Plans, states, jobs and apply results as text and Markdown. Pure: returns strings.

Text follows Terraform's habits: one symbol per action, a section per group, a one-line summary.
Drift (``!``) is marked apart from intended changes (``~``) so a reviewer sees at once what
changed behind reconciler's back. ``style`` is injected so colour stays the CLI's decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from reconciler.model import Action, Change, DesktopGroup, Reason
from reconciler.plan import Plan
from reconciler.state import State

Style = Callable[..., str]


def plain(text: str, **_: Any) -> str:
    return text


SYMBOLS = {Action.REBUILD: "~", Action.ADOPT: "+", Action.FORGET: "-", Action.WAIT: "="}
COLOURS = {Action.REBUILD: "yellow", Action.ADOPT: "green", Action.FORGET: "red", Action.WAIT: "cyan"}
DRIFT_SYMBOL = "!"
REASON_TEXT = {
    Reason.IMAGE_CHANGED: "the group's image changed",
    Reason.NOT_RECORDED: "not in the state yet",
    Reason.DRIFT: "changed outside reconciler",
    Reason.RETRY_FAILED: "the last rebuild FAILED",
    Reason.ALREADY_CURRENT: "already runs the desired image",
    Reason.LIVE_IMAGE: "live image recorded as it is",
    Reason.REMOVED_FROM_MANIFESTS: "no group manages it any more",
    Reason.IN_PROGRESS: "a rebuild is still running",
    Reason.USER_CONNECTED: "a user is connected",
    Reason.OUTSIDE_WINDOW: "outside the maintenance window",
}


def short(image: str | None) -> str:
    return image if image else "(unknown)"


def symbol(change: Change) -> str:
    return DRIFT_SYMBOL if change.reason is Reason.DRIFT else SYMBOLS[change.action]


def _change_line(change: Change, style: Style) -> str:
    mark = symbol(change)
    colour = "magenta" if change.reason is Reason.DRIFT else COLOURS[change.action]
    name = f" ({change.desktop_name})" if change.desktop_name else ""
    if change.action is Action.FORGET:
        images = f"was {short(change.before_image)}"
    elif change.action is Action.ADOPT:
        images = f"record {short(change.after_image)}"
    else:
        images = f"{short(change.before_image)} -> {short(change.after_image)}"
    extras = [change.reason.value]
    if change.wave == "canary":
        extras.append("canary")
    if change.detail:
        extras.append(change.detail)
    head = style(f"  {mark} {change.action.value:<7}", fg=colour, bold=True)
    return f"{head} {change.desktop_id}{name}  {images}  [{'; '.join(extras)}]"


def _group_header(group: DesktopGroup | None, name: str, style: Style) -> str:
    if group is None:
        return style(f"# {name}", bold=True)
    image = f"{group.image.id} ({group.image.type})"
    return style(f"# group {name}", bold=True) + f"  image {image}  ({group.source})"


def _sections(plan: Plan) -> list[tuple[str, list[Change]]]:
    sections: dict[str, list[Change]] = {}
    for change in plan.changes:
        key = change.group or "(no group)"
        if change.action is Action.FORGET:
            key = "(forgotten)"
        sections.setdefault(key, []).append(change)
    return sorted(sections.items(), key=lambda item: (item[0] == "(forgotten)", item[0]))


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    drift = sum(1 for c in plan.changes if c.reason is Reason.DRIFT)
    line = (
        f"Plan: {counts['rebuild']} to rebuild ({drift} drifted), {counts['adopt']} to adopt, "
        f"{counts['forget']} to forget, {counts['wait']} waiting."
    )
    return line


def plan_text(plan: Plan, style: Style = plain) -> str:
    if not plan.changes:
        return "No changes. The desktops match the manifests.\n"
    groups = {g.name: g for g in plan.groups}
    lines = ["reconciler will perform the following actions:", ""]
    if not plan.refreshed:
        lines[1:1] = ["(no refresh: based on the recorded state only)"]
    for name, changes in _sections(plan):
        lines.append(_group_header(groups.get(name), name, style))
        lines.extend(_change_line(c, style) for c in changes)
        lines.append("")
    lines.append(style(summary_line(plan), bold=True))
    if not plan.has_changes:
        lines.append("No changes to make now; the waiting desktops are picked up by a later run.")
    legend = "Symbols: ~ rebuild, ! rebuild (drift), + adopt (state only), - forget (state only), = wait"
    lines.append(legend)
    return "\n".join(lines) + "\n"


# -- Markdown (pull-request comments) --------------------------------------------------------

MARKDOWN_DETAIL_LIMIT = 200


def _md_group_rows(plan: Plan) -> list[str]:
    groups = {g.name: g for g in plan.groups}
    rows = ["| group | image | rebuild | drift | adopt | forget | wait |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, changes in _sections(plan):
        counts = Counter(c.action for c in changes)
        drift = sum(1 for c in changes if c.reason is Reason.DRIFT)
        group = groups.get(name)
        befores = sorted({short(c.before_image) for c in changes if c.action is Action.REBUILD})
        image = f"{', '.join(befores) or '—'} → {group.image.id}" if group else "—"
        rows.append(
            f"| `{name}` | {image} | {counts[Action.REBUILD]} | {drift} | {counts[Action.ADOPT]} "
            f"| {counts[Action.FORGET]} | {counts[Action.WAIT]} |"
        )
    return rows


def _md_details(name: str, changes: Sequence[Change]) -> list[str]:
    lines = [f"<details><summary><code>{name}</code>: {len(changes)} desktops</summary>", "", "| | desktop | name | image | reason |", "|---|---|---|---|---|"]
    for change in changes[:MARKDOWN_DETAIL_LIMIT]:
        image = f"{short(change.before_image)} → {short(change.after_image)}" if change.after_image else short(change.before_image)
        lines.append(f"| `{symbol(change)}` {change.action.value} | `{change.desktop_id}` | {change.desktop_name or ''} | {image} | {change.reason.value} |")
    if len(changes) > MARKDOWN_DETAIL_LIMIT:
        lines.append(f"| | … {len(changes) - MARKDOWN_DETAIL_LIMIT} more | | | |")
    lines += ["", "</details>", ""]
    return lines


def plan_markdown(plan: Plan) -> str:
    counts = plan.summary()
    title = "### reconciler plan"
    if not plan.changes:
        return f"{title}\n\nNo changes. The desktops match the manifests.\n"
    lines = [title, "", f"**{summary_line(plan)}**", ""]
    if not plan.refreshed:
        lines += ["> Planned without a refresh: based on the recorded state only.", ""]
    drift = sum(1 for c in plan.changes if c.reason is Reason.DRIFT)
    if drift:
        lines += [f"> ⚠️ {drift} desktops drifted: their image was changed outside reconciler.", ""]
    lines += _md_group_rows(plan) + [""]
    reasons = Counter(c.reason.value for c in plan.changes)
    lines += ["Reasons: " + ", ".join(f"`{r}` {n}" for r, n in sorted(reasons.items())), ""]
    for name, changes in _sections(plan):
        lines += _md_details(name, changes)
    state = f"state serial {plan.serial}" + (f", lineage `{plan.lineage}`" if plan.lineage else " (new state)")
    lines.append(f"<sub>{counts['rebuild']} rebuilds · {state} · manifests `{plan.manifest_digest[:19]}`</sub>")
    return "\n".join(lines) + "\n"


# -- state and jobs --------------------------------------------------------------------------


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


def names_of(items: Iterable[str]) -> str:
    return ", ".join(sorted(items))
