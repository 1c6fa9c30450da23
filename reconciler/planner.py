"""The planner: manifests + state (+ live inventory) → a plan. Pure and deterministic, no I/O,
no clock (the caller passes ``now``); output sorted by group and desktop id.

The decision table is design.md §5; ``decide`` is its one implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from reconciler.cloud.models import Desktop
from reconciler.errors import ReconcilerError
from reconciler.model import Action, Change, DesktopGroup, Reason
from reconciler.plan import Plan
from reconciler.rollout import shape_rollout
from reconciler.state import DesktopRecord, State


class PlanError(ReconcilerError):
    """The manifests and the fleet contradict each other (missing desktops, overlaps)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        if len(problems) == 1:
            super().__init__(problems[0])
        else:
            super().__init__(f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class Inventory:
    """What a refresh read from the live API: every desktop that matters, and which of them
    each group's selector matched."""

    desktops: Mapping[str, Desktop] = field(default_factory=dict)
    selector_matches: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanOptions:
    targets: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    ignore_window: bool = False
    now: datetime = field(default_factory=lambda: datetime(1970, 1, 1, tzinfo=timezone.utc))


def _members(
    groups: Sequence[DesktopGroup], state: State, inventory: Inventory | None
) -> dict[str, DesktopGroup]:
    """desktop id → the one group that claims it; PlanError for overlaps and missing ids."""
    claims: dict[str, list[DesktopGroup]] = {}
    problems: list[str] = []
    for group in groups:
        claimed = set(group.ids)
        if inventory is not None:
            missing = [i for i in group.ids if i not in inventory.desktops]
            problems += [f"{group.source}: group {group.name!r}: desktop {i} not found (missing)" for i in missing]
            claimed |= inventory.selector_matches.get(group.name, frozenset())
        elif group.selector is not None:
            # Without a refresh a selector cannot be evaluated: keep what it matched last time.
            claimed |= {i for i, r in state.desktops.items() if r.group == group.name}
        for desktop_id in claimed:
            claims.setdefault(desktop_id, []).append(group)
    for desktop_id, owners in sorted(claims.items()):
        if len(owners) > 1:
            where = " and ".join(f"{g.name!r} ({g.source})" for g in owners)
            problems.append(f"desktop {desktop_id} is claimed by groups {where}")
    if problems:
        raise PlanError(problems)
    return {desktop_id: owners[0] for desktop_id, owners in claims.items()}


def decide(group: DesktopGroup, record: DesktopRecord | None, live: Desktop | None, refreshed: bool) -> tuple[Action, Reason] | None:
    """One row of the decision table (design §5) for one desktop; None when nothing is to do."""
    desired = group.image.id
    job = record.job if record else None
    if (job is not None and job.in_progress) or (live is not None and live.is_rebuilding):
        return Action.WAIT, Reason.IN_PROGRESS
    recorded = record.image_id if record else None
    current = live.image_id if refreshed and live is not None else None
    if job is not None and job.status == "FAILED":
        if current == desired:
            return Action.ADOPT, Reason.ALREADY_CURRENT
        return Action.REBUILD, Reason.RETRY_FAILED
    if not refreshed:
        if record is None:
            return Action.REBUILD, Reason.NOT_RECORDED
        return (Action.REBUILD, Reason.IMAGE_CHANGED) if recorded != desired else None
    if current == desired:
        if record is not None and recorded == desired and record.group == group.name:
            return None
        return Action.ADOPT, Reason.ALREADY_CURRENT
    if record is None:
        return Action.REBUILD, Reason.NOT_RECORDED
    # The live image differs from what was recorded: someone changed the desktop behind
    # reconciler's back, whatever the manifests say now.
    if recorded != current:
        return Action.REBUILD, Reason.DRIFT
    return Action.REBUILD, Reason.IMAGE_CHANGED


def _group_changes(
    group: DesktopGroup, desktop_ids: Iterable[str], state: State, inventory: Inventory | None
) -> list[Change]:
    changes = []
    refreshed = inventory is not None
    for desktop_id in sorted(desktop_ids):
        record = state.desktops.get(desktop_id)
        live = inventory.desktops.get(desktop_id) if inventory is not None else None
        decision = decide(group, record, live, refreshed)
        if decision is None:
            continue
        action, reason = decision
        before = live.image_id if live is not None else (record.image_id if record else None)
        name = live.name if live is not None else (record.name if record else None)
        detail = record.job.id if reason is Reason.IN_PROGRESS and record and record.job else None
        changes.append(Change(desktop_id, action, reason, group.name, name, before, group.image.id, detail=detail))
    return changes


def _proven_canaries(group: DesktopGroup, desktop_ids: Iterable[str], state: State) -> int:
    """Desktops of the group whose last rebuild to the desired image succeeded."""
    count = 0
    for desktop_id in desktop_ids:
        job = (record := state.desktops.get(desktop_id)) and record.job
        count += bool(job and job.status == "SUCCESS" and job.image_id == group.image.id)
    return count


def _forgotten(state: State, members: Mapping[str, DesktopGroup]) -> list[Change]:
    return [
        Change(
            desktop_id,
            Action.FORGET,
            Reason.REMOVED_FROM_MANIFESTS,
            record.group,
            record.name,
            record.image_id,
            None,
        )
        for desktop_id, record in sorted(state.desktops.items())
        if desktop_id not in members and not (record.job and record.job.in_progress)
    ]


def _select(changes: list[Change], options: PlanOptions, groups: Sequence[DesktopGroup], known: set[str]) -> list[Change]:
    names = {g.name for g in groups} | known
    unknown = [n for n in (*options.targets, *options.excludes) if n not in names]
    if unknown:
        raise PlanError([f"--target/--exclude {n!r} names no group or desktop" for n in unknown])

    def picked(change: Change) -> bool:
        keys = {change.desktop_id, change.group}
        if options.targets and not keys & set(options.targets):
            return False
        return not keys & set(options.excludes)

    return [c for c in changes if picked(c)]


def plan(
    groups: Sequence[DesktopGroup],
    state: State,
    inventory: Inventory | None = None,
    options: PlanOptions = PlanOptions(),
) -> Plan:
    """The plan that brings the recorded (and, with an inventory, the live) fleet to the
    manifests. Raises PlanError when the manifests cannot be reconciled with the fleet."""
    ordered = sorted(groups, key=lambda g: g.name)
    members = _members(ordered, state, inventory)
    by_group: dict[str, list[str]] = {}
    for desktop_id, group in members.items():
        by_group.setdefault(group.name, []).append(desktop_id)
    changes: list[Change] = []
    for group in ordered:
        live = inventory.desktops if inventory is not None else {}
        group_changes = _group_changes(group, by_group.get(group.name, ()), state, inventory)
        proven = _proven_canaries(group, by_group.get(group.name, ()), state)
        changes += shape_rollout(group, group_changes, live, options.now, options.ignore_window, proven)
    changes += _forgotten(state, members)
    changes = _select(changes, options, ordered, set(members) | set(state.desktops))
    return Plan(
        changes=tuple(changes),
        groups=tuple(ordered),
        lineage=state.lineage,
        serial=state.serial,
        refreshed=inventory is not None,
        targets=options.targets,
        excludes=options.excludes,
        ignore_window=options.ignore_window,
    )
