"""to_dict / from_dict: the fake cloud survives a save and restore, progress and randomness included."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reconciler.simulator import Simulator, load_fleet_data

P = "proj1"
FLEET = {
    "project_id": P,
    "credentials": [{"ak": "AK1", "sk": "SK1"}],
    "users": [{"name": "ops", "password": "pw", "domain": "acme"}],
    "images": [{"id": "img-1", "type": "private"}, {"id": "img-2", "type": "private"}],
    "generate": [{"count": 30, "name_prefix": "pc", "image_id": "img-1", "tags": {"dept": "fin"}}],
    "behaviour": {"seed": 5, "job_seconds": 20, "failure_rate": 0.4, "rate_limit_per_minute": 60, "error_rate": 0.2},
}


def rebuild(client: httpx.Client, ids: list[str]) -> httpx.Response:
    return client.post(f"/v2/{P}/desktops/rebuild", json={"desktop_ids": ids, "image_type": "private", "image_id": "img-2"})


def ids_of(client: httpx.Client) -> list[str]:
    return [d["id"] for d in client.get("/_simulator/desktops").json()["desktops"]]


def test_round_trip_keeps_progress(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    sim = Simulator(load_fleet_data(FLEET), clock=fake_clock)
    client = sim_client(sim)
    ids = ids_of(client)
    client.put("/_simulator/faults", json={"error_rate": 0})
    job_id = rebuild(client, ids[:10]).json()["job_id"]
    token = client.post("/v3/auth/tokens", json={"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "ops", "password": "pw", "domain": {"name": "acme"}}}}, "scope": {"project": {"id": P}}}})
    fake_clock.advance(5)

    saved = json.loads(json.dumps(sim.to_dict()))  # JSON-able, as a CLI would store it
    restored = Simulator.from_dict(saved, clock=fake_clock)
    again = sim_client(restored)
    assert restored.to_dict() == saved
    assert again.get(f"/v2/{P}/workspace-jobs/{job_id}").json()["status"] == "RUNNING"
    assert again.get(f"/v2/{P}/desktops/detail", headers={"X-Auth-Token": token.headers["X-Subject-Token"]},
                     auth=None).status_code == 200
    fake_clock.advance(15)
    job = again.get(f"/v2/{P}/workspace-jobs/{job_id}").json()
    assert job["status"] in ("SUCCESS", "FAILED")
    changed = [d for d in again.get("/_simulator/desktops").json()["desktops"] if d["image_id"] == "img-2"]
    succeeded = [s for s in job["sub_jobs"] if s["status"] == "SUCCESS"]
    assert len(changed) == len(succeeded) and all(d["rebuild_count"] == 1 for d in changed)


def test_restored_cloud_continues_the_same_random_sequence(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    def remaining(client: httpx.Client, ids: list[str]) -> list[Any]:
        statuses = [client.get(f"/v2/{P}/desktops/detail").status_code for _ in range(10)]
        client.put("/_simulator/faults", json={"error_rate": 0})
        job_id = rebuild(client, ids[10:20]).json()["job_id"]
        outcomes = [s["will_fail"] for s in client.get("/_simulator/jobs").json()["jobs"][-1]["sub_jobs"]]
        return [statuses, job_id, outcomes]

    original = Simulator(load_fleet_data(FLEET), clock=fake_clock)
    client = sim_client(original)
    ids = ids_of(client)
    for _ in range(5):
        client.get(f"/v2/{P}/desktops/detail")
    copy = Simulator.from_dict(original.to_dict(), clock=fake_clock)
    assert remaining(client, ids) == remaining(sim_client(copy), ids)


def test_rate_limit_bucket_is_kept(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    data = {**FLEET, "behaviour": {"rate_limit_per_minute": 2, "rate_limit_burst": 2}}
    sim = Simulator(load_fleet_data(data), clock=fake_clock)
    client = sim_client(sim)
    assert [client.get(f"/v2/{P}/desktops/detail").status_code for _ in range(2)] == [200, 200]
    restored = sim_client(Simulator.from_dict(sim.to_dict(), clock=fake_clock))
    assert restored.get(f"/v2/{P}/desktops/detail").status_code == 429


def test_from_dict_refuses_foreign_data(fake_clock: Any) -> None:
    with pytest.raises(ValueError, match="not a simulator state"):
        Simulator.from_dict({"format": "something-else"}, clock=fake_clock)
