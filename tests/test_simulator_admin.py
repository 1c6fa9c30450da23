"""The /_simulator/ admin API: inspecting desktops and jobs, drift, busy desktops, faults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reconciler.simulator import Simulator, load_fleet_data

P = "proj1"
FLEET = {
    "project_id": P,
    "credentials": [{"ak": "AK1", "sk": "SK1"}],
    "images": [{"id": "img-1", "type": "private"}, {"id": "img-2", "type": "private"}],
    "desktops": [
        {"id": "d1", "name": "pc1", "image_id": "img-1", "tags": {"dept": "fin"}, "pool_id": "pool-a"},
        {"id": "d2", "name": "pc2", "image_id": "img-1"},
    ],
    "behaviour": {"job_seconds": 10},
}


@pytest.fixture
def client(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> httpx.Client:
    return sim_client(Simulator(load_fleet_data(FLEET), clock=fake_clock))


def test_lists_desktops_with_admin_fields(client: httpx.Client) -> None:
    desktops = client.get("/_simulator/desktops").json()["desktops"]
    assert desktops[0] == {
        "id": "d1", "name": "pc1", "image_id": "img-1", "status": "ACTIVE", "task_status": "",
        "login_status": "REGISTERED", "rebuild_count": 0, "tags": {"dept": "fin"}, "pool_id": "pool-a",
        "enterprise_project_id": "0", "user_name": None, "fail_rebuilds": False, "created": 1_700_000_000.0,
        "architecture": "x86", "system_disk_size": 80, "frozen": False, "in_maintenance_mode": False,
    }
    assert client.get("/_simulator/desktops/d2").json()["name"] == "pc2"
    assert client.get("/_simulator/desktops/nope").status_code == 404


def test_patch_simulates_drift(client: httpx.Client) -> None:
    patched = client.patch("/_simulator/desktops/d1", json={"image_id": "img-2", "login_status": "CONNECTED"})
    assert patched.status_code == 200 and patched.json()["image_id"] == "img-2"
    desktop = client.get(f"/v2/{P}/desktops/d1").json()["desktop"]
    assert desktop["metadata"]["metering.image_id"] == "img-2" and desktop["login_status"] == "CONNECTED"
    by_image = client.get(f"/v2/{P}/desktops/detail", params={"image_id": "img-2"}).json()
    assert [d["desktop_id"] for d in by_image["desktops"]] == ["d1"]


def test_patch_makes_desktops_busy_and_free(client: httpx.Client) -> None:
    client.patch("/_simulator/desktops/d1", json={"task_status": "rebuilding"})
    body = {"desktop_ids": ["d1"], "image_type": "private", "image_id": "img-2"}
    assert client.post(f"/v2/{P}/desktops/rebuild", json=body).status_code == 409
    client.patch("/_simulator/desktops/d1", json={"task_status": "", "status": "STOPPING"})
    assert client.post(f"/v2/{P}/desktops/rebuild", json=body).status_code == 409
    client.patch("/_simulator/desktops/d1", json={"status": "SHUTOFF"})
    assert client.post(f"/v2/{P}/desktops/rebuild", json=body).status_code == 200


def test_patch_fail_rebuilds(client: httpx.Client, fake_clock: Any) -> None:
    client.patch("/_simulator/desktops/d2", json={"fail_rebuilds": True})
    body = {"desktop_ids": ["d2"], "image_type": "private", "image_id": "img-2"}
    job_id = client.post(f"/v2/{P}/desktops/rebuild", json=body).json()["job_id"]
    fake_clock.advance(10)
    assert client.get(f"/v2/{P}/workspace-jobs/{job_id}").json()["status"] == "FAILED"


def test_patch_validation(client: httpx.Client) -> None:
    response = client.patch("/_simulator/desktops/d1", json={"image_id": "img-9", "status": "ON", "colour": "red",
                                                            "fail_rebuilds": "yes"})
    assert response.status_code == 400 and response.json()["error_code"] == "SIM.0400"
    message = response.json()["error_msg"]
    for fragment in ("colour: unknown field", "image_id: must be an image of the fleet",
                     "status: must be one of", "fail_rebuilds: must be true or false"):
        assert fragment in message
    assert client.patch("/_simulator/desktops/d1", json=["image_id"]).status_code == 400
    assert client.get("/_simulator/desktops/d1").json()["image_id"] == "img-1"


def test_add_desktop(client: httpx.Client) -> None:
    added = client.post("/_simulator/desktops", json={"name": "pc3", "image_id": "img-2", "tags": {"dept": "hr"}})
    assert added.status_code == 201
    new_id = added.json()["id"]
    listing = client.get(f"/v2/{P}/desktops/detail", params={"tag": "dept=hr"}).json()
    assert [d["desktop_id"] for d in listing["desktops"]] == [new_id]
    assert client.get(f"/v2/{P}/desktops/detail").json()["desktops"][-1]["desktop_id"] == new_id


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"name": "pc1", "image_id": "img-1"}, "name: a desktop named 'pc1' already exists"),
        ({"id": "d2", "name": "pc9", "image_id": "img-1"}, "id: a desktop with id 'd2' already exists"),
        ({"name": "pc9", "image_id": "img-7"}, "image_id: image 'img-7' is not an image of the fleet"),
        ({"name": "pc9"}, "image_id: is required"),
        ({"name": "pc9", "image_id": "img-1", "status": "ON"}, "status: must be one of"),
    ],
)
def test_add_desktop_validation(client: httpx.Client, payload: dict[str, Any], fragment: str) -> None:
    response = client.post("/_simulator/desktops", json=payload)
    assert response.status_code == 400 and fragment in response.json()["error_msg"]


def test_faults_put_and_get(client: httpx.Client) -> None:
    updated = client.put("/_simulator/faults", json={"job_seconds": 0.25, "failure_rate": 0.5, "rate_limit_burst": 4})
    assert updated.status_code == 200
    assert updated.json()["job_seconds"] == 0.25 and updated.json()["rate_limit_burst"] == 4
    assert client.get("/_simulator/faults").json() == updated.json()
    bad = client.put("/_simulator/faults", json={"error_rate": 2, "warp": 1})
    assert bad.status_code == 400
    assert "error_rate: must be at most 1" in bad.json()["error_msg"] and "warp: unknown key" in bad.json()["error_msg"]
    assert client.put("/_simulator/faults", json={"seed": 3}).status_code == 400


def test_jobs_expose_request_fields_and_exact_times(client: httpx.Client, fake_clock: Any) -> None:
    body = {"desktop_ids": ["d1", "d2"], "image_type": "private", "image_id": "img-2", "os_type": "Windows",
            "delay_time": 5, "message": "save your work"}
    client.post(f"/v2/{P}/desktops/rebuild", json=body)
    fake_clock.advance(4)
    (job,) = client.get("/_simulator/jobs").json()["jobs"]
    assert {k: job[k] for k in body} == body
    assert job["status"] == "RUNNING" and job["finished_at"] is None
    sub = job["sub_jobs"][0]
    assert sub["accepted_at"] == fake_clock() - 4 and sub["ends_at"] == sub["accepted_at"] + 10
    assert sub["finished_at"] is None
    fake_clock.advance(6)
    (job,) = client.get("/_simulator/jobs").json()["jobs"]
    assert job["status"] == "SUCCESS" and job["sub_jobs"][1]["finished_at"] == job["accepted_at"] + 10


def test_non_loopback_clients_are_refused(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    sim = Simulator(load_fleet_data(FLEET), clock=fake_clock)
    remote = sim_client(sim, remote_addr="192.0.2.7")
    response = remote.get("/_simulator/desktops")
    assert (response.status_code, response.json()["error_code"]) == (403, "SIM.0403")
    assert sim_client(sim, remote_addr="::1").get("/_simulator/desktops").status_code == 200
    assert remote.get(f"/v2/{P}/desktops/detail").status_code == 200  # the API itself is not restricted


def test_unknown_admin_paths_and_methods(client: httpx.Client) -> None:
    assert client.get("/_simulator/nothing").status_code == 404
    response = client.delete("/_simulator/desktops")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, POST"


def test_stats_count_workspace_calls_by_api_and_outcome(fake_clock, sim_client) -> None:
    from reconciler.simulator import Simulator, load_fleet_data

    sim = Simulator(load_fleet_data({
        "project_id": "p1", "images": [{"id": "img", "type": "private"}],
        "desktops": [{"id": "d1", "name": "pc1", "image_id": "img"}],
        "behaviour": {"rate_limit_per_minute": 60, "rate_limit_burst": 1},
    }), clock=fake_clock)
    client = sim_client(sim)
    assert client.get("/v2/p1/desktops/d1").status_code == 200
    assert client.get("/v2/p1/desktops/d1").status_code == 429
    assert client.get("/v2/p1/desktops/detail").status_code == 429
    stats = client.get("/_simulator/stats").json()
    assert stats == {"calls": {"list_desktops": {"429": 1}, "show_desktop": {"200": 1, "429": 1}}, "total": 3, "throttled": 2}
