"""Sending one rebuild batch: a last look for connected users, then journal, call, journal.
Network and journal I/O through a ``WorkspaceClient`` and a ``Recorder``.

``Submitter.send`` is the only apply code that runs on worker threads (up to
``max_concurrent_calls`` at once). It touches nothing but the client and the recorder, both
thread-safe, and hands a ``CallResult`` back for the applier's own thread to act on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from reconciler.cloud import errors
from reconciler.model import DesktopGroup
from reconciler.rollout.apply_recheck import connected_users
from reconciler.rollout.apply_waves import RebuildBatch
from reconciler.state.recorder import Recorder
from reconciler.state.records import BatchFields

if TYPE_CHECKING:  # the HTTP client is only needed when a command talks to the cloud
    from reconciler.cloud.client import WorkspaceClient

log = logging.getLogger("reconciler.apply")


@dataclass(frozen=True)
class CallResult:
    """What became of one batch taken from a group."""

    batch: RebuildBatch  # as taken from the group (its size is what the group counted)
    sent: RebuildBatch | None = None  # as sent, without desktops deferred at the last moment; None: nothing sent
    job_id: str | None = None
    error: errors.WorkspaceError | None = None
    unknown: bool = False  # sent, and no answer proves what became of it
    deferred: tuple[str, ...] = ()  # a user connected since the plan: not sent
    returned_at: datetime | None = None  # when an unknown outcome's call ended: its lost-call horizon starts then


class Submitter:
    """Sends batches; one instance serves every worker thread of an apply."""

    def __init__(self, client: WorkspaceClient, recorder: Recorder, groups: Mapping[str, DesktopGroup]) -> None:
        self._client = client
        self._recorder = recorder
        self._groups = groups

    def send(self, taken: RebuildBatch) -> CallResult:
        """Runs on a worker thread: a last look for connected users, then journal, call, journal."""
        connected = connected_users(self._client, self._groups[taken.group], taken.desktop_ids)
        if connected:
            rest = [i for i in taken.desktop_ids if i not in set(connected)]
            if not rest:
                return CallResult(taken, deferred=tuple(connected))
            result = self._call(taken.narrowed(rest))
            return replace(result, batch=taken, deferred=tuple(connected))
        return self._call(taken)

    def _call(self, batch: RebuildBatch) -> CallResult:
        base: BatchFields = {"batch_id": batch.id, "group": batch.group, "desktop_ids": list(batch.desktop_ids)}
        record, at = self._recorder.record, self._recorder.at
        record({"type": "intent", "at": at(), "image_id": batch.request.image_id, "names": dict(batch.names), **base})
        log.debug("batch %s: sending %d desktops of group %s (%s wave, attempt %d)",
                  batch.id, len(batch.desktop_ids), batch.group, batch.wave, batch.attempt)
        try:
            job_id = self._client.rebuild_desktops(batch.request)
        except errors.UnknownOutcome as exc:
            returned_at = self._recorder.now()
            record({"type": "unknown", "at": at(), "error": str(exc), **base})
            log.debug("batch %s: outcome unknown (%s)", batch.id, exc)
            return CallResult(batch, batch, unknown=True, error=exc, returned_at=returned_at)
        except errors.WorkspaceError as exc:
            record({"type": "rejected", "at": at(), "error": str(exc), **base})
            log.debug("batch %s: refused (%s)", batch.id, exc)
            return CallResult(batch, batch, error=exc)
        record({"type": "submitted", "at": at(), "job_id": job_id, "image_id": batch.request.image_id, "names": dict(batch.names), **base})
        log.debug("batch %s: job %s", batch.id, job_id)
        return CallResult(batch, batch, job_id=job_id)
