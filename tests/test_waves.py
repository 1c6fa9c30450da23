"""``GroupRun``, one group's rollout during an apply, driven by hand as the applier drives it:
the canary wave and its gate, requeues that wait for it, halts, the failure budget, the
in-flight cap, deferral, lost calls settled and the events it reports. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler.apply.lost_calls import MAX_LOOKS, LostCalls
from reconciler.model import Action, Change, DesktopGroup, FailureBudget, Image, Location, Reason, Rollout, Selector
from reconciler.rollout import CANARY_WAVE, MAIN_WAVE
from reconciler.rollout.apply_waves import GroupRun, Phase, RebuildBatch, make_batches


def group(**rollout: Any) -> DesktopGroup:
    return DesktopGroup("g", Image("img-new", "private"), Rollout(**rollout), selector=Selector(tags=(("dept", "g"),)),
                        source=Location("g.yaml", 1))


def rollout_of(count: int, canaries: int = 0, limit: int = 0, in_flight: dict[str, str | None] | None = None, **rollout: Any) -> GroupRun:
    g = group(**rollout)
    changes = [Change(f"d{i:02}", Action.REBUILD, Reason.IMAGE_CHANGED, "g", f"pc-{i}", "img-old", "img-new",
                      wave=CANARY_WAVE if i < canaries else MAIN_WAVE) for i in range(count)]
    return GroupRun(g, make_batches(g, changes, CANARY_WAVE), make_batches(g, changes, MAIN_WAVE),
                    in_flight=dict(in_flight or {}), failure_limit=limit)


def send(run: GroupRun, slots: int = 10, job: str | None = "job") -> list[RebuildBatch]:
    """Take what the group releases and report every call accepted (job None: outcome unknown)."""
    batches = run.take(slots)
    for batch in batches:
        run.call_returned(batch)
        run.submitted(batch, job and f"{job}-{batch.id}")
    return batches


def kinds(run: GroupRun) -> list[str]:
    return [e["event"] for e in run.drain_events()]


def test_the_main_wave_waits_for_a_canary_to_succeed() -> None:
    run = rollout_of(10, canaries=2, batch_size=4)
    assert kinds(run) == ["wave_started"]
    (canary,) = send(run)
    assert canary.wave == CANARY_WAVE and run.phase is Phase.CANARY_WAIT and run.blocked_on_jobs
    assert run.take(10) == []
    assert run.finished_rebuilds({"d00": "SUCCESS"}) == [] and run.take(10) == []  # d01 still running
    run.finished_rebuilds({"d01": "SUCCESS"})
    main = send(run)
    assert [len(b.desktop_ids) for b in main] == [4, 4] and {b.wave for b in main} == {MAIN_WAVE}
    assert run.drain_events() == [{"event": "wave_started", "group": "g", "wave": "main", "desktops": 8}]
    assert run.progress() == (2, 10) and run.own_rebuilds_running()


def test_a_failed_canary_halts_the_group_before_the_main_wave() -> None:
    run = rollout_of(6, canaries=1)
    send(run)
    assert run.finished_rebuilds({"d00": "FAILED"}) == ["d00"]
    assert run.phase is Phase.HALTED and run.take(10) == []
    halted = run.drain_events()[-1]
    assert halted["event"] == "group_halted" and halted["not_started"] == 5 and "canary failed (d00)" in halted["reason"]


def test_a_canary_wave_that_rebuilt_nothing_halts() -> None:
    run = rollout_of(4, canaries=2)
    (canary,) = run.take(10)
    run.call_returned(canary)  # every canary deferred at the last moment: nothing sent
    run.advance()
    assert run.phase is Phase.HALTED and "no canary desktop could be rebuilt" in run.drain_events()[-1]["reason"]


def test_a_main_batch_sent_back_before_the_canaries_passed_waits_for_them() -> None:
    run = rollout_of(6, canaries=2)
    (canary,) = run.take(10)
    main_batch = run.main[0].narrowed(["d03"], retry=True)
    run.requeue(main_batch)  # e.g. the rest of a refused batch
    assert run.main[0] is main_batch and list(run.queue) == []
    run.call_returned(canary)
    run.submitted(canary, "job-c")
    run.finished_rebuilds({"d00": "SUCCESS", "d01": "SUCCESS"})
    assert run.take(10)[0] is main_batch


def test_failures_beyond_the_budget_halt_the_group() -> None:
    run = rollout_of(9, limit=2, batch_size=3, max_failures=FailureBudget(count=2))
    first, second, third = send(run)
    run.failed(first.desktop_ids[:2], "refused")
    assert run.phase is not Phase.HALTED
    run.failed(second.desktop_ids[:1], "refused")
    assert run.phase is Phase.HALTED and "3 failed desktops exceed max_failures 2" in run.drain_events()[-1]["reason"]


def test_max_in_flight_narrows_batches_and_counts_earlier_runs_rebuilds() -> None:
    run = rollout_of(10, batch_size=10, max_in_flight=4, in_flight={"old-1": "job-old"})
    (batch,) = run.take(10)
    assert len(batch.desktop_ids) == 3 and len(run.queue[0].desktop_ids) == 7  # 4 minus the earlier run's one
    run.call_returned(batch)
    run.submitted(batch, "job-1")
    assert run.take(10) == [] and run.blocked_on_jobs
    run.finished_rebuilds({"old-1": "SUCCESS", batch.desktop_ids[0]: "SUCCESS"})
    assert [len(b.desktop_ids) for b in run.take(10)] == [2]
    assert run.job_ids() == {"job-1"}


def test_a_deferred_group_sends_nothing_more_and_names_what_it_left() -> None:
    run = rollout_of(7, batch_size=3)
    send(run, slots=1)
    assert run.defer("outside_window: closed at 06:00") == ["d03", "d04", "d05", "d06"]
    assert run.take(10) == [] and run.defer("again") == []
    deferred = run.drain_events()[-1]
    assert deferred["event"] == "group_deferred" and deferred["desktop_ids"] == ["d03", "d04", "d05", "d06"]


def test_settled_lost_calls_are_tied_to_their_jobs_or_sent_again_in_their_wave() -> None:
    run = rollout_of(6, canaries=2, batch_size=10, in_flight={"other": None})
    (canary,) = send(run, job=None)
    assert sorted(run.lost()) == ["d00", "d01", "other"] and run.unknown_outcomes() == ["d00", "d01"]
    tied = run.settle_lost({"d00": "job-found", "d01": None, "d05": None})  # d05 was not lost here
    assert tied == {"d00": "job-found"} and run.in_flight["d00"] == "job-found" and "d01" not in run.in_flight
    (again,) = run.take(10)
    assert again.desktop_ids == ("d01",) and again.wave == CANARY_WAVE and again.attempt == 2
    assert run.unknown_outcomes() == [] and "d05" not in run.in_flight


@given(count=st.integers(1, 400), batch_size=st.integers(1, 100))
def test_resent_desktops_go_out_in_calls_of_batch_size_each_once(count: int, batch_size: int) -> None:
    run = rollout_of(count, batch_size=batch_size)
    lost = send(run, slots=10_000, job=None)
    run.settle_lost(dict.fromkeys(run.lost()))
    again = run.take(10_000)
    assert all(len(b.desktop_ids) <= batch_size for b in again)
    assert sorted(i for b in again for i in b.desktop_ids) == sorted(i for b in lost for i in b.desktop_ids)


def test_lost_desktops_are_looked_up_only_after_the_horizon_and_a_few_times() -> None:
    lost = LostCalls(horizon_seconds=120)
    returned = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    lost.add(["d1"], returned)
    lost.add_journaled(["d2"], "2027-01-15T07:59:00+00:00")  # an earlier run's: from its intent + 1 s
    assert lost.ripe(returned + timedelta(seconds=60)) == []
    assert lost.ripe(returned + timedelta(seconds=61)) == ["d2"] and lost.waiting("d1")
    assert lost.ripe(returned + timedelta(seconds=120)) == ["d1", "d2"]
    for _ in range(MAX_LOOKS):
        lost.looked(["d1"])
    assert not lost.waiting("d1") and lost.ripe(returned + timedelta(hours=1)) == ["d2"]
    lost.settled("d2")
    assert not lost.waiting("d2") and lost.ripe(returned + timedelta(hours=1)) == []
