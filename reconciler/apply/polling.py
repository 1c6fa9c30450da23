"""Looking at the jobs of an apply's rebuilds under way: their sub-jobs read and journaled as one
``job_status`` record. Network and journal I/O through a ``WorkspaceClient`` and a ``Recorder``;
runs on the applier's own thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.apply.events import JobFinished
from reconciler.refresh import job_totals
from reconciler.state.recorder import Recorder
from reconciler.state.records import SubJobSeen

if TYPE_CHECKING:  # the HTTP client is only needed when a command talks to the cloud
    from reconciler.cloud.client import WorkspaceClient

log = logging.getLogger("reconciler.apply")
FINISHED = ("SUCCESS", "FAILED")


@dataclass(frozen=True)
class JobsSeen:
    """One look at the jobs: each desktop's sub-job and each ledger job's overall status."""

    desktops: Mapping[str, SubJobSeen]  # desktop id -> {job_id, status, fail_reason}
    totals: Mapping[str, str]  # job id -> overall status

    def finished(self) -> dict[str, str]:
        """Desktop id -> SUCCESS or FAILED, for the sub-jobs that ended."""
        return {d: s["status"] for d, s in self.desktops.items() if s["status"] in FINISHED}

    def fail_reason(self, desktop_id: str) -> str:
        return str(self.desktops[desktop_id].get("fail_reason") or "rebuild FAILED")

    def finished_jobs(self) -> list[JobFinished]:
        """A ``job_finished`` event for each job that ended."""
        events = []
        for job_id, status in self.totals.items():
            if status in FINISHED:
                counts = [s["status"] for s in self.desktops.values() if s["job_id"] == job_id]
                events.append(JobFinished(event="job_finished", job_id=job_id, status=status,
                                          succeeded=counts.count("SUCCESS"), failed=counts.count("FAILED")))
        return events


class JobPoller:
    """Reads the sub-jobs of given jobs and journals what it saw."""

    def __init__(self, client: WorkspaceClient, recorder: Recorder) -> None:
        self._client = client
        self._recorder = recorder

    def look(self, job_ids: Iterable[str]) -> JobsSeen | None:
        """Every sub-job of these jobs, journaled; None when there was nothing to see."""
        seen: dict[str, SubJobSeen] = {}
        for job_id in sorted(set(job_ids)):
            for sub in self._client.iter_sub_jobs(job_id=job_id):
                seen[sub.desktop_id] = {"job_id": job_id, "status": sub.status, "fail_reason": sub.fail_reason or None}
        if not seen:
            return None
        totals = job_totals(self._recorder.state(), seen)
        self._recorder.record({"type": "job_status", "at": self._recorder.at(), "desktops": seen, "jobs": totals})
        log.debug("jobs looked at: %d sub-jobs of %d jobs", len(seen), len(set(job_ids)))
        return JobsSeen(seen, totals)
