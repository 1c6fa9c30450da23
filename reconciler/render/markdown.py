"""Plans as Markdown for pull-request comments. Pure: returns strings.

Counts first (a table per group, the reasons), then each group's desktops in a collapsed list.
It always fits GitHub's comment limit: on large fleets the desktop lists shrink (and, for
thousands of groups, the table too) and say what they left out. Names from the cloud go in code
spans, so they cannot inject HTML, break tables or mention anyone.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence

from reconciler.model import Action, Change
from reconciler.plan import Plan
from reconciler.render.common import (
    REASON_TEXT,
    Section,
    caveats,
    detail,
    group_counts,
    images,
    is_refresh_only,
    plural,
    reason_counts,
    sections,
    summary_line,
    symbol,
)

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
    drift = sum(1 for c in plan.changes if c.drifted)
    if drift:
        it, was, its = ("it", "was", "its") if drift == 1 else ("they", "were", "their")
        lines += ["> [!WARNING]", f"> **{plural(drift, 'desktop')} drifted**: {it} {was} changed outside reconciler "
                  f"since last recorded. This plan rebuilds {'it' if drift == 1 else 'them'} back to {its} group's "
                  "image (marked `!`).", ""]
    if refresh_only:
        lines += ["> [!NOTE]", "> Refresh-only: the live images are recorded in the state; nothing is rebuilt.", ""]
    for caveat in caveats(plan, refresh_only):
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
        body = [line for s, r in zip(parts, rows, strict=False) for line in _md_details(s, r, limit)]
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
