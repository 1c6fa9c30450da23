"""Plan safety that needs no catalogue: desktops that cannot be rebuilt now, and the
blast-radius guard (``safety.max_rebuilds_per_run``). Pure: values in, values out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from reconciler.cloud.models import Desktop
from reconciler.errors import ReconcilerError
from reconciler.model import Action, Change, Reason

if TYPE_CHECKING:  # plan.py renders the guard into plan documents: no import cycle at run time
    from reconciler.plan import Plan

# Desktop statuses in which the service accepts a rebuild; in any other it answers 409.
REBUILDABLE_STATUSES = frozenset({"ACTIVE", "SHUTOFF", "ERROR"})


def unrebuildable(desktop: Desktop) -> str | None:
    """Why the service would refuse to rebuild the desktop now (None: it would not). A busy
    ``task_status`` is not listed: it passes, and apply sets such desktops aside on a 409."""
    if desktop.frozen:
        return "frozen"
    if desktop.in_maintenance_mode:
        return "in maintenance mode"
    if desktop.status and desktop.status not in REBUILDABLE_STATUSES:
        return f"status {desktop.status}"
    return None


def hold_unrebuildable(changes: Sequence[Change], live: Mapping[str, Desktop]) -> list[Change]:
    """Rebuilds of desktops the service would refuse become ``wait`` (``not_rebuildable``),
    keeping why they are wanted, so a later run rebuilds them once they can be."""
    held = []
    for change in changes:
        desktop = live.get(change.desktop_id)
        why = unrebuildable(desktop) if change.action is Action.REBUILD and desktop is not None else None
        if why is None:
            held.append(change)
        else:
            held.append(replace(change, action=Action.WAIT, reason=Reason.NOT_REBUILDABLE, detail=why, pending=change.reason))
    return held


# -- the blast-radius guard -------------------------------------------------------------------


@dataclass(frozen=True)
class MassRebuild:
    """A plan that rebuilds more desktops than ``safety.max_rebuilds_per_run`` allows."""

    rebuilds: int
    limit: int
    setting: str  # as written: "50" or "10%"
    managed: int
    groups: tuple[tuple[str, int], ...]  # group -> rebuilds, most first

    def describe(self) -> str:
        of = f" ({self.setting} of {self.managed} managed desktops)" if self.setting.endswith("%") else ""
        groups = ", ".join(f"{name} {count}" for name, count in self.groups)
        return (f"{self.rebuilds} rebuilds exceed safety.max_rebuilds_per_run = {self.limit}{of}; "
                f"groups: {groups}")


def mass_rebuild(plan: Plan) -> MassRebuild | None:
    """The plan's excess over the limit in its settings, or None when within it (or unlimited)."""
    limit = plan.settings.safety.max_rebuilds_per_run if plan.settings else None
    if limit is None:
        return None
    rebuilt = Counter(c.group or "" for c in plan.changes if c.action is Action.REBUILD)
    total, allowed = sum(rebuilt.values()), limit.limit(plan.managed_desktops)
    if total <= allowed:
        return None
    groups = tuple(sorted(rebuilt.items(), key=lambda item: (-item[1], item[0])))
    return MassRebuild(total, allowed, str(limit), plan.managed_desktops, groups)


class MassRebuildRefused(ReconcilerError):
    """apply was given a plan over ``safety.max_rebuilds_per_run`` without ``--allow-mass-rebuild``."""


def refuse_mass_rebuild(plan: Plan, allowed: bool) -> None:
    """Raise MassRebuildRefused for a plan over the limit, unless the operator allowed it."""
    excess = mass_rebuild(plan)
    if excess is not None and not allowed:
        raise MassRebuildRefused(
            f"refusing to apply: {excess.describe()}. Nothing was sent. Check the selectors and targets, "
            "or apply it anyway with --allow-mass-rebuild"
        )
