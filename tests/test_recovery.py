"""Regression tests for what the crash and fault harnesses (and their review) found: each one
rebuilds the exact situation a killed or faulted run leaves, with the in-process simulator and
a real state directory, and checks that nothing is lost, done twice, or left unreadable."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.apply.engine import ApplyOptions, ApplyResult
from reconciler.cloud import errors
from reconciler.cloud.auth import AkSkAuth
from reconciler.cloud.client import WorkspaceClient
from reconciler.cloud.models import RebuildRequest
from reconciler.cloud.pacing import RetryPolicy
from reconciler.model import DesktopGroup, Image, Location, ManifestSet, Rollout, Selector, Settings
from reconciler.plan import Plan
from reconciler.planner import PlanOptions
from reconciler.session import build_plan, snapshot, state_transaction, utc_now
from reconciler.simulator import Simulator, load_fleet_data
from reconciler.state import LocalStateStore, StateLocked

P = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "AKRECOVERY0001", "recovery-secret"
LONG_AGO = "2020-01-01T00:00:00+00:00"


def group(**rollout: Any) -> DesktopGroup:
    return DesktopGroup("a", Image("img-new", "private"), Rollout(**rollout), selector=Selector(tags=(("dept", "a"),)),
                        source=Location("a.yaml", 1))


@dataclass
class World:
    sim: Simulator
    store: LocalStateStore
    transport: httpx.BaseTransport | None = None

    @classmethod
    def build(cls, tmp_path: Path, count: int, **behaviour: Any) -> World:
        fleet = {"project_id": P, "credentials": [{"ak": AK, "sk": SK}],
                 "images": [{"id": "img-old", "type": "private"}, {"id": "img-new", "type": "private"}],
                 "generate": [{"count": count, "name_prefix": "pc-", "image_id": "img-old", "tags": {"dept": "a"}}],
                 "behaviour": {"seed": 11, "job_seconds": 0.1, **behaviour}}
        return cls(Simulator(load_fleet_data(fleet)), LocalStateStore(tmp_path / "state" / "state.json"))

    def client(self, timeout: float = 30.0, horizon: float = 0.5) -> WorkspaceClient:
        """A client whose lost calls are looked up ``horizon`` seconds after they were lost."""
        return WorkspaceClient("http://127.0.0.1", P, AkSkAuth(AK, SK, project_id=P), transport=self.transport or self.sim.transport(),
                               timeout=timeout, lost_call_horizon=horizon, retry=RetryPolicy(max_attempts=3, base_delay=0.01))

    def manifests(self, *groups: DesktopGroup) -> ManifestSet:
        return ManifestSet(Settings(P, endpoint="http://127.0.0.1"), groups)

    def apply(self, *groups: DesktopGroup, timeout: float = 30.0, horizon: float = 0.5) -> ApplyResult:
        with self.client(timeout, horizon) as client, state_transaction(self.store) as session:
            planned = build_plan(self.manifests(*groups), session.snap, client, PlanOptions(now=utc_now()), utc_now())
            session.record(planned.observed)
            return session.execute(planned.plan, client, ApplyOptions(wait=True, poll_interval=0.05, max_concurrent_calls=2), lambda e: None)

    def plan(self, *groups: DesktopGroup) -> Plan:
        with self.client() as client:
            return build_plan(self.manifests(*groups), snapshot(self.store), client, PlanOptions(now=utc_now()), utc_now()).plan

    def admin(self, what: str) -> list[dict[str, Any]]:
        with httpx.Client(transport=self.sim.transport(), base_url="http://127.0.0.1") as admin:
            items: list[dict[str, Any]] = admin.get(f"/_simulator/{what}").json()[what]
            return items

    def ids(self) -> list[str]:
        return sorted(d["id"] for d in self.admin("desktops"))

    def rebuild_counts(self) -> dict[str, int]:
        return {d["id"]: d["rebuild_count"] for d in self.admin("desktops")}

    def dead_run(self, ids: list[str], at: str = LONG_AGO, lineage: str = "lineage-of-the-dead-run") -> RebuildRequest:
        """The journal a run leaves when it is killed after journaling a rebuild intent."""
        self.store.append({"type": "begin", "at": at, "lineage": lineage, "base_serial": 0, "operation": "apply"})
        self.store.append({"type": "intent", "at": at, "batch_id": "b-dead", "group": "a", "desktop_ids": ids, "image_id": "img-new"})
        self.store.close()
        return RebuildRequest(tuple(ids), "img-new", "private")


def test_a_lost_call_found_finished_confirms_the_image_and_keeps_its_job(tmp_path: Path) -> None:
    """Found by the crash harness (kills with a call on the wire): the dead run's call was
    processed and its job finished before the next run looked. The resolution must count as an observed SUCCESS; it used to leave the image
    unconfirmed, so the plan adopted the desktops and dropped the job from their records."""
    w = World.build(tmp_path, count=3, job_seconds=0.05)
    ids = w.ids()
    request = w.dead_run(ids)
    with w.client() as client:
        job_id = client.rebuild_desktops(request)
    time.sleep(0.2)  # the job finishes before anyone looks
    assert w.apply(group()).ok
    state = w.store.read()
    for desktop_id in ids:
        record = state.desktops[desktop_id]
        assert record.job is not None and (record.job.id, record.job.status, record.image_id) == (job_id, "SUCCESS", "img-new")
    assert state.jobs[job_id].status == "SUCCESS" and state.jobs[job_id].desktop_ids == tuple(ids)
    assert not w.plan(group()).changes and set(w.rebuild_counts().values()) == {1}


def test_the_first_state_keeps_the_lineage_of_the_journal_it_folds(tmp_path: Path) -> None:
    """Found by the crash harness (a kill after the state's rename): the first apply on a new
    state is killed; the next one writes the state and is killed before it removes the journal. The journal then held segments of two
    lineages, and every later run failed with 'the journal belongs to state lineage …'."""
    w = World.build(tmp_path, count=3)
    w.dead_run(w.ids())
    with w.client() as client, state_transaction(w.store) as session:
        planned = build_plan(w.manifests(group()), session.snap, client, PlanOptions(now=utc_now()), utc_now())
        session.record(planned.observed)
        session.execute(planned.plan, client, ApplyOptions(wait=True, poll_interval=0.05), lambda e: None)
        left_behind = w.store.journal_path.read_bytes()  # what a kill after the state's rename leaves
    w.store.journal_path.write_bytes(left_behind)
    written = w.store.read()
    assert written.lineage == "lineage-of-the-dead-run"
    assert snapshot(w.store).state.desktops == written.desktops  # folds, and adds nothing twice
    assert w.apply(group()).ok and not w.store.journal_path.exists()
    assert set(w.rebuild_counts().values()) == {1}


class DropFirstRebuildUnsent(httpx.BaseTransport):
    """The first rebuild call's connection drops before the service reads it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.dropped = inner, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/desktops/rebuild") and not self.dropped:
            self.dropped = True
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return self.inner.handle_request(request)


def test_a_lost_canary_call_that_never_arrived_goes_out_again_before_the_main_wave(tmp_path: Path) -> None:
    """Found reviewing the resend path the soak exercises: the canary call's connection drops
    before the service sees it. Its desktops were queued again as main wave while the group waited
    for canaries, the main wave then replaced the queue, and apply exited 0 having rebuilt
    nothing."""
    w = World.build(tmp_path, count=8)
    w.transport = DropFirstRebuildUnsent(w.sim.transport())
    result = w.apply(group(batch_size=3, canary=2))
    assert result.ok, result.summary()
    assert set(w.rebuild_counts().values()) == {1}
    first, *rest = w.admin("jobs")
    assert len(first["desktop_ids"]) == 2 and all(len(j["desktop_ids"]) <= 3 for j in rest)
    assert not w.plan(group()).changes
    names = {r.name for r in w.store.read().desktops.values()}
    assert None not in names  # resent desktops keep their names in the state


class LoseAnswersAroundALookup(httpx.BaseTransport):
    """The first rebuild call never reaches the service. The second is processed, but its
    answer is held until the applier has looked the lost calls up (and found this one's job),
    and then lost as well."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.rebuilds, self.lock = inner, 0, threading.Lock()
        self.processed, self.looked_up = threading.Event(), threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/workspace-sub-jobs") and "job_type" in request.url.params:
            self.processed.wait(10)
            response = self.inner.handle_request(request)
            self.looked_up.set()
            return response
        if request.url.path.endswith("/desktops/rebuild"):
            with self.lock:
                self.rebuilds += 1
                number = self.rebuilds
            if number == 1:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            if number == 2:
                self.inner.handle_request(request)
                self.processed.set()
                self.looked_up.wait(10)
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return self.inner.handle_request(request)


def test_a_lost_answer_whose_job_a_lookup_already_found_is_followed_not_waited_for(tmp_path: Path) -> None:
    """Found by the 10,000-desktop fault soak, which hung: a lookup of lost calls ran while
    another call was on the wire and recorded that call's job; then that call's own answer was
    lost. The applier waited for a resolution of those desktops that no lookup would ever give,
    polling forever."""
    w = World.build(tmp_path, count=4)
    w.transport = LoseAnswersAroundALookup(w.sim.transport())
    outcome: list[ApplyResult] = []
    apply = threading.Thread(target=lambda: outcome.append(w.apply(group(batch_size=2))), daemon=True)
    apply.start()
    apply.join(timeout=20)
    assert outcome, "apply --wait never returned"
    assert outcome[0].ok, outcome[0].summary()
    assert set(w.rebuild_counts().values()) == {1}
    state = w.store.read()
    assert {r.job.id for r in state.desktops.values() if r.job} == {j["id"] for j in w.admin("jobs")} == set(state.jobs)


def test_a_call_still_on_its_way_when_the_next_run_starts_is_not_sent_twice(tmp_path: Path) -> None:
    """The corner no lookup can settle at once: the dead run's request reaches the service
    only after the next run started. That run waits until the lost call is as old as the
    lost-call horizon before looking, so it finds the job instead of sending a second one."""
    w = World.build(tmp_path, count=2, job_seconds=0.05)
    ids = w.ids()
    request = w.dead_run(ids, at=datetime.now(UTC).isoformat(timespec="seconds"))
    landed: list[str] = []

    def arrive() -> None:
        with w.client() as client:
            try:
                landed.append(client.rebuild_desktops(request))
            except errors.Busy:
                landed.append("refused: busy")

    late = threading.Timer(0.7, arrive)
    late.start()
    result = w.apply(group(), timeout=1.0, horizon=1.0)
    late.join()
    assert result.ok and not result.submitted  # nothing was sent again
    assert set(w.rebuild_counts().values()) == {1}
    assert {r.job.id for r in w.store.read().desktops.values() if r.job} == set(landed)


def test_a_torn_journal_tail_is_cut_before_the_next_record(tmp_path: Path) -> None:
    """Found reviewing the journal: a SIGKILL can cut a multi-page write() short, leaving half
    a record. The next run appended right after it, gluing its first record to the torn one:
    that record was lost, and with one more record the journal became unreadable for good."""
    store = LocalStateStore(tmp_path / "state.json")
    store.append({"type": "begin", "n": 1})
    store.close()
    with open(store.journal_path, "ab") as handle:
        handle.write(b'{"type":"intent","desktop_ids":["d-1","d-')  # the dead run's last, torn write
    next_run = LocalStateStore(tmp_path / "state.json")
    next_run.append({"type": "begin", "n": 2})
    next_run.append({"type": "end", "n": 3})
    assert [r["n"] for r in LocalStateStore(tmp_path / "state.json").replay()] == [1, 2, 3]


def test_temp_files_of_a_killed_state_write_are_removed_by_the_next_lock_holder(tmp_path: Path) -> None:
    """Found by the crash harness (kills during the final write): a run killed between creating
    its temp state and the rename left a full copy of the state behind, one more per crash."""
    store = LocalStateStore(tmp_path / "state.json")
    holder = store.lock("apply")
    writing = tmp_path / "state.json.k3x9.tmp"  # the holder is writing right now
    writing.write_text("{}")
    with pytest.raises(StateLocked):
        LocalStateStore(tmp_path / "state.json").lock("apply")
    assert writing.exists()  # nobody but the lock holder may touch it
    store.unlock(holder.id)  # ...and the holder dies before its rename
    LocalStateStore(tmp_path / "state.json").lock("apply")
    assert not writing.exists()
