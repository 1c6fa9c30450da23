"""Which desktops of rebuild calls with an unknown outcome may be looked up, and when. No I/O.

A call whose answer was lost (no answer, a 5xx, a 200 without ``job_id``) may still be
delivered by a gateway until the lost-call horizon has passed. Looked up earlier, it shows no
sub-job and no busy desktop and would be sent again: a desktop rebuilt twice. So the applier
keeps each lost desktop out of every batch and looks it up only once the horizon has passed
since its call was given up on; a desktop the lookups cannot settle after a few looks is left
UNKNOWN for the next run.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

# Looks at the live API a lost desktop gets, once ripe, before it is left UNKNOWN for the next run.
MAX_LOOKS = 3
# Journal times are whole seconds, rounded down: a call journaled at :07 was sent before :08.
JOURNAL_ROUNDING = timedelta(seconds=1)


class LostCalls:
    """The desktops of lost calls, each with the moment its horizon started and the looks it had."""

    def __init__(self, horizon_seconds: float) -> None:
        self.horizon = timedelta(seconds=horizon_seconds)
        self._since: dict[str, datetime] = {}
        self._looks: dict[str, int] = {}

    def add(self, desktop_ids: Iterable[str], since: datetime) -> None:
        """Desktops of a call given up on at ``since`` (the answer came, or the client gave up)."""
        for desktop_id in desktop_ids:
            self._since[desktop_id] = since
            self._looks[desktop_id] = 0

    def add_journaled(self, desktop_ids: Iterable[str], submitted_at: str) -> None:
        """Desktops left UNKNOWN by an earlier run, from the journal time of their intent."""
        self.add(desktop_ids, datetime.fromisoformat(submitted_at) + JOURNAL_ROUNDING)

    def ripe(self, now: datetime) -> list[str]:
        """Desktops past the horizon that may be looked up now."""
        return sorted(d for d, since in self._since.items() if now - since >= self.horizon and self._looks[d] < MAX_LOOKS)

    def looked(self, desktop_ids: Iterable[str]) -> None:
        for desktop_id in desktop_ids:
            if desktop_id in self._looks:
                self._looks[desktop_id] += 1

    def waiting(self, desktop_id: str) -> bool:
        """Still to be looked up: before its horizon, or with looks left."""
        return desktop_id in self._since and self._looks[desktop_id] < MAX_LOOKS

    def settled(self, desktop_id: str) -> None:
        self._since.pop(desktop_id, None)
        self._looks.pop(desktop_id, None)
