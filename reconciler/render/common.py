"""What every rendering of a plan shares: symbols, review order, per-group sections, counts and
caveats. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.model import Action, Change, DesktopGroup, Reason
from reconciler.plan import Plan
from reconciler.safety import mass_rebuild

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
    Reason.REPLACE_REQUESTED: "rebuilt on request: --replace",
    Reason.NOT_REBUILDABLE: "frozen, in maintenance mode or in a status that refuses a rebuild",
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
            sum(c.drifted for c in ordered), sum(c.wave == "canary" for c in ordered), befores, window,
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
    drift = sum(1 for c in plan.changes if c.drifted)
    return (
        f"Plan: {counts['rebuild']} to rebuild ({drift} drifted), {counts['adopt']} to adopt, "
        f"{counts['forget']} to forget, {counts['wait']} waiting."
    )


def caveats(plan: Plan, refresh_only: bool) -> list[str]:
    """What makes this plan partial: reviewers must not mistake it for the whole picture."""
    lines = []
    if not plan.refreshed:
        lines.append("No refresh: planned from the recorded state only; drift and new selector matches are not seen.")
    if plan.targets or plan.excludes:
        chosen = [f"--target {t}" for t in plan.targets] + [f"--exclude {e}" for e in plan.excludes]
        lines.append(f"Partial plan ({' '.join(chosen)}): desktops outside it are left as they are.")
    if plan.ignore_window and not refresh_only:  # refresh-only rebuilds nothing: windows do not matter
        lines.append("Maintenance windows are ignored (--ignore-window).")
    excess = mass_rebuild(plan)
    if excess is not None:
        lines.append(f"Over the safety limit: {excess.describe()}. apply refuses this plan unless --allow-mass-rebuild is given.")
    return lines


def drift_note(plan: Plan) -> list[str]:
    """Terraform's "changed outside of Terraform", said before the plan."""
    drift = Counter(c.group for c in plan.changes if c.drifted)
    if not drift:
        return []
    total = sum(drift.values())
    groups = ", ".join(f"{name} {count}" for name, count in sorted(drift.items()))
    return [f"Drift: {plural(total, 'desktop')} {'was' if total == 1 else 'were'} changed outside reconciler "
            f"since last recorded ({groups}).",
            f"Marked {DRIFT_SYMBOL} below: rebuilt back to {'its' if total == 1 else 'their'} group's image."]


def images(change: Change, code: Callable[[str], str] = str, arrow: str = "->") -> str:
    """What happens to the desktop's image (``code`` marks up each image id)."""
    if change.action is Action.FORGET:
        return f"was {code(short(change.before_image))}"
    if change.action is Action.ADOPT:
        return f"record {code(short(change.after_image))}"
    return f"{code(short(change.before_image))} {arrow} {code(short(change.after_image))}"


def detail(change: Change) -> str:
    """The planner's detail for one desktop: the running job's id. (When the window opens is
    the same for the whole group: ``group_counts`` says it once.)"""
    if not change.detail or change.reason is Reason.OUTSIDE_WINDOW:
        return ""
    return f"job {change.detail}" if change.reason is Reason.IN_PROGRESS else change.detail
