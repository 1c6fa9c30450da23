"""Rebuild jobs and their sub-jobs over (simulated) time.

No I/O. A sub-job's status is a function of the clock: WAITING until ``starts_at``, RUNNING
until ``ends_at``, then SUCCESS or FAILED as decided when the rebuild was accepted. The
side effects of finishing (the desktop's image and task_status) are applied lazily: every
request first pops the due sub-jobs off a heap (``JobBook.due``), so a fake clock drives the
whole simulation deterministically and no background thread is needed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

JOB_TYPE_REBUILD = "rebuildDesktops"
WAITING, RUNNING, SUCCESS, FAILED = "WAITING", "RUNNING", "SUCCESS", "FAILED"
JOB_STATUSES = (WAITING, RUNNING, SUCCESS, FAILED)
REBUILD_FAILED_CODE = "WKS.00010508"
# Share of job_seconds a sub-job spends WAITING before RUNNING.
WAITING_SHARE = 0.1


@dataclass(slots=True)
class SubJob:
    """One desktop's part of a rebuild job."""

    id: str
    job_id: str
    desktop_id: str
    desktop_name: str
    user_name: str | None
    product_id: str
    ip_address: str
    will_fail: bool
    accepted_at: float
    starts_at: float
    ends_at: float
    settled: bool = False

    def status(self, now: float) -> str:
        if now < self.starts_at:
            return WAITING
        if now < self.ends_at:
            return RUNNING
        return FAILED if self.will_fail else SUCCESS

    def finished(self, now: float) -> bool:
        return now >= self.ends_at

    def process(self, now: float) -> int:
        """Progress 0..100 by time through the RUNNING phase."""
        if now < self.starts_at:
            return 0
        if now >= self.ends_at:
            return 100
        return int(100 * (now - self.starts_at) / (self.ends_at - self.starts_at))

    @property
    def error_code(self) -> str | None:
        return REBUILD_FAILED_CODE if self.will_fail else None

    @property
    def fail_reason(self) -> str | None:
        if not self.will_fail:
            return None
        return f"Failed to rebuild the system disk of desktop {self.desktop_id} (simulated failure)."


@dataclass(slots=True)
class Job:
    """One accepted rebuild request."""

    id: str
    job_type: str
    accepted_at: float
    request: dict[str, Any]
    sub_jobs: list[SubJob]

    def status(self, now: float) -> str:
        statuses = [sub.status(now) for sub in self.sub_jobs]
        if all(s == WAITING for s in statuses):
            return WAITING
        if any(s in (WAITING, RUNNING) for s in statuses):
            return RUNNING
        return FAILED if FAILED in statuses else SUCCESS

    def finished_at(self, now: float) -> float | None:
        end = max(sub.ends_at for sub in self.sub_jobs)
        return end if now >= end else None

    def failed(self, now: float) -> list[SubJob]:
        return [sub for sub in self.sub_jobs if sub.finished(now) and sub.will_fail]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "job_type": self.job_type, "accepted_at": self.accepted_at,
            "request": dict(self.request), "sub_jobs": [asdict(sub) for sub in self.sub_jobs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        subs = [SubJob(**sub) for sub in data["sub_jobs"]]
        return cls(data["id"], data["job_type"], data["accepted_at"], dict(data["request"]), subs)


class JobBook:
    """Every job in creation order, plus a heap of sub-jobs not yet settled."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = 0

    def add(self, job: Job) -> None:
        self.jobs[job.id] = job
        for index, sub in enumerate(job.sub_jobs):
            if not sub.settled:
                self._seq += 1
                heapq.heappush(self._heap, (sub.ends_at, self._seq, job.id, index))

    def due(self, now: float) -> Iterator[SubJob]:
        """Sub-jobs that finished by `now` and were not settled yet, in finishing order."""
        while self._heap and self._heap[0][0] <= now:
            _, _, job_id, index = heapq.heappop(self._heap)
            sub = self.jobs[job_id].sub_jobs[index]
            sub.settled = True
            yield sub

    def sub_jobs(self, job_id: str | None, job_type: str | None, status: str | None, now: float) -> list[SubJob]:
        if job_id is not None:
            jobs = [self.jobs[job_id]] if job_id in self.jobs else []
        else:
            jobs = list(self.jobs.values())
        return [
            sub
            for job in jobs
            if job_type is None or job.job_type == job_type
            for sub in job.sub_jobs
            if status is None or sub.status(now) == status
        ]

    def to_list(self) -> list[dict[str, Any]]:
        return [job.to_dict() for job in self.jobs.values()]

    @classmethod
    def from_list(cls, data: list[Mapping[str, Any]]) -> JobBook:
        book = cls()
        for item in data:
            book.add(Job.from_dict(item))
        return book
