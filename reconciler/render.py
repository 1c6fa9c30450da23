"""Plans, states, jobs and apply results as text and Markdown. Pure: returns strings.

Text follows Terraform's habits: one symbol per action, a section per group, a one-line summary.
Drift (``!``, magenta, and a note above the plan) is marked apart from intended changes (``~``)
so a reviewer sees at once what changed behind reconciler's back. ``style`` is injected so colour
stays the CLI's decision.

Markdown is for pull-request comments: counts first (a table per group, the reasons), then each
group's desktops in a collapsed list. It always fits GitHub's comment limit: on large fleets the
desktop lists shrink (and, for thousands of groups, the table too) and say what they left out.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
DRIFT_COLOUR = "magenta"
REASON_TEXT = {
    Reason.DRIFT: "changed outside reconciler",
    Reason.RETRY_FAILED: "the last rebuild FAILED",
    Reason.IMAGE_CHANGED: "the group's image changed",
    Reason.NOT_RECORDED: "not in the state yet",
    Reason.LIVE_IMAGE: "live image recorded as it is",
    Reason.ALREADY_CURRENT: "already runs the desired image",
    Reason.REMOVED_FROM_MANIFESTS: "no group manages it any more",
    Reason.IN_PROGRESS: "a rebuild is still running",
    Reason.USER_CONNECTED: "a user is connected",
    Reason.OUTSIDE_WINDOW: "outside the maintenance window",
}
# Review order: what needs attention first. Canary rebuilds lead their group (they go first).
ACTION_ORDER = {Action.REBUILD: 0, Action.ADOPT: 1, Action.FORGET: 2, Action.WAIT: 3}
REASON_ORDER = {reason: index for index, reason in enumerate(REASON_TEXT)}
LEGEND = "Symbols: ~ rebuild, ! rebuild (drift), + adopt (state only), - forget (state only), = wait"


def short(image: str | None) -> str:
    return image if image else "(unknown)"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


def symbol(change: Change) -> str:
    return DRIFT_SYMBOL if change.reason is Reason.DRIFT else SYMBOLS[change.action]


def review_key(change: Change) -> tuple[int, bool, int, str]:
    return ACTION_ORDER[change.action], change.wave != "canary", REASON_ORDER[change.reason], change.desktop_id


def is_refresh_only(plan: Plan) -> bool:
    """A plan made by ``apply --refresh-only`` (it says so; older plan files are recognised by
    the live images they record)."""
    return plan.refresh_only or any(c.reason is Reason.LIVE_IMAGE for c in plan.changes)


@dataclass(frozen=True)
class Section:
    """One group's part of a plan, in review order, with the counts reviewers read first."""

    name: str
    group: DesktopGroup | None  # None: the group is gone from the manifests
    changes: tuple[Change, ...]
    counts: Counter[Action]
    drift: int
    canary: int
    befores: Counter[str]  # images the group's desktops run instead of the group's (see _undesired)
    window: str | None  # when the group's window opens, if it waits for it (the same for all)


def _undesired(change: Change) -> str | None:
    """The image a desktop runs now, when it is not its group's: what reviewers compare."""
    if change.action in (Action.REBUILD, Action.WAIT):
        return short(change.before_image)
    return short(change.after_image) if change.reason is Reason.LIVE_IMAGE else None


def sections(plan: Plan) -> list[Section]:
    """A section per group that has changes (forgotten desktops under the group that recorded
    them); groups still in the manifests first, each list in review order."""
    by_group: dict[str, list[Change]] = {}
    for change in plan.changes:
        by_group.setdefault(change.group or "(no group)", []).append(change)
    known = {g.name: g for g in plan.groups}
    result = []
    for name, changes in by_group.items():
        ordered = tuple(sorted(changes, key=review_key))
        befores = Counter(image for c in ordered if (image := _undesired(c)) is not None)
        window = next((c.detail for c in ordered if c.reason is Reason.OUTSIDE_WINDOW), None)
        result.append(Section(
            name, known.get(name), ordered, Counter(c.action for c in ordered),
            sum(c.reason is Reason.DRIFT for c in ordered), sum(c.wave == "canary" for c in ordered), befores, window,
        ))
    return sorted(result, key=lambda s: (s.group is None, s.name))


def where(group: DesktopGroup, plan: Plan) -> str:
    """The group's file:line, relative to the manifest directory: short, and the same on a
    laptop and on a CI runner."""
    text = str(group.source)
    base = plan.settings.base_dir.rstrip("/") if plan.settings else ""
    if base not in ("", ".") and text.startswith(base + "/"):
        return text[len(base) + 1:]
    return text


def group_counts(section: Section) -> str:
    """``140 to rebuild (2 canaries first, 1 drifted), 20 to adopt``."""
    counts, parts = section.counts, []
    if counts[Action.REBUILD]:
        extras = [f"{plural(section.canary, 'canary', 'canaries')} first"] if section.canary else []
        extras += [f"{section.drift} drifted"] if section.drift else []
        parts.append(f"{counts[Action.REBUILD]} to rebuild" + (f" ({', '.join(extras)})" if extras else ""))
    parts += [f"{counts[a]} to {a.value}" for a in (Action.ADOPT, Action.FORGET) if counts[a]]
    parts += [f"{counts[Action.WAIT]} waiting"] if counts[Action.WAIT] else []
    return ", ".join(parts) + (f" ({section.window})" if section.window else "")


def reason_counts(plan: Plan) -> list[tuple[Reason, int]]:
    counts = Counter(c.reason for c in plan.changes)
    return sorted(counts.items(), key=lambda item: (-item[1], REASON_ORDER[item[0]]))


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    drift = sum(1 for c in plan.changes if c.reason is Reason.DRIFT)
    return (
        f"Plan: {counts['rebuild']} to rebuild ({drift} drifted), {counts['adopt']} to adopt, "
        f"{counts['forget']} to forget, {counts['wait']} waiting."
    )


def _caveats(plan: Plan, refresh_only: bool) -> list[str]:
    """What makes this plan partial: reviewers must not mistake it for the whole picture."""
    lines = []
    if not plan.refreshed:
        lines.append("No refresh: planned from the recorded state only; drift and new selector matches are not seen.")
    if plan.targets or plan.excludes:
        chosen = [f"--target {t}" for t in plan.targets] + [f"--exclude {e}" for e in plan.excludes]
        lines.append(f"Partial plan ({' '.join(chosen)}): desktops outside it are left as they are.")
    if plan.ignore_window and not refresh_only:  # refresh-only rebuilds nothing: windows do not matter
        lines.append("Maintenance windows are ignored (--ignore-window).")
    return lines


def drift_note(plan: Plan) -> list[str]:
    """Terraform's "changed outside of Terraform", said before the plan."""
    drift = Counter(c.group for c in plan.changes if c.reason is Reason.DRIFT)
    if not drift:
        return []
    total = sum(drift.values())
    groups = ", ".join(f"{name} {count}" for name, count in sorted(drift.items()))
    return [f"Drift: {plural(total, 'desktop')} {'was' if total == 1 else 'were'} changed outside reconciler "
            f"since last recorded ({groups}).",
            f"Marked {DRIFT_SYMBOL} below: rebuilt back to {'its' if total == 1 else 'their'} group's image."]


# -- text ------------------------------------------------------------------------------------


def images(change: Change, code: Callable[[str], str] = str, arrow: str = "->") -> str:
    """What happens to the desktop's image (``code`` marks up each image id)."""
    if change.action is Action.FORGET:
        return f"was {code(short(change.before_image))}"
    if change.action is Action.ADOPT:
        return f"record {code(short(change.after_image))}"
    return f"{code(short(change.before_image))} {arrow} {code(short(change.after_image))}"


def _extras(change: Change, wanted: str | None) -> str:
    extras = [change.reason.value]
    if change.reason is Reason.LIVE_IMAGE and wanted:
        extras.append(f"the group wants {wanted}")
    if change.wave == "canary":
        extras.append("canary")
    extras += [detail(change)] if detail(change) else []
    return "; ".join(extras)


def detail(change: Change) -> str:
    """The planner's detail for one desktop: the running job's id. (When the window opens is
    the same for the whole group: ``group_counts`` says it once.)"""
    if not change.detail or change.reason is Reason.OUTSIDE_WINDOW:
        return ""
    return f"job {change.detail}" if change.reason is Reason.IN_PROGRESS else change.detail


def _change_line(change: Change, style: Style, width: int, wanted: str | None) -> str:
    drifted = change.reason is Reason.DRIFT
    colour = DRIFT_COLOUR if drifted else COLOURS[change.action]
    head = style(f"  {symbol(change)} {change.action.value:<7}", fg=colour, bold=True)
    extras = f"[{_extras(change, wanted)}]"
    extras = style(extras, fg=DRIFT_COLOUR) if drifted else extras
    return f"{head} {_who(change).ljust(width)}  {images(change)}  {extras}"


def _who(change: Change) -> str:
    return change.desktop_id + (f" ({change.desktop_name})" if change.desktop_name else "")


def _section_text(section: Section, plan: Plan, style: Style) -> list[str]:
    group = section.group
    if group is None:
        lines = [style(f"# group {section.name}", bold=True) + "  (no longer in the manifests)"]
    else:
        image = f"{group.image.id} ({group.image.type})"
        lines = [style(f"# group {section.name}", bold=True) + f"  image {image}  ({where(group, plan)})"]
    lines.append(f"#   {group_counts(section)}")
    width = min(max(len(_who(c)) for c in section.changes), 64)
    wanted = group.image.id if group else None
    lines += [_change_line(c, style, width, wanted) for c in section.changes]
    return lines + [""]


def _refresh_only_footer(plan: Plan) -> list[str]:
    other = sum(1 for c in plan.changes if c.reason is Reason.LIVE_IMAGE)
    runs = "runs an image other than its group's" if other == 1 else "run an image other than their group's"
    return [f"Refresh-only: nothing is rebuilt. {plural(other, 'desktop')} {runs}; "
            "`reconciler plan` then shows the rebuilds that bring them to the manifests."]


def _why_text(plan: Plan) -> list[str]:
    counts = reason_counts(plan)
    width = max(len(f"{n} {r.value}") for r, n in counts)
    return ["Why:"] + [f"  {f'{n} {r.value}':<{width}}  {REASON_TEXT[r]}" for r, n in counts]


def plan_text(plan: Plan, style: Style = plain, *, refresh_only: bool | None = None) -> str:
    """The plan as a terminal shows it. ``refresh_only`` (inferred when None) frames an
    ``apply --refresh-only`` plan as recording the live images rather than changing desktops."""
    refresh_only = is_refresh_only(plan) if refresh_only is None else refresh_only
    if not plan.changes:
        if refresh_only:
            return "No changes. The state already records the live image of every managed desktop.\n"
        return "No changes. The desktops match the manifests.\n"
    lines = [style(line, fg=DRIFT_COLOUR, bold=True) for line in drift_note(plan)]
    lines += [style(f"Warning: {c}", fg="yellow") for c in _caveats(plan, refresh_only)]
    lines += [""] if lines else []
    if refresh_only:
        count = plural(sum(c.action is Action.ADOPT for c in plan.changes), "desktop")
        lines += [f"reconciler will record the live image of {count} in the state (refresh-only):", ""]
    else:
        lines += ["reconciler will perform the following actions:", ""]
    for section in sections(plan):
        lines += _section_text(section, plan, style)
    lines.append(style(summary_line(plan), bold=True))
    lines += _why_text(plan)
    if refresh_only:
        lines += _refresh_only_footer(plan)
    elif not plan.has_changes:
        lines.append("No changes to make now; the waiting desktops are picked up by a later run.")
    lines.append(LEGEND)
    return "\n".join(lines) + "\n"


# -- Markdown (pull-request comments) --------------------------------------------------------

# GitHub refuses comments over 65,536 characters; the rest is room for a workflow's own header.
MARKDOWN_MAX_CHARS = 60_000
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|~"} | {"<": "&lt;", "&": "&amp;", "\n": " ", "\r": " "})


def md_text(text: str) -> str:
    """Our own prose (caveats) made safe in Markdown: no emphasis, links, HTML or table breaks."""
    return text.translate(_MD_SPECIAL)


def md_code(text: str) -> str:
    """Anything from the cloud or the manifests (ids, names, images) as a code span, where
    GitHub renders no HTML, emphasis or @mentions. The fence outgrows any backticks inside
    (CommonMark), and ``\\|`` keeps a pipe inside one table cell (GFM)."""
    text = text.replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_image_cell(section: Section) -> str:
    if section.group is None:
        return "_removed from the manifests_"
    after, befores = md_code(section.group.image.id), section.befores.most_common()
    shown = [md_code(image) + (f" ×{n}" if len(befores) > 1 else "") for image, n in befores[:3]]
    shown += [f"+{len(befores) - 3} more"] if len(befores) > 3 else []
    if shown:
        return f"{', '.join(shown)} → {after}"
    return f"{after} (already)" if section.counts[Action.ADOPT] else "—"


def _md_row(section: Section) -> str:
    counts = [section.counts[Action.REBUILD], section.drift, section.counts[Action.ADOPT],
              section.counts[Action.FORGET], section.counts[Action.WAIT]]
    cells = " | ".join(str(n) if n else "–" for n in counts)  # dashes let the non-zero counts stand out
    return f"| {md_code(section.name)} | {_md_image_cell(section)} | {cells} |"


def _md_table(plan: Plan, parts: Sequence[Section], rows: int) -> list[str]:
    lines = ["| group | image now → desired | rebuild | drift | adopt | forget | wait |",
             "|---|---|--:|--:|--:|--:|--:|"]
    lines += [_md_row(s) for s in parts[:rows]]
    if len(parts) > rows:
        lines.append(f"| … {plural(len(parts) - rows, 'more group')} | | | | | | |")
    if len(parts) > 1:
        counts, drift = plan.summary(), sum(s.drift for s in parts)
        totals = [counts["rebuild"], drift, counts["adopt"], counts["forget"], counts["wait"]]
        lines.append("| **total** | | " + " | ".join(f"**{n}**" for n in totals) + " |")
    return lines


def _md_alerts(plan: Plan, refresh_only: bool) -> list[str]:
    lines: list[str] = []
    drift = sum(1 for c in plan.changes if c.reason is Reason.DRIFT)
    if drift:
        it, was, its = ("it", "was", "its") if drift == 1 else ("they", "were", "their")
        lines += ["> [!WARNING]", f"> **{plural(drift, 'desktop')} drifted**: {it} {was} changed outside reconciler "
                  f"since last recorded. This plan rebuilds {'it' if drift == 1 else 'them'} back to {its} group's "
                  "image (marked `!`).", ""]
    if refresh_only:
        lines += ["> [!NOTE]", "> Refresh-only: the live images are recorded in the state; nothing is rebuilt.", ""]
    for caveat in _caveats(plan, refresh_only):
        lines += ["> [!IMPORTANT]", f"> {md_text(caveat)}", ""]
    return lines


def _md_detail_row(change: Change) -> str:
    image = images(change, md_code, "→")
    why = md_code(change.reason.value) + (", canary" if change.wave == "canary" else "")
    why += f", {md_code(detail(change))}" if detail(change) else ""
    name = md_code(change.desktop_name) if change.desktop_name else ""
    return f"| `{symbol(change)}` {change.action.value} | {md_code(change.desktop_id)} | {name} | {image} | {why} |"


def _md_details(section: Section, rows: Sequence[str], limit: int) -> list[str]:
    title = f"<b>{html.escape(section.name)}</b>: {html.escape(group_counts(section))}"
    lines = [f"<details><summary>{title}</summary>", ""]
    if limit:
        lines += ["| | desktop | name | image | reason |", "|---|---|---|---|---|", *rows[:limit]]
    hidden = len(rows) - limit
    if hidden > 0:
        lines += ["", f"… and {plural(hidden, 'more desktop')} (the plan file lists them all)."]
    return lines + ["", "</details>", ""]


def _md_footer(plan: Plan) -> str:
    state = f"state serial {plan.serial}" + (f" (lineage `{plan.lineage}`)" if plan.lineage else " (no state yet)")
    made = f"made {plan.created_at} from " if plan.created_at else "from "
    digest = f" · manifests `{plan.manifest_digest[:19]}`" if plan.manifest_digest else ""
    refreshed = " · refreshed from the live fleet" if plan.refreshed else " · not refreshed"
    return f"<sub>Plan {made}{state}{digest}{refreshed}</sub>"


def _md_head(plan: Plan, parts: Sequence[Section], refresh_only: bool) -> Callable[[int], str]:
    """The counts (title, alerts, the table with ``rows`` groups, the reasons) for a given size."""
    title = "### reconciler plan" + (" (refresh-only)" if refresh_only else "")
    why = " · ".join(f"{n} {md_code(r.value)} ({REASON_TEXT[r]})" for r, n in reason_counts(plan))
    top = [title, "", f"**{summary_line(plan)}**", "", *_md_alerts(plan, refresh_only)]
    return lambda rows: "\n".join([*top, *_md_table(plan, parts, rows), "", f"**Why:** {why}", ""])


def _md_with_details(plan: Plan, parts: Sequence[Section], head: str, max_chars: int) -> str | None:
    """Counts, then every group's desktops: all of them if the comment can take them, else the
    largest number per group that fits (the most important first, see ``review_key``)."""
    rows = [[_md_detail_row(c) for c in s.changes] for s in parts]
    total, foot = len(plan.changes), _md_footer(plan)

    def render_with(limit: int) -> str:
        shown = sum(min(limit, len(r)) for r in rows)
        heading = "#### Desktops" + (f" ({shown} of {total} shown)" if shown < total else "")
        body = [line for s, r in zip(parts, rows) for line in _md_details(s, r, limit)]
        return "\n".join([head, heading, "", *body, foot]) + "\n"

    low, high = -1, max(len(r) for r in rows)
    while low < high:  # binary search for the largest limit that fits (-1: not even the summaries)
        middle = (low + high + 1) // 2
        low, high = (middle, high) if len(render_with(middle)) <= max_chars else (low, middle - 1)
    return render_with(low) if low >= 0 else None


def _md_counts_only(plan: Plan, head: Callable[[int], str], groups: int, max_chars: int) -> str:
    """Thousands of groups: as many table rows as fit, and no desktop lists."""
    foot = "\nThe plan has too many groups for one comment; the plan file lists them all.\n\n" + _md_footer(plan) + "\n"
    low, high = 0, groups
    while low < high:  # binary search for the most rows that fit
        middle = (low + high + 1) // 2
        low, high = (middle, high) if len(head(middle)) + len(foot) <= max_chars else (low, middle - 1)
    return head(low) + foot


def plan_markdown(plan: Plan, *, refresh_only: bool | None = None, max_chars: int = MARKDOWN_MAX_CHARS) -> str:
    """The plan as a pull-request comment of at most ``max_chars`` characters."""
    if not plan.changes:
        return "### reconciler plan\n\nNo changes. The desktops match the manifests.\n\n" + _md_footer(plan) + "\n"
    parts = sections(plan)
    head = _md_head(plan, parts, is_refresh_only(plan) if refresh_only is None else refresh_only)
    return _md_with_details(plan, parts, head(len(parts)), max_chars) or _md_counts_only(plan, head, len(parts), max_chars)


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
