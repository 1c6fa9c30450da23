"""Resolving lost rebuild calls from the sub-jobs the service reports, including the shapes the
simulator never produces (a sub-job not started yet has no begin time)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from reconciler.cloud.models import Desktop, SubJob
from reconciler.refresh import resolve_unknown
from reconciler.state import DesktopRecord, JobRef, State

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class SubJobs:
    """Answers iter_sub_jobs with fixed sub-jobs: the one call resolve_unknown makes."""

    def __init__(self, *subs: dict[str, Any]) -> None:
        self.subs = [SubJob.from_api({"job_type": "rebuildDesktops", "entities": {"desktop_id": "d1"}, **s}) for s in subs]

    def iter_sub_jobs(self, **_: Any) -> list[SubJob]:
        return self.subs


def lost_call() -> State:
    job = JobRef(None, "UNKNOWN", "img-new", NOW.isoformat(), batch_id="b1")
    return State("l", 1, MappingProxyType({"d1": DesktopRecord("g", "img-old", "pc1", job)}))


def idle(image: str = "img-old") -> dict[str, Desktop]:
    return {"d1": Desktop("d1", "pc1", "ACTIVE", "", "REGISTERED", image, None, None)}


OLD_SUCCESS = {"id": "s0", "job_id": "job-old", "status": "SUCCESS", "begin_time": "2026-06-01 08:00:00"}


def test_a_waiting_sub_job_without_a_begin_time_is_the_newest() -> None:
    client = SubJobs(OLD_SUCCESS, {"id": "s1", "job_id": "job-lost", "status": "WAITING", "begin_time": ""})
    record = resolve_unknown(client, lost_call(), idle(), NOW)  # type: ignore[arg-type]
    assert record is not None and record["desktops"] == {"d1": {"job_id": "job-lost", "status": "WAITING", "fail_reason": None}}


def test_an_unfinished_rebuild_we_cannot_tie_to_the_call_keeps_it_unknown() -> None:
    client = SubJobs({"id": "s1", "job_id": "job-x", "status": "RUNNING", "begin_time": "2026-11-27 09:00:00"})
    assert resolve_unknown(client, lost_call(), idle(), NOW) is None  # type: ignore[arg-type]


def test_only_old_finished_rebuilds_and_an_idle_desktop_mean_the_call_never_arrived() -> None:
    record = resolve_unknown(SubJobs(OLD_SUCCESS), lost_call(), idle(), NOW)  # type: ignore[arg-type]
    assert record is not None and record["desktops"] == {"d1": {"job_id": None}}


def test_a_sub_job_started_after_the_call_is_its_job() -> None:
    client = SubJobs(OLD_SUCCESS, {"id": "s1", "job_id": "job-lost", "status": "SUCCESS", "begin_time": "2026-11-27 12:00:05"})
    record = resolve_unknown(client, lost_call(), idle("img-new"), NOW)  # type: ignore[arg-type]
    assert record is not None and record["desktops"]["d1"]["job_id"] == "job-lost"
