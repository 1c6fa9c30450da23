"""Apply time: what a plan decided earlier, checked again just before a rebuild call. The
group's window is checked with ``plan_shaping.window_wait`` (pure); here, for
``skip_connected`` groups, whether a user has connected since. A saved plan may be applied hours
after it was made. Network I/O through the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.model import DesktopGroup

if TYPE_CHECKING:
    from reconciler.cloud.client import WorkspaceClient

CONNECTED = "CONNECTED"


def connected_users(client: WorkspaceClient, group: DesktopGroup, desktop_ids: tuple[str, ...]) -> list[str]:
    """The desktops of a ``skip_connected`` group whose user is connected right now."""
    if not group.rollout.skip_connected or not desktop_ids:
        return []
    return sorted(d.id for d in client.iter_desktops(desktop_id=list(desktop_ids)) if d.login_status == CONNECTED)
