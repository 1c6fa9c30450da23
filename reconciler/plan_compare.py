"""Does a fresh plan carry out what a reviewed plan showed? ``reconciler plan-diff`` answers it
for a merge job that re-plans from the merged commit before applying. Pure functions.

Two plans agree when they act for the same groups (same images, selectors, rollouts), with the
same settings and options, and intend the same for every desktop: rebuild to the same image
(now or when a window opens: a deferred rebuild is the same intent), adopt, or forget. Rebuilds
already running are not intents and are ignored. One difference is expected and only listed:
a desktop that joined a group's selector since the review (a new desktop with a matching tag,
planned as ``not_recorded`` or ``already_current``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reconciler.model import Action, Change, Reason
from reconciler.plan import Plan, group_to_json, settings_to_json

JOINING_REASONS = frozenset({Reason.NOT_RECORDED, Reason.ALREADY_CURRENT})
SHOWN = 50  # differences listed; more are counted
Intent = tuple[str, str | None, str | None]  # (rebuild | adopt | forget, group, image)


@dataclass(frozen=True)
class Comparison:
    joined: tuple[Change, ...]  # in the new plan only: desktops that joined a selector since the review
    differences: tuple[str, ...]  # anything else, one sentence each
    groups: int
    desktops: int  # desktops the reviewed plan intends something for

    @property
    def same(self) -> bool:
        return not self.differences


def intent(change: Change) -> Intent | None:
    """What a change means to do to its desktop, whenever it happens; None for a running rebuild."""
    if change.action is Action.WAIT:
        return None if change.pending is None else ("rebuild", change.group, change.after_image)
    return (change.action.value, change.group, change.after_image)


def intents(plan: Plan) -> dict[str, tuple[Intent, Change]]:
    return {c.desktop_id: (i, c) for c in plan.changes if (i := intent(c)) is not None}


def _groups(plan: Plan) -> dict[str, dict[str, Any]]:
    # Where a group is declared (file and line) is not what it does.
    return {g.name: {k: v for k, v in group_to_json(g).items() if k != "source"} for g in plan.groups}


def _settings(plan: Plan) -> dict[str, Any] | None:
    if plan.settings is None:
        return None
    return {k: v for k, v in settings_to_json(plan.settings).items() if k not in ("base_dir", "source")}


def _options(plan: Plan) -> dict[str, Any]:
    return {"targets": plan.targets, "excludes": plan.excludes, "ignore_window": plan.ignore_window,
            "refresh_only": plan.refresh_only, "replace": plan.replace}


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=list)


def group_differences(reviewed: Plan, candidate: Plan) -> list[str]:
    before, after = _groups(reviewed), _groups(candidate)
    found = [f"group {name}: only in the reviewed plan" for name in sorted(before.keys() - after.keys())]
    found += [f"group {name}: not in the reviewed plan" for name in sorted(after.keys() - before.keys())]
    for name in sorted(before.keys() & after.keys()):
        for field in sorted(k for k in before[name].keys() | after[name].keys() if before[name].get(k) != after[name].get(k)):
            found.append(f"group {name}: {field} was {_compact(before[name].get(field))}, is {_compact(after[name].get(field))}")
    return found


def _intent_text(intended: Intent | None) -> str:
    if intended is None:
        return "nothing"
    action, group, image = intended
    target = f" to {image}" if image and action != "forget" else ""
    return f"{action}{target}" + (f" in {group}" if group else "")


def _desktop(change: Change) -> str:
    return change.desktop_id + (f" ({change.desktop_name})" if change.desktop_name else "")


def joined_selector(change: Change, candidate: Plan) -> bool:
    """A desktop new to reconciler, in a group that selects desktops (rather than listing ids)."""
    reason = change.pending or change.reason
    if reason not in JOINING_REASONS or change.group is None:
        return False
    group = next((g for g in candidate.groups if g.name == change.group), None)
    return group is not None and group.selector is not None and change.desktop_id not in group.ids


def desktop_differences(reviewed: Plan, candidate: Plan) -> tuple[list[Change], list[str]]:
    before, after = intents(reviewed), intents(candidate)
    joined, found = [], []
    for desktop_id in sorted(before.keys() | after.keys()):
        was, now = before.get(desktop_id), after.get(desktop_id)
        if was is not None and now is not None and was[0] == now[0]:
            continue
        if was is None and now is not None and joined_selector(now[1], candidate):
            joined.append(now[1])
            continue
        change = now[1] if now is not None else was[1] if was is not None else None
        assert change is not None
        found.append(f"desktop {_desktop(change)}: {_intent_text(was and was[0])} in the reviewed plan, "
                     f"{_intent_text(now and now[0])} now")
    return joined, found


def compare(reviewed: Plan, candidate: Plan) -> Comparison:
    """How ``candidate`` (planned later) differs from ``reviewed``."""
    found = group_differences(reviewed, candidate)
    if _settings(reviewed) != _settings(candidate):
        found.append("the settings differ (project, endpoint, state or api)")
    if _options(reviewed) != _options(candidate):
        found.append(f"the plan options differ: {_compact(_options(reviewed))} in the reviewed plan, {_compact(_options(candidate))} now")
    joined, desktops = desktop_differences(reviewed, candidate)
    return Comparison(tuple(joined), tuple(found + desktops), len(reviewed.groups), len(intents(reviewed)))


def comparison_text(result: Comparison) -> str:
    lines = []
    if result.same:
        lines.append(f"The plan carries out what was reviewed: the same {result.groups} groups, "
                     f"the same {result.desktops} desktops, the same images.")
    else:
        lines.append(f"The plan differs from the reviewed plan ({len(result.differences)} differences):")
        lines += [f"  {line}" for line in result.differences[:SHOWN]]
        if len(result.differences) > SHOWN:
            lines.append(f"  … and {len(result.differences) - SHOWN} more")
    if result.joined:
        lines.append(f"Joined a selector since the review ({len(result.joined)}):")
        lines += [f"  {_desktop(c)}: {_intent_text(intent(c))}" for c in result.joined[:SHOWN]]
        if len(result.joined) > SHOWN:
            lines.append(f"  … and {len(result.joined) - SHOWN} more")
    return "\n".join(lines) + "\n"


def comparison_json(result: Comparison) -> dict[str, Any]:
    return {
        "same": result.same,
        "groups": result.groups,
        "desktops": result.desktops,
        "differences": list(result.differences),
        "joined": [{"desktop_id": c.desktop_id, "desktop_name": c.desktop_name, "group": c.group,
                    "action": c.action.value, "reason": (c.pending or c.reason).value, "image_id": c.after_image}
                   for c in result.joined],
    }
