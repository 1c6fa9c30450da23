"""The planner: manifests + state (+ live inventory) → a plan. Pure and deterministic, no I/O,
no clock (the caller passes ``now``); output sorted by group and desktop id.

The decision table is in the README ("How a plan decides") and docs/architecture.md; ``decide``
is its one implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reconciler.cloud.models import Desktop
from reconciler.errors import ReconcilerError
from reconciler.model import Action, Change, DesktopGroup, Reason
from reconciler.plan import Plan
from reconciler.rollout.plan_shaping import shape_rollout
from reconciler.safety import hold_unrebuildable
from reconciler.state import DesktopRecord, State


class PlanError(ReconcilerError):
    """The manifests and the fleet contradict each other (missing desktops, overlaps)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        if len(problems) == 1:
            super().__init__(problems[0])
        else:
            super().__init__("\n".join(self.message_lines()))

    def message_lines(self) -> list[str]:
        if len(self.problems) == 1:
            return [self.problems[0]]
        return [f"{len(self.problems)} problems:", *(f"  {p}" for p in self.problems)]


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
    replace: tuple[str, ...] = ()  # groups and desktop ids to rebuild even when current
    now: datetime = field(default_factory=lambda: datetime(1970, 1, 1, tzinfo=UTC))


def _recorded_by_group(state: State) -> dict[str, list[str]]:
    recorded: dict[str, list[str]] = {}
    for desktop_id, record in state.desktops.items():
        recorded.setdefault(record.group, []).append(desktop_id)
    return recorded


def _claims(group: DesktopGroup, inventory: Inventory | None, recorded: Mapping[str, list[str]]) -> list[str]:
    """The desktops a group claims: its ids, plus what its selector matched (live, or without
    a refresh what it matched last time, as the state recorded)."""
    if group.selector is None:
        return list(group.ids)
    if inventory is not None:
        matched: Iterable[str] = inventory.selector_matches.get(group.name, frozenset())
    else:
        matched = recorded.get(group.name, ())
    return list(dict.fromkeys([*group.ids, *matched]))


def _members(groups: Sequence[DesktopGroup], state: State, inventory: Inventory | None) -> dict[str, list[str]]:
    """group name → the desktops it owns; PlanError for missing ids and desktops two groups
    claim. One pass over the claims: this runs over every managed desktop on each plan."""
    recorded = _recorded_by_group(state) if inventory is None and any(g.selector for g in groups) else {}
    owner: dict[str, DesktopGroup] = {}
    overlaps: dict[str, list[DesktopGroup]] = {}
    problems: list[str] = []
    members: dict[str, list[str]] = {}
    for group in groups:
        if inventory is not None:
            problems += [f"{group.source}: group {group.name!r}: desktop {i} not found (missing)"
                         for i in group.ids if i not in inventory.desktops]
        claimed = _claims(group, inventory, recorded)
        for desktop_id in claimed:
            first = owner.setdefault(desktop_id, group)
            if first is not group:
                overlaps.setdefault(desktop_id, [first]).append(group)
        members[group.name] = claimed
    for desktop_id in sorted(overlaps):
        where = " and ".join(f"{g.name!r} ({g.source})" for g in overlaps[desktop_id])
        problems.append(f"desktop {desktop_id} is claimed by groups {where}")
    if problems:
        raise PlanError(problems)
    return members


def decide(group: DesktopGroup, record: DesktopRecord | None, live: Desktop | None, refreshed: bool) -> tuple[Action, Reason] | None:
    """One row of the decision table for one desktop; None when nothing is to do."""
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


def replaced(decision: tuple[Action, Reason] | None) -> tuple[Action, Reason] | None:
    """``--replace``: a desktop that runs the desired image is rebuilt all the same; one that
    is rebuilt anyway keeps its own reason, and a running rebuild is still waited for."""
    if decision is None or decision[0] is Action.ADOPT:
        return Action.REBUILD, Reason.REPLACE_REQUESTED
    return decision


def _group_changes(
    group: DesktopGroup,
    desktop_ids: Iterable[str],
    records: Mapping[str, DesktopRecord],
    inventory: Inventory | None,
    replace: frozenset[str] = frozenset(),
) -> tuple[list[Change], int]:
    """The group's changes, and how many of its desktops were already rebuilt successfully to
    the desired image (canaries proven in earlier runs)."""
    changes, proven = [], 0
    refreshed = inventory is not None
    desired = group.image.id
    whole_group = group.name in replace
    for desktop_id in sorted(desktop_ids):
        record = records.get(desktop_id)
        forced = whole_group or desktop_id in replace
        if record is not None:
            if (job := record.job) is not None:
                proven += job.status == "SUCCESS" and job.image_id == desired
            elif not refreshed and record.image_id == desired and not forced:
                continue  # decide() says None: the bulk of a large plan without refresh
        live = inventory.desktops.get(desktop_id) if inventory is not None else None
        decision = decide(group, record, live, refreshed)
        if forced:
            decision = replaced(decision)
        if decision is None:
            continue
        action, reason = decision
        before = live.image_id if live is not None else (record.image_id if record else None)
        name = live.name if live is not None else (record.name if record else None)
        detail = record.job.id if reason is Reason.IN_PROGRESS and record and record.job else None
        changes.append(Change(desktop_id, action, reason, group.name, name, before, desired, detail=detail))
    return changes, proven


def _forgotten(state: State, members: Mapping[str, Sequence[str]]) -> list[Change]:
    managed = {desktop_id for ids in members.values() for desktop_id in ids}
    gone = sorted(
        desktop_id
        for desktop_id, record in state.desktops.items()
        if desktop_id not in managed and not (record.job and record.job.in_progress)
    )
    changes = []
    for desktop_id in gone:
        record = state.desktops[desktop_id]
        changes.append(Change(desktop_id, Action.FORGET, Reason.REMOVED_FROM_MANIFESTS, record.group, record.name, record.image_id))
    return changes


def selection(
    options: PlanOptions, groups: Sequence[DesktopGroup], members: Mapping[str, Sequence[str]], state: State
) -> Callable[[Change], bool] | None:
    """What ``--target``/``--exclude`` keep (None: everything); PlanError for a name that is
    neither a group nor a desktop."""
    if not (options.targets or options.excludes):
        return None
    names = {g.name for g in groups}

    def known(name: str) -> bool:
        return name in names or name in state.desktops or any(name in ids for ids in members.values())

    unknown = [n for n in (*options.targets, *options.excludes) if not known(n)]
    if unknown:
        raise PlanError([f"--target/--exclude {n!r} names no group or desktop" for n in unknown])
    targets, excludes = set(options.targets), set(options.excludes)

    def picked(change: Change) -> bool:
        keys = {change.desktop_id, change.group}
        return (not targets or bool(keys & targets)) and not keys & excludes

    return picked


def _replacements(names: Sequence[str], groups: Sequence[DesktopGroup], members: Mapping[str, Sequence[str]]) -> frozenset[str]:
    """What ``--replace`` names; PlanError for a name that is no group and no managed desktop."""
    if not names:
        return frozenset()
    known = {g.name for g in groups} | {desktop_id for ids in members.values() for desktop_id in ids}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PlanError([f"--replace {n!r} names no group or managed desktop" for n in unknown])
    return frozenset(names)


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
    live = inventory.desktops if inventory is not None else {}
    # One plain-dict copy: lookups through the state's read-only proxy cost twice as much, and
    # this loop runs once per managed desktop.
    records = dict(state.desktops)
    # Targets narrow the changes before rollout shaping, so canaries come from what is targeted.
    picked = selection(options, ordered, members, state)
    replace = _replacements(options.replace, ordered, members)
    changes: list[Change] = []
    for group in ordered:
        group_changes, proven = _group_changes(group, members[group.name], records, inventory, replace)
        if picked is not None:
            group_changes = [c for c in group_changes if picked(c)]
        group_changes = hold_unrebuildable(group_changes, live)
        changes += shape_rollout(group, group_changes, live, options.now, options.ignore_window, proven)
    forgotten = _forgotten(state, members)
    changes += forgotten if picked is None else [c for c in forgotten if picked(c)]
    return Plan(
        changes=tuple(changes),
        groups=tuple(ordered),
        lineage=state.lineage,
        serial=state.serial,
        refreshed=inventory is not None,
        targets=options.targets,
        excludes=options.excludes,
        ignore_window=options.ignore_window,
        replace=options.replace,
        managed_desktops=len({desktop_id for ids in members.values() for desktop_id in ids}),
    )
