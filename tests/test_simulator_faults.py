"""Rate limiting (429 + Retry-After) and injected faults: latency, errors, throttling, drops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reconciler.simulator import Simulator, load_fleet_data

P = "proj1"
LIST = f"/v2/{P}/desktops/detail"
REBUILD = f"/v2/{P}/desktops/rebuild"
BODY = {"desktop_ids": ["d1"], "image_type": "gold", "image_id": "img-2"}


def make_sim(clock: Any, **behaviour: Any) -> Simulator:
    data = {
        "project_id": P,
        "credentials": [{"ak": "AK1", "sk": "SK1"}],
        "images": [{"id": "img-1", "type": "gold"}, {"id": "img-2", "type": "gold"}],
        "desktops": [{"id": "d1", "name": "pc1", "image_id": "img-1"}],
        "behaviour": behaviour,
    }
    return Simulator(load_fleet_data(data), clock=clock, sleep=clock.sleep)


def test_rate_limit_answers_429_with_retry_after(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    client = sim_client(make_sim(fake_clock, rate_limit_per_minute=30, rate_limit_burst=3))
    assert [client.get(LIST).status_code for _ in range(3)] == [200, 200, 200]
    throttled = client.get(LIST)
    assert throttled.status_code == 429 and throttled.json()["error_code"] == "APIG.0308"
    assert throttled.headers["Retry-After"] == "2"  # one token every 2 s at 30/min
    fake_clock.advance(1.5)
    assert client.get(LIST).headers["Retry-After"] == "1"
    fake_clock.advance(0.5)
    assert client.get(LIST).status_code == 200
    assert client.get(LIST).status_code == 429


def test_burst_defaults_to_the_per_minute_rate(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    client = sim_client(make_sim(fake_clock, rate_limit_per_minute=5))
    assert [client.get(LIST).status_code for _ in range(6)] == [200] * 5 + [429]
    assert client.get(LIST).headers["Retry-After"] == "12"


def test_rate_limit_ignores_admin_and_iam_calls(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    client = sim_client(make_sim(fake_clock, rate_limit_per_minute=1, rate_limit_burst=1))
    for _ in range(5):
        assert client.get("/_simulator/desktops").status_code == 200
        assert client.post("/v3/auth/tokens", json={}).status_code == 400
    assert client.get(LIST).status_code == 200
    assert client.get(LIST).status_code == 429


def test_unauthenticated_calls_do_not_spend_tokens(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    sim = make_sim(fake_clock, rate_limit_per_minute=1, rate_limit_burst=1, auth_lockout_failures=0)
    bad = sim_client(sim, sign_with=("AK1", "wrong"))
    for _ in range(3):
        assert bad.get(LIST).status_code == 401
    assert sim_client(sim).get(LIST).status_code == 200


def test_error_rate_fails_before_processing(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    client = sim_client(make_sim(fake_clock, error_rate=1))
    response = client.post(REBUILD, json=BODY)
    assert (response.status_code, response.json()["error_code"]) == (500, "WKS.00010500")
    assert client.get("/_simulator/desktops/d1").json()["rebuild_count"] == 0


def test_throttle_rate_answers_429(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    response = sim_client(make_sim(fake_clock, throttle_rate=1)).get(LIST)
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"


def test_drop_before_does_not_process(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    client = sim_client(make_sim(fake_clock, drop_before_rate=1))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(REBUILD, json=BODY)
    assert client.get("/_simulator/desktops/d1").json()["rebuild_count"] == 0
    assert client.get("/_simulator/jobs").json()["jobs"] == []


def test_drop_after_processes_then_drops(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    client = sim_client(make_sim(fake_clock, drop_after_rate=1))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(REBUILD, json=BODY)
    desktop = client.get("/_simulator/desktops/d1").json()
    assert desktop["rebuild_count"] == 1 and desktop["task_status"] == "rebuilding"
    assert len(client.get("/_simulator/jobs").json()["jobs"]) == 1


def test_latency_sleeps_before_processing(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    client = sim_client(make_sim(fake_clock, latency_seconds=2.5, job_seconds=10))
    start = fake_clock()
    client.post(REBUILD, json=BODY)
    assert fake_clock.slept == [2.5]
    (job,) = client.get("/_simulator/jobs").json()["jobs"]
    assert job["accepted_at"] == start + 2.5  # processed after the delay, on the advanced clock


def test_fault_draws_follow_the_seed(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    def outcomes(seed: int) -> list[int]:
        client = sim_client(make_sim(fake_clock, seed=seed, error_rate=0.3, throttle_rate=0.3))
        return [client.get(LIST).status_code for _ in range(40)]

    first = outcomes(1)
    assert first == outcomes(1)
    assert first != outcomes(2)
    assert {200, 429, 500} <= set(first)


def test_faults_can_be_switched_at_run_time(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    client = sim_client(make_sim(fake_clock))
    assert client.get(LIST).status_code == 200
    assert client.put("/_simulator/faults", json={"error_rate": 1}).status_code == 200
    assert client.get(LIST).status_code == 500
    client.put("/_simulator/faults", json={"error_rate": 0, "rate_limit_per_minute": 60, "rate_limit_burst": 1})
    assert [client.get(LIST).status_code for _ in range(2)] == [200, 429]
    client.put("/_simulator/faults", json={"rate_limit_per_minute": None})
    assert client.get(LIST).status_code == 200
