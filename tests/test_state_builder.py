"""The fold of journal records into a state, record kind by record kind (the crash and recovery
tests cover it end to end; these pin each rule down on its own)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from reconciler.state import DesktopRecord, JobStatus, State, StateError, fold
from reconciler.state.records import (
    BeginRecord,
    IntentRecord,
    JobStatusRecord,
    RejectedRecord,
    ResolvedRecord,
    SubmittedRecord,
    UnknownRecord,
)

T0, T1, T2 = "2026-11-27T10:00:00+00:00", "2026-11-27T10:01:00+00:00", "2026-11-27T10:02:00+00:00"
ADOPTED = State("lin-1", 4, MappingProxyType({"d-1": DesktopRecord("fin", "img-old", "fin-1", None, T0)}))


def intent(*ids: str) -> IntentRecord:
    return {"type": "intent", "at": T1, "batch_id": "b-1", "group": "fin", "desktop_ids": list(ids), "image_id": "img-new"}


def rejected(*ids: str) -> RejectedRecord:
    return {"type": "rejected", "at": T1, "batch_id": "b-1", "group": "fin", "desktop_ids": list(ids), "error": "400"}


def unknown(*ids: str) -> UnknownRecord:
    return {"type": "unknown", "at": T1, "batch_id": "b-1", "group": "fin", "desktop_ids": list(ids), "error": "timeout"}


def submitted(*ids: str) -> SubmittedRecord:
    return {"type": "submitted", "at": T1, "batch_id": "b-1", "group": "fin", "desktop_ids": list(ids), "job_id": "job-1", "image_id": "img-new"}


def test_an_intent_marks_its_desktops_unknown_until_the_answer() -> None:
    state = fold(ADOPTED, [intent("d-1", "d-2")])
    assert {d: r.job.status for d, r in state.desktops.items() if r.job} == {"d-1": JobStatus.UNKNOWN, "d-2": JobStatus.UNKNOWN}
    assert state.desktops["d-1"].image_id == "img-old"  # nothing confirmed yet


def test_a_rejected_call_restores_what_the_intent_replaced() -> None:
    state = fold(ADOPTED, [intent("d-1", "d-2"), rejected("d-1", "d-2")])
    assert dict(state.desktops) == dict(ADOPTED.desktops)  # d-2 had no record: it has none again


def test_a_submitted_call_records_the_job_in_the_desktops_and_the_ledger() -> None:
    state = fold(ADOPTED, [intent("d-1"), submitted("d-1")])
    job = state.desktops["d-1"].job
    assert job is not None and (job.id, job.status, job.image_id) == ("job-1", JobStatus.SUBMITTED, "img-new")
    assert state.jobs["job-1"].desktop_ids == ("d-1",) and state.jobs["job-1"].status == JobStatus.SUBMITTED


def test_a_lost_answer_resolved_as_never_sent_forgets_an_intent_only_record() -> None:
    never: ResolvedRecord = {"type": "resolved", "at": T2, "desktops": {"d-1": {"job_id": None}, "d-2": {"job_id": None}}}
    state = fold(ADOPTED, [intent("d-1", "d-2"), unknown("d-1", "d-2"), never])
    assert state.desktops["d-1"].job is None and state.desktops["d-1"].image_id == "img-old"
    assert "d-2" not in state.desktops


def test_a_lost_answer_found_finished_confirms_the_image_and_joins_the_ledger() -> None:
    found: ResolvedRecord = {"type": "resolved", "at": T2, "desktops": {"d-1": {"job_id": "job-9", "status": "SUCCESS"}}}
    state = fold(ADOPTED, [intent("d-1"), unknown("d-1"), found])
    assert state.desktops["d-1"].image_id == "img-new"
    assert state.jobs["job-9"].status == JobStatus.SUCCESS and state.jobs["job-9"].finished_at == T2


def test_observed_statuses_finish_jobs_and_an_unheard_of_status_counts_as_running() -> None:
    seen: JobStatusRecord = {"type": "job_status", "at": T2, "desktops": {"d-1": {"job_id": "job-1", "status": "PAUSED"}}, "jobs": {"job-1": "PAUSED"}}
    state = fold(ADOPTED, [intent("d-1"), submitted("d-1"), seen])
    assert state.desktops["d-1"].job.status == JobStatus.RUNNING  # type: ignore[union-attr]
    assert state.jobs["job-1"].status == JobStatus.RUNNING and state.jobs["job-1"].finished_at is None
    failed: JobStatusRecord = {"type": "job_status", "at": T2, "desktops": {"d-1": {"job_id": "job-1", "status": "FAILED", "fail_reason": "disk"}}}
    state = fold(state, [failed])
    assert state.desktops["d-1"].job.fail_reason == "disk" and state.desktops["d-1"].image_id == "img-old"  # type: ignore[union-attr]


def test_a_segment_already_in_the_state_is_skipped() -> None:
    """A run killed after writing its state but before removing its journal: the segment's
    base serial is older than the state, and folding it again changes nothing."""
    old: BeginRecord = {"type": "begin", "at": T0, "lineage": "lin-1", "base_serial": 3, "operation": "apply"}
    state = fold(ADOPTED, [old, intent("d-1"), submitted("d-1")])
    assert state == ADOPTED


def test_a_journal_of_another_lineage_is_refused() -> None:
    other: BeginRecord = {"type": "begin", "at": T0, "lineage": "lin-2", "base_serial": 4, "operation": "apply"}
    with pytest.raises(StateError, match="belongs to state lineage lin-2, not lin-1"):
        fold(ADOPTED, [other])


def test_a_malformed_value_is_a_state_error_naming_the_kind() -> None:
    with pytest.raises(StateError, match="malformed 'forget' record"):
        fold(ADOPTED, [{"type": "forget", "at": T1, "desktop_ids": 7}])
