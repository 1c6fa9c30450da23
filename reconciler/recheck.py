"""What a plan decided earlier, checked again just before a rebuild call: the group's
maintenance window, and (for ``skip_connected`` groups) whether a user has connected since.
A saved plan may be applied hours after it was made, and a long apply may outlast its window.
Network I/O through the client for the connected check; the window check is pure.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from reconciler.model import DesktopGroup
from reconciler.rollout import window_wait

if TYPE_CHECKING:
    from reconciler.cloud.client import WorkspaceClient

CONNECTED = "CONNECTED"


def window_closed(group: DesktopGroup, now: datetime, ignore_window: bool) -> str | None:
    """Why the group may not be rebuilt now (its window is closed), or None."""
    return window_wait(group, now, ignore_window)


def connected_users(client: WorkspaceClient, group: DesktopGroup, desktop_ids: tuple[str, ...]) -> list[str]:
    """The desktops of a ``skip_connected`` group whose user is connected right now."""
    if not group.rollout.skip_connected or not desktop_ids:
        return []
    return sorted(d.id for d in client.iter_desktops(desktop_id=list(desktop_ids)) if d.login_status == CONNECTED)
