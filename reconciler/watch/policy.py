"""What a watch cycle may apply (``--apply none|drift|all``) and when the next cycle starts.
Pure: plans in, plans and instants out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum

from reconciler.model import Action, Change, Reason
from reconciler.plan import Plan
from reconciler.rollout import CANARY_WAVE, MAIN_WAVE
from reconciler.rollout.windows import next_opening


class ApplyMode(StrEnum):
    NONE = "none"  # report only
    DRIFT = "drift"  # rebuild what drifted or failed, adopt and forget (state only)
    ALL = "all"  # the whole plan


# Rebuild reasons `--apply drift` acts on: the fleet moved away from what was applied.
DRIFT_REASONS = frozenset({Reason.DRIFT, Reason.RETRY_FAILED})


def allowed(change: Change, mode: ApplyMode) -> bool:
    """Whether ``mode`` applies this change (waits are never applied: nothing to do)."""
    if mode is ApplyMode.NONE or change.action is Action.WAIT:
        return False
    if mode is ApplyMode.ALL or change.action is not Action.REBUILD:
        return True
    return change.reason in DRIFT_REASONS


def narrow(plan: Plan, mode: ApplyMode) -> Plan:
    """The part of ``plan`` that ``mode`` applies, with each group's canary wave re-made from
    what is kept: the planner put its first ``k`` rebuilds in the canary wave, so the first
    ``k`` rebuilds kept are the canaries the planner would have picked among them."""
    canaries: dict[str | None, int] = {}
    for change in plan.changes:
        if change.wave == CANARY_WAVE:
            canaries[change.group] = canaries.get(change.group, 0) + 1
    kept: list[Change] = []
    for change in plan.changes:
        if not allowed(change, mode):
            continue
        if change.action is Action.REBUILD:
            left = canaries.get(change.group, 0)
            canaries[change.group] = max(0, left - 1)
            change = replace(change, wave=CANARY_WAVE if left > 0 else MAIN_WAVE)
        kept.append(change)
    return replace(plan, changes=tuple(kept))


def pending_openings(plan: Plan, mode: ApplyMode, now: datetime) -> dict[str, datetime]:
    """Group name -> next opening of its window, for groups whose rebuilds (that ``mode``
    would apply) wait for the window."""
    openings: dict[str, datetime] = {}
    for change in plan.changes:
        if change.reason is not Reason.OUTSIDE_WINDOW or change.pending is None or change.group is None:
            continue
        wanted = replace(change, action=Action.REBUILD, reason=change.pending)
        if change.group in openings or not allowed(wanted, mode):
            continue
        window = plan.group(change.group).rollout.window
        if window is not None:
            openings[change.group] = next_opening(window, now)
    return openings


def next_cycle(plan: Plan | None, mode: ApplyMode, now: datetime, interval: float) -> datetime:
    """After ``interval``, or as soon as a window with pending rebuilds opens if that is sooner.
    Openings are looked up from when the plan was made: a window that opened since is due now."""
    due = now + timedelta(seconds=interval)
    if plan is None:
        return due
    planned_at = datetime.fromisoformat(plan.created_at) if plan.created_at else now
    return min([due, *pending_openings(plan, mode, planned_at).values()])
