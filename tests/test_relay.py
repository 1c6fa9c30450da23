"""The fault relay of the harnesses (``tests/harness/relay.py``), in front of a served simulator:
each mode gives the client the answer it promises, and the simulator the call it promises (or
none). The harnesses and ``test_lost_calls.py`` rely on these."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.relay import Fault, FaultRelay
from harness.world import AK, NEW_IMAGE, PROJECT, SK, GroupSpec, ServedSimulator, fleet_document

from reconciler.cloud import errors
from reconciler.cloud.auth import AkSkAuth
from reconciler.cloud.client import WorkspaceClient
from reconciler.cloud.models import RebuildRequest
from reconciler.cloud.pacing import RetryPolicy


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSimulator]:
    served = ServedSimulator(fleet_document(1, [GroupSpec("a", 40)], job_seconds=0.05), tmp_path_factory.mktemp("sim"))
    yield served
    served.stop()


def client(url: str) -> WorkspaceClient:
    return WorkspaceClient(url, PROJECT, AkSkAuth(AK, SK, project_id=PROJECT), timeout=0.5, lost_call_horizon=0.5,
                           retry=RetryPolicy(max_attempts=2, base_delay=0.01))


def fresh(sim: ServedSimulator) -> str:
    """A desktop no test has rebuilt yet (the module shares one simulator)."""
    rebuilt = {d for job in sim.jobs() for d in job["desktop_ids"]}
    return next(i for i, d in sorted(sim.desktops().items()) if d["tags"].get("dept") == "a" and i not in rebuilt)


def rebuild_through(sim: ServedSimulator, fault: Fault | None) -> tuple[str | Exception, list[str]]:
    """One rebuild call through a relay that faults it; what the client got, and the desktop's
    jobs once every late delivery has landed."""
    desktop = fresh(sim)
    relay = FaultRelay(sim.url, [fault] if fault else [], every=1, late_seconds=(0.2, 0.2), hang_seconds=(0.1, 0.1))
    outcome: str | Exception
    try:
        with client(relay.url) as c:
            try:
                outcome = c.rebuild_desktops(RebuildRequest((desktop,), NEW_IMAGE, "private"))
            except errors.WorkspaceError as exc:
                outcome = exc
    finally:
        relay.close()
    assert relay.injected == ({fault: 1} if fault else {})
    return outcome, [j["id"] for j in sim.jobs() if desktop in j["desktop_ids"]]


def test_without_a_fault_the_relay_is_transparent(sim: ServedSimulator) -> None:
    outcome, jobs = rebuild_through(sim, None)
    assert jobs == [outcome]
    relay = FaultRelay(sim.url)
    try:
        with client(relay.url) as c:  # signed reads with queries pass too
            assert len(list(c.iter_desktops(tag={"dept": "a"}, page_size=7))) == 40
    finally:
        relay.close()


@pytest.mark.parametrize(
    "fault, processed",
    [(Fault.LATE_504, True), (Fault.GARBLED_200, True), (Fault.NO_JOB_ID_200, True), (Fault.HANG, True),
     (Fault.DROP_BEFORE, False), (Fault.DROP_AFTER, True)],
)
def test_each_fault_is_an_unknown_outcome_and_reaches_the_simulator_as_promised(sim: ServedSimulator, fault: Fault, processed: bool) -> None:
    outcome, jobs = rebuild_through(sim, fault)
    assert isinstance(outcome, errors.UnknownOutcome), outcome
    assert len(jobs) == (1 if processed else 0)
    if fault is Fault.LATE_504:
        assert outcome.status == 504


def test_faults_are_dealt_round_robin_from_a_mode_the_seed_picks(sim: ServedSimulator) -> None:
    relay = FaultRelay(sim.url, [Fault.DROP_BEFORE, Fault.GARBLED_200], every=2, seed=3)
    try:
        picks = [relay.pick("POST", "/v2/p/desktops/rebuild")[0] for _ in range(8)]
        assert relay.pick("GET", "/v2/p/desktops/detail?limit=1") == (None, 0.0)
    finally:
        relay.close()
    assert picks == [None, Fault.GARBLED_200, None, Fault.DROP_BEFORE] * 2
