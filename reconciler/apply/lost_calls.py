"""Rebuild calls whose outcome is unknown, during an apply: which of their desktops may be looked
up and when (``LostCalls``, no I/O), and looking them up (``LostCallResolver``: network and
journal I/O through a ``WorkspaceClient`` and a ``Recorder``, on the applier's own thread).

A call whose answer was lost (no answer, a 5xx, a 200 without ``job_id``) may still be
delivered by a gateway until the lost-call horizon has passed. Looked up earlier, it shows no
sub-job and no busy desktop and would be sent again: a desktop rebuilt twice. So the applier
keeps each lost desktop out of every batch and looks it up only once the horizon has passed
since its call was given up on; a desktop the lookups cannot settle after a few looks is left
UNKNOWN for the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from reconciler.refresh import desktops_by_id, resolve_unknown
from reconciler.state.recorder import Recorder
from reconciler.state.records import JobStatus

if TYPE_CHECKING:  # the HTTP client is only needed when a command talks to the cloud
    from reconciler.cloud.client import WorkspaceClient

log = logging.getLogger("reconciler.apply")

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


class LostCallResolver:
    """Looks lost calls up in the live API once past their horizon, and says which desktops are
    settled: tied to the job their call got, or known never reached."""

    def __init__(self, client: WorkspaceClient, recorder: Recorder) -> None:
        self._client = client
        self._recorder = recorder
        self.calls = LostCalls(client.lost_call_horizon)

    def look(self) -> None:
        """Look up the desktops past their horizon (sub-jobs, live state) and journal what was
        found. Only desktops read live here can be found never reached; a job found for any
        lost desktop settles it at once."""
        ripe = self.calls.ripe(self._recorder.now())
        if not ripe:
            return
        live = desktops_by_id(self._client, ripe)
        record = resolve_unknown(self._client, self._recorder.state(), live, self._recorder.now())
        if record is not None:
            self._recorder.record(record)
        self.calls.looked(ripe)

    def settled(self, desktop_ids: Sequence[str]) -> dict[str, str | None]:
        """Of these lost desktops, those the state now settles, whichever record did (a lookup
        can find a call's job while the call is still on the wire): desktop id -> job id, or
        None when the call never reached it."""
        state = self._recorder.state()
        settled: dict[str, str | None] = {}
        for desktop_id in desktop_ids:
            record = state.desktops.get(desktop_id)
            job = record.job if record is not None else None
            if job is not None and job.status == JobStatus.UNKNOWN:
                continue  # not settled yet: looked at again at the next poll
            self.calls.settled(desktop_id)
            settled[desktop_id] = job.id if job is not None and job.id else None
            log.debug("lost call resolved: %s %s", desktop_id,
                      f"got job {settled[desktop_id]}" if settled[desktop_id] else "was never reached; sent again")
        return settled
