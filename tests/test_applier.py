"""The applier against the in-process simulator and a real state directory: batching, busy
desktops, failures that do not stop other groups, lost answers, waiting, and the journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.apply.engine import ApplyOptions, ApplyResult
from reconciler.cloud.auth import AkSkAuth
from reconciler.cloud.client import WorkspaceClient
from reconciler.cloud.pacing import RetryPolicy
from reconciler.model import DesktopGroup, FailureBudget, Image, Location, ManifestSet, Rollout, Selector, Settings
from reconciler.planner import PlanOptions
from reconciler.session import build_plan, snapshot, state_transaction, utc_now
from reconciler.simulator import Simulator, load_fleet_data
from reconciler.state import LocalStateStore

P = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "AKAPPLIER0001", "applier-secret"


def fleet(count: int = 23, desktops: list[dict] | None = None, **behaviour: Any) -> dict[str, Any]:
    return {
        "project_id": P,
        "credentials": [{"ak": AK, "sk": SK}],
        "images": [{"id": "img-old", "type": "private"}, {"id": "img-new", "type": "private"}, {"id": "img-gold", "type": "gold"}],
        "desktops": desktops or [],
        "generate": [{"count": count, "name_prefix": "pc-", "image_id": "img-old", "tags": {"dept": "a"}}],
        "behaviour": {"seed": 5, "job_seconds": 0.2, **behaviour},
    }


def group(name: str = "a", image: str = "img-new", image_type: str = "private", tags: dict | None = None, **rollout: Any) -> DesktopGroup:
    selector = Selector(tags=tuple(sorted((tags or {"dept": name}).items())))
    return DesktopGroup(name, Image(image, image_type), Rollout(**rollout), selector=selector, source=Location(f"{name}.yaml", 1))


@dataclass
class World:
    sim: Simulator
    store: LocalStateStore
    inner: httpx.BaseTransport | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def client(self) -> WorkspaceClient:
        retry = RetryPolicy(max_attempts=3, base_delay=0.01)
        # A short lost-call horizon: a lost call's desktops are looked up a moment after it.
        return WorkspaceClient("http://127.0.0.1", P, AkSkAuth(AK, SK, project_id=P), transport=self.inner or self.sim.transport(),
                               retry=retry, timeout=0.5, lost_call_horizon=0.5)

    def apply(self, *groups: DesktopGroup, wait: bool | None = None) -> ApplyResult:
        manifests = ManifestSet(Settings(P, endpoint="http://127.0.0.1"), tuple(groups))
        with self.client() as client, state_transaction(self.store) as session:
            planned = build_plan(manifests, session.snap, client, PlanOptions(now=utc_now()), utc_now())
            session.record(planned.observed)
            options = ApplyOptions(wait=wait, poll_interval=0.05, max_concurrent_calls=3)
            return session.execute(planned.plan, client, options, self.events.append)

    def admin(self) -> httpx.Client:
        return httpx.Client(transport=self.sim.transport(), base_url="http://127.0.0.1")

    def rebuild_counts(self) -> dict[str, int]:
        with self.admin() as admin:
            return {d["id"]: d["rebuild_count"] for d in admin.get("/_simulator/desktops").json()["desktops"]}

    def jobs(self) -> list[dict[str, Any]]:
        with self.admin() as admin:
            return admin.get("/_simulator/jobs").json()["jobs"]

    def names(self) -> dict[str, str]:
        with self.admin() as admin:
            return {d["name"]: d["id"] for d in admin.get("/_simulator/desktops").json()["desktops"]}


@pytest.fixture
def world(tmp_path: Path):
    def build(**kwargs: Any) -> World:
        sim = Simulator(load_fleet_data(fleet(**kwargs)))
        return World(sim, LocalStateStore(tmp_path / "state" / "state.json"))
    return build


def events_of(world: World, kind: str) -> list[dict[str, Any]]:
    return [e for e in world.events if e["event"] == kind]


def test_batches_are_at_most_batch_size_and_every_job_is_recorded(world) -> None:
    w = world(count=23)
    result = w.apply(group(batch_size=10))
    assert result.ok and len(result.submitted) == 23
    assert sorted(len(j["desktop_ids"]) for j in w.jobs()) == [3, 10, 10]
    state = w.store.read()
    assert state.serial == 1 and set(state.jobs) == {j["id"] for j in w.jobs()}
    assert all(r.job and r.job.id for r in state.desktops.values())
    assert not w.store.journal_path.exists()


def test_busy_desktops_are_set_aside_and_the_rest_still_go(world) -> None:
    w = world(count=5, desktops=[{"id": "busy-1", "name": "busy-1", "image_id": "img-old", "tags": {"dept": "a"}, "task_status": "rebooting"}])
    result = w.apply(group(batch_size=100))
    assert result.busy == ["busy-1"] and len(result.submitted) == 5 and result.ok
    assert w.rebuild_counts()["busy-1"] == 0
    assert events_of(w, "desktops_busy")[0]["desktop_ids"] == ["busy-1"]


def test_a_failing_group_does_not_stop_the_others(world) -> None:
    w = world(count=4, desktops=[{"id": f"b{i}", "name": f"b{i}", "image_id": "img-old", "tags": {"dept": "b"}} for i in range(3)])
    # A message over 400 characters is refused with 400 (an image of the wrong type no longer
    # gets that far: the plan-time image check stops it before any call).
    result = w.apply(group("a", message="x" * 401), group("b"))
    assert not result.ok
    assert set(result.failed) == set(w.names()[f"pc-{i}"] for i in range(1, 5))
    assert sorted(result.submitted) == ["b0", "b1", "b2"]
    failed = events_of(w, "batch_failed")[0]
    assert failed["group"] == "a" and failed["status"] == 400 and "message" in failed["error"]
    assert "a" in result.halted  # max_failures: 0 by default


class DropFirstRebuild(httpx.BaseTransport):
    """The first rebuild call's connection drops: before processing (lost) or after (processed)."""

    def __init__(self, inner: httpx.BaseTransport, processed: bool) -> None:
        self.inner, self.processed, self.dropped = inner, processed, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/desktops/rebuild") and not self.dropped:
            self.dropped = True
            if self.processed:
                self.inner.handle_request(request)
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return self.inner.handle_request(request)


@pytest.mark.parametrize("processed", [True, False], ids=["processed", "never-arrived"])
def test_a_lost_answer_is_resolved_before_anything_is_resent(world, processed: bool) -> None:
    w = world(count=6)
    w.inner = DropFirstRebuild(w.sim.transport(), processed)
    result = w.apply(group(batch_size=3))
    assert result.ok, result.summary()
    assert set(w.rebuild_counts().values()) == {1}  # every desktop rebuilt exactly once
    state = w.store.read()
    assert {r.job.id for r in state.desktops.values()} == {j["id"] for j in w.jobs()}  # type: ignore[union-attr]
    assert len(events_of(w, "batch_unknown")) == 1


def test_wait_records_failures_with_their_reason_and_the_next_plan_retries(world) -> None:
    w = world(count=3, desktops=[{"id": "bad-1", "name": "bad-1", "image_id": "img-old", "tags": {"dept": "a"}, "fail_rebuilds": True}])
    result = w.apply(group(max_failures=FailureBudget(5)), wait=True)
    assert not result.ok and list(result.failed) == ["bad-1"] and len(result.succeeded) == 3
    record = w.store.read().desktops["bad-1"]
    assert record.job is not None and record.job.status == "FAILED" and record.job.fail_reason
    assert record.image_id is None or record.image_id != "img-new"
    finished = events_of(w, "job_finished")
    assert finished and finished[0]["failed"] == 1
    with w.client() as client:
        snap = snapshot(w.store)
        manifests = ManifestSet(Settings(P, endpoint="http://127.0.0.1"), (group(),))
        again = build_plan(manifests, snap, client, PlanOptions(now=utc_now()), utc_now()).plan
    assert [(c.desktop_id, c.reason.value) for c in again.changes] == [("bad-1", "retry_failed")]


def test_a_crash_between_call_and_record_loses_no_job_id(world) -> None:
    """The journal holds an intent whose outcome was never written (the run died mid-call);
    the next apply finds the job the call created and does not send it again."""
    w = world(count=2)
    ids = sorted(w.names().values())
    with w.client() as client:
        from reconciler.cloud.models import RebuildRequest

        job_id = client.rebuild_desktops(RebuildRequest(tuple(ids), "img-new", "private"))
    w.store.append({"type": "begin", "at": "2026-11-27T00:00:00+00:00", "lineage": "l-1", "base_serial": 0, "operation": "apply"})
    w.store.append({"type": "intent", "at": "2020-01-01T00:00:00+00:00", "batch_id": "b1", "group": "a", "desktop_ids": ids, "image_id": "img-new"})
    w.store.close()
    assert {r.job.status for r in snapshot(w.store).state.desktops.values()} == {"UNKNOWN"}  # type: ignore[union-attr]
    result = w.apply(group())
    state = w.store.read()
    assert {r.job.id for r in state.desktops.values()} == {job_id}  # type: ignore[union-attr]
    assert job_id in state.jobs and set(w.rebuild_counts().values()) == {1}
    assert not result.submitted and not w.store.journal_path.exists()


def test_canary_failure_stops_the_group_and_other_groups_carry_on(world) -> None:
    desktops = [{"id": "0-canary", "name": "aaa-canary", "image_id": "img-old", "tags": {"dept": "a"}, "fail_rebuilds": True}]
    desktops += [{"id": f"b{i}", "name": f"b{i}", "image_id": "img-old", "tags": {"dept": "b"}} for i in range(2)]
    w = world(count=6, desktops=desktops)
    result = w.apply(group("a", canary=1), group("b"))
    assert "canary failed" in result.halted["a"]
    counts = w.rebuild_counts()
    assert counts["0-canary"] == 1 and sum(counts[w.names()[f"pc-{i}"]] for i in range(1, 7)) == 0
    assert counts["b0"] == counts["b1"] == 1
    assert events_of(w, "group_halted")[0]["not_started"] == 6


def test_max_in_flight_is_never_exceeded(world) -> None:
    w = world(count=12)
    result = w.apply(group(batch_size=5, max_in_flight=4))
    assert result.ok and len(result.submitted) == 12
    spans = [(s["accepted_at"], s["finished_at"]) for j in w.jobs() for s in j["sub_jobs"]]
    for accepted, _ in spans:
        running = sum(1 for a, f in spans if a <= accepted and (f is None or f > accepted))
        assert running <= 4


class FailingSubJobReads(httpx.BaseTransport):
    """Answers the first ``count`` sub-job reads with HTTP 500, then lets them through."""

    def __init__(self, inner: httpx.BaseTransport, count: int) -> None:
        self.inner, self.count = inner, count

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/workspace-sub-jobs") and self.count > 0:
            self.count -= 1
            return httpx.Response(500, json={"error_code": "WKS.00010500", "error_msg": "busy backend"})
        return self.inner.handle_request(request)


def test_a_failed_look_at_the_jobs_is_tried_again_at_the_next_poll(world) -> None:
    w = world(count=4)
    w.inner = FailingSubJobReads(w.sim.transport(), count=4)  # one whole poll (3 attempts), then one more
    result = w.apply(group(), wait=True)
    assert result.ok and len(result.succeeded) == 4
    failed_polls = events_of(w, "poll_failed")
    assert len(failed_polls) == 1 and "busy backend" in failed_polls[0]["error"]


class ProcessedThen500(httpx.BaseTransport):
    """The service creates the job, then answers the rebuild call with HTTP 500."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.done = inner, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/desktops/rebuild") and not self.done:
            self.done = True
            self.inner.handle_request(request)
            return httpx.Response(500, json={"error_code": "WKS.00010500", "error_msg": "internal error"})
        return self.inner.handle_request(request)


def test_a_server_error_after_the_job_was_created_keeps_its_job_id(world) -> None:
    w = world(count=3)
    w.inner = ProcessedThen500(w.sim.transport())
    result = w.apply(group(batch_size=10))
    assert result.ok and not result.busy
    (job,) = w.jobs()
    state = w.store.read()
    assert set(state.jobs) == {job["id"]}
    assert {r.job.id for r in state.desktops.values()} == {job["id"]}  # type: ignore[union-attr]
    assert set(w.rebuild_counts().values()) == {1}


def test_a_busy_desktop_is_set_aside_even_when_max_in_flight_splits_batches(world) -> None:
    busy = [{"id": "zz-busy", "name": "zz-busy", "image_id": "img-old", "tags": {"dept": "a"}, "task_status": "rebooting"}]
    w = world(count=7, desktops=busy)
    result = w.apply(group(batch_size=10, max_in_flight=2))
    assert result.ok and result.busy == ["zz-busy"] and len(result.submitted) == 7
    assert not events_of(w, "batch_failed") and not result.halted


def _plan_then_apply_at(w: World, group_: DesktopGroup, planned_at, applied_at) -> ApplyResult:
    manifests = ManifestSet(Settings(P, endpoint="http://127.0.0.1"), (group_,))
    with w.client() as client, state_transaction(w.store, now=lambda: applied_at) as session:
        planned = build_plan(manifests, session.snap, client, PlanOptions(now=planned_at), planned_at)
        return session.execute(planned.plan, client, ApplyOptions(poll_interval=0.05), w.events.append)


def test_a_plan_applied_after_its_window_closed_rebuilds_nothing(world) -> None:
    from datetime import datetime, time

    from reconciler.model import Window

    w = world(count=3)
    windowed = group(window=Window(time(22, 0), time(23, 0), "UTC"))
    inside = datetime(2026, 11, 27, 22, 30, tzinfo=UTC)
    after = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    result = _plan_then_apply_at(w, windowed, inside, after)
    assert result.ok and not result.submitted and len(result.deferred) == 3
    assert set(w.rebuild_counts().values()) == {0}
    assert events_of(w, "group_deferred")[0]["reason"].startswith("outside_window: window daily 22:00-23:00 UTC opens")


def test_a_user_who_connected_since_the_plan_is_not_disturbed(world) -> None:
    from datetime import datetime

    w = world(count=3)
    now = datetime.now(UTC)
    victim = sorted(w.names().values())[0]
    manifests = ManifestSet(Settings(P, endpoint="http://127.0.0.1"), (group(skip_connected=True),))
    with w.client() as client, state_transaction(w.store) as session:
        planned = build_plan(manifests, session.snap, client, PlanOptions(now=now), now)
        with w.admin() as admin:
            admin.patch(f"/_simulator/desktops/{victim}", json={"login_status": "CONNECTED"})
        result = session.execute(planned.plan, client, ApplyOptions(poll_interval=0.05), w.events.append)
    assert result.ok and result.deferred == [victim] and len(result.submitted) == 2
    assert w.rebuild_counts()[victim] == 0


def test_a_busy_desktop_never_recorded_stays_unrecorded(world) -> None:
    busy = [{"id": "busy-1", "name": "busy-1", "image_id": "img-old", "tags": {"dept": "a"}, "task_status": "rebooting"}]
    w = world(count=2, desktops=busy)
    result = w.apply(group())
    assert result.busy == ["busy-1"] and "busy-1" not in w.store.read().desktops
    with w.admin() as admin:
        admin.patch("/_simulator/desktops/busy-1", json={"task_status": ""})
    with w.client() as client:
        manifests = ManifestSet(Settings(P, endpoint="http://127.0.0.1"), (group(),))
        again = build_plan(manifests, snapshot(w.store), client, PlanOptions(now=utc_now()), utc_now()).plan
    assert [(c.desktop_id, c.reason.value) for c in again.changes if c.action.value == "rebuild"] == [("busy-1", "not_recorded")]
