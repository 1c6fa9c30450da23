"""Plan time: rollout shaping for one group's planned changes: windows, connected users, canary waves.
Pure: the caller passes the moment (``now``) and the live desktops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from reconciler.cloud.models import Desktop
from reconciler.model import Action, Change, DesktopGroup, Reason
from reconciler.rollout.windows import describe, is_open, next_opening

CANARY_WAVE = "canary"
MAIN_WAVE = "main"


def window_wait(group: DesktopGroup, now: datetime, ignore_window: bool) -> str | None:
    """The detail of an ``outside_window`` wait, or None when the group may be rebuilt now."""
    window = group.rollout.window
    if window is None or ignore_window or is_open(window, now):
        return None
    return f"window {describe(window)} opens {next_opening(window, now).isoformat(timespec='minutes')}"


def shape_rollout(
    group: DesktopGroup,
    changes: Sequence[Change],
    live: Mapping[str, Desktop],
    now: datetime,
    ignore_window: bool,
    proven: int = 0,
) -> list[Change]:
    """Defer rebuilds the group may not do now, and put the first ``canary`` rebuilds in the
    canary wave. ``proven`` counts desktops of the group already rebuilt successfully to the
    desired image: a canary that passed in an earlier run is not asked for again."""
    closed = window_wait(group, now, ignore_window)
    canaries_left = max(0, group.rollout.canary - proven)
    shaped = []
    for change in changes:
        if change.action is not Action.REBUILD:
            shaped.append(change)
            continue
        desktop = live.get(change.desktop_id)
        if closed is not None:
            shaped.append(replace(change, action=Action.WAIT, reason=Reason.OUTSIDE_WINDOW, detail=closed, pending=change.reason))
        elif group.rollout.skip_connected and desktop is not None and desktop.login_status == "CONNECTED":
            shaped.append(replace(change, action=Action.WAIT, reason=Reason.USER_CONNECTED, pending=change.reason))
        else:
            wave = CANARY_WAVE if canaries_left > 0 else MAIN_WAVE
            canaries_left -= wave == CANARY_WAVE
            shaped.append(replace(change, wave=wave))
    return shaped
