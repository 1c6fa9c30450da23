"""Plans as a terminal shows them. Pure: returns strings.

Terraform's habits: one symbol per action, a section per group, a one-line summary. Drift (``!``,
magenta, and a note above the plan) is marked apart from intended changes (``~``) so a reviewer
sees at once what changed behind reconciler's back. ``style`` is injected so colour stays the
CLI's decision.
"""

from __future__ import annotations

from reconciler.model import Action, Change, Reason
from reconciler.plan import Plan
from reconciler.render import compact
from reconciler.render.common import (
    COLOURS,
    DRIFT_COLOUR,
    LEGEND,
    REASON_TEXT,
    Section,
    Style,
    caveats,
    detail,
    drift_note,
    group_counts,
    images,
    is_refresh_only,
    plain,
    plural,
    reason_counts,
    sections,
    summary_line,
    symbol,
    where,
)


def _extras(change: Change, wanted: str | None) -> str:
    extras = [change.reason.value]
    if change.pending is not None:
        extras.append(f"then rebuild: {change.pending.value}")
    if change.reason is Reason.LIVE_IMAGE and wanted:
        extras.append(f"the group wants {wanted}")
    if change.wave == "canary":
        extras.append("canary")
    extras += [detail(change)] if detail(change) else []
    return "; ".join(extras)


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


def plan_text(plan: Plan, style: Style = plain, *, refresh_only: bool | None = None, full: bool = False) -> str:
    """The plan as a terminal shows it. ``refresh_only`` (inferred when None) frames an
    ``apply --refresh-only`` plan as recording the live images rather than changing desktops.
    By default each group's desktops are named compactly (``render.compact``); ``full`` gives
    every desktop a line of its own with both images and the reason."""
    refresh_only = is_refresh_only(plan) if refresh_only is None else refresh_only
    if not plan.changes:
        if refresh_only:
            return "No changes. The state already records the live image of every managed desktop.\n"
        return "No changes. The desktops match the manifests.\n"
    fit = (lambda line: [line]) if full else compact.wrap
    lines = [style(part, fg=DRIFT_COLOUR, bold=True) for line in drift_note(plan) for part in fit(line)]
    lines += [style(part, fg="yellow") for c in caveats(plan, refresh_only) for part in fit(f"Warning: {c}")]
    lines += [""] if lines else []
    if refresh_only:
        count = plural(sum(c.action is Action.ADOPT for c in plan.changes), "desktop")
        lines += [f"reconciler will record the live image of {count} in the state (refresh-only):", ""]
    else:
        lines += ["reconciler will perform the following actions:", ""]
    for section in sections(plan):
        lines += _section_text(section, plan, style) if full else compact.section_lines(section, plan, style)
    lines += [style(part, bold=True) for part in fit(summary_line(plan))]
    lines += _why_text(plan)
    if refresh_only:
        lines += [part for line in _refresh_only_footer(plan) for part in fit(line)]
    elif not plan.has_actions:
        lines.append("No changes to make now; the waiting desktops are picked up by a later run.")
    lines.append(LEGEND if full else f"{LEGEND}\nEvery desktop on its own line: --full")
    return "\n".join(lines) + "\n"
