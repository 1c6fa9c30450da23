"""POST desktops/rebuild: validation, 404/409, and jobs moving WAITING -> RUNNING -> SUCCESS/FAILED."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reconciler.simulator import Simulator, load_fleet_data

P = "proj1"
REBUILD = f"/v2/{P}/desktops/rebuild"


def fleet(**behaviour: Any) -> dict[str, Any]:
    return {
        "project_id": P,
        "images": [{"id": "img-old", "type": "private"}, {"id": "img-new", "type": "private", "os_type": "Linux"},
                   {"id": "img-gold", "type": "gold"}],
        "desktops": [
            {"id": "d1", "name": "pc1", "image_id": "img-old", "user_name": "ann"},
            {"id": "d2", "name": "pc2", "image_id": "img-old"},
            {"id": "d3", "name": "pc3", "image_id": "img-old", "status": "HIBERNATED"},
            {"id": "d4", "name": "pc4", "image_id": "img-old", "task_status": "rebooting"},
            {"id": "d5", "name": "pc5", "image_id": "img-old", "status": "ERROR", "fail_rebuilds": True},
            {"id": "d6", "name": "pc6", "image_id": "img-old", "status": "ERROR"},
        ],
        "behaviour": {"job_seconds": 100, **behaviour},
    }


@pytest.fixture
def make(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> Callable[..., tuple[Simulator, httpx.Client]]:
    def build(**behaviour: Any) -> tuple[Simulator, httpx.Client]:
        sim = Simulator(load_fleet_data(fleet(**behaviour)), clock=fake_clock)
        return sim, sim_client(sim)
    return build


def body(*ids: str, **extra: Any) -> dict[str, Any]:
    return {"desktop_ids": list(ids), "image_type": "private", "image_id": "img-new", **extra}


def admin_desktop(client: httpx.Client, desktop_id: str) -> dict[str, Any]:
    return client.get(f"/_simulator/desktops/{desktop_id}").json()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"image_type": "private", "image_id": "img-new"}, "desktop_ids: is required"),
        (body(), "desktop_ids: must hold 1 to 100 items (got 0)"),
        (body(*[f"d{i}" for i in range(101)]), "desktop_ids: must hold 1 to 100 items (got 101)"),
        ({**body(), "desktop_ids": "d1"}, "desktop_ids: must be a list of desktop ids"),
        ({**body(), "desktop_ids": ["d1", 7]}, "desktop_ids[1]: must be a string of 1 to 255 characters"),
        (body("d1", "d1"), "desktop_ids: duplicate ids d1"),
        (body("d1", image_type="silver"), "image_type: must be one of gold, private, market (got 'silver')"),
        ({"desktop_ids": ["d1"], "image_type": "private"}, "image_id: is required"),
        (body("d1", delay_time=-1), "delay_time: must be an integer from 0 to 2147483647 (minutes)"),
        (body("d1", delay_time=True), "delay_time: must be an integer"),
        (body("d1", message="x" * 401), "message: must be at most 400 characters long"),
        (body("d1", enterprise_project_id="e" * 37), "enterprise_project_id: must be at most 36 characters long"),
        (body("d1", image_id="img-missing"), "image_id: image img-missing does not exist in this project"),
        (body("d1", image_type="gold"), "image_type: image img-new is a private image, not gold"),
        ([1, 2], "the request body must be a JSON object"),
    ],
)
def test_invalid_rebuilds_are_400(make: Callable[..., Any], payload: Any, message: str) -> None:
    _, client = make()
    response = client.post(REBUILD, json=payload)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "WKS.00010400"
    assert message in response.json()["error_msg"]
    assert admin_desktop(client, "d1")["rebuild_count"] == 0


def test_every_problem_is_reported_at_once(make: Callable[..., Any]) -> None:
    _, client = make()
    message = client.post(REBUILD, json={"desktop_ids": [], "image_type": "x"}).json()["error_msg"]
    assert message.count(";") == 2 and "image_id: is required" in message


def test_empty_and_malformed_bodies(make: Callable[..., Any]) -> None:
    _, client = make()
    empty = client.post(REBUILD, content=b"", headers={"Content-Type": "application/json"})
    assert (empty.status_code, empty.json()["error_code"]) == (400, "WKS.0001")
    broken = client.post(REBUILD, content=b"{nope", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error_msg"]


def test_unknown_fields_are_ignored_and_passthrough_fields_recorded(make: Callable[..., Any]) -> None:
    _, client = make()
    payload = body("d1", delay_time=10, message="bye", order_id="o-1", encrypt_type="KEEP", frobnicate=True)
    assert client.post(REBUILD, json=payload).status_code == 200
    (job,) = client.get("/_simulator/jobs").json()["jobs"]
    assert (job["delay_time"], job["message"], job["order_id"], job["encrypt_type"]) == (10, "bye", "o-1", "KEEP")
    assert "frobnicate" not in job


def test_unknown_desktops_are_404_naming_them(make: Callable[..., Any]) -> None:
    _, client = make()
    response = client.post(REBUILD, json=body("d1", "ghost-1", "ghost-2"))
    assert (response.status_code, response.json()["error_code"]) == (404, "WKS.00010404")
    assert "ghost-1, ghost-2" in response.json()["error_msg"]
    assert admin_desktop(client, "d1")["rebuild_count"] == 0


def test_busy_desktops_refuse_the_whole_request(make: Callable[..., Any]) -> None:
    _, client = make()
    response = client.post(REBUILD, json=body("d1", "d3", "d4"))
    assert (response.status_code, response.json()["error_code"]) == (409, "WKS.00010032")
    assert "d3 (status HIBERNATED)" in response.json()["error_msg"]
    assert "d4 (task_status rebooting)" in response.json()["error_msg"]
    assert "d1 (" not in response.json()["error_msg"]
    assert admin_desktop(client, "d1")["rebuild_count"] == 0
    assert client.get("/_simulator/jobs").json()["jobs"] == []


def test_a_rebuilding_desktop_is_busy(make: Callable[..., Any]) -> None:
    _, client = make()
    assert client.post(REBUILD, json=body("d1")).status_code == 200
    again = client.post(REBUILD, json=body("d1", "d2"))
    assert again.status_code == 409 and "d1 (task_status rebuilding)" in again.json()["error_msg"]


def test_job_moves_through_its_states_and_changes_the_image(make: Callable[..., Any], fake_clock: Any) -> None:
    _, client = make()
    job_id = client.post(REBUILD, json=body("d1", "d2")).json()["job_id"]
    for desktop_id in ("d1", "d2"):
        desktop = client.get(f"/v2/{P}/desktops/{desktop_id}").json()["desktop"]
        assert desktop["task_status"] == "rebuilding" and desktop["process"] == 0
        assert admin_desktop(client, desktop_id)["rebuild_count"] == 1

    def job() -> dict[str, Any]:
        return client.get(f"/v2/{P}/workspace-jobs/{job_id}").json()

    assert job()["status"] == "WAITING" and job()["end_time"] is None
    fake_clock.advance(10)  # 10% of job_seconds
    assert job()["status"] == "RUNNING" and job()["sub_jobs"][0]["status"] == "RUNNING"
    fake_clock.advance(45)
    assert job()["sub_jobs"][0]["process"] == 50
    assert client.get(f"/v2/{P}/desktops/d1").json()["desktop"]["process"] == 50
    fake_clock.advance(44.9)
    assert job()["status"] == "RUNNING"
    assert client.get(f"/v2/{P}/desktops/d1").json()["desktop"]["metadata"]["metering.image_id"] == "img-old"
    fake_clock.advance(0.1)
    finished = job()
    assert finished["status"] == "SUCCESS" and finished["job_error_code"] is None
    assert finished["begin_time"] == "2027-01-15 08:00:00" and finished["end_time"] == "2027-01-15 08:01:40"
    assert finished["sub_jobs_total"] == 2 and finished["job_type"] == "rebuildDesktops"
    desktop = client.get(f"/v2/{P}/desktops/d1").json()["desktop"]
    assert desktop["metadata"]["metering.image_id"] == "img-new" and desktop["metadata"]["os_type"] == "Linux"
    assert desktop["task_status"] == "" and desktop["process"] is None
    listed = client.get(f"/v2/{P}/desktops/detail", params={"image_id": "img-new"}).json()
    assert [d["desktop_id"] for d in listed["desktops"]] == ["d1", "d2"]


def test_forced_failures_keep_the_image(make: Callable[..., Any], fake_clock: Any) -> None:
    _, client = make()
    job_id = client.post(REBUILD, json=body("d5", "d6")).json()["job_id"]
    fake_clock.advance(100)
    job = client.get(f"/v2/{P}/workspace-jobs/{job_id}").json()
    assert job["status"] == "FAILED" and job["job_error_code"] == "WKS.00010508"
    assert job["fail_reason"] == "1 of 2 desktops failed to rebuild"
    failed, succeeded = job["sub_jobs"]
    assert failed["status"] == "FAILED" and failed["error_code"] == "WKS.00010508" and "d5" in failed["fail_reason"]
    assert succeeded["status"] == "SUCCESS" and succeeded["error_code"] is None
    d5, d6 = admin_desktop(client, "d5"), admin_desktop(client, "d6")
    assert (d5["image_id"], d5["task_status"], d5["status"]) == ("img-old", "", "ERROR")
    assert (d6["image_id"], d6["status"]) == ("img-new", "ACTIVE")  # a successful rebuild revives ERROR


def test_failure_rate_one_fails_everything(make: Callable[..., Any], fake_clock: Any) -> None:
    _, client = make(failure_rate=1)
    job_id = client.post(REBUILD, json=body("d1", "d2")).json()["job_id"]
    fake_clock.advance(100)
    assert client.get(f"/v2/{P}/workspace-jobs/{job_id}").json()["status"] == "FAILED"
    assert admin_desktop(client, "d1")["image_id"] == "img-old"


def test_failures_and_ids_are_deterministic_for_a_seed(fake_clock: Any, sim_client: Callable[..., httpx.Client]) -> None:
    def run() -> list[Any]:
        data = fleet(failure_rate=0.5, seed=42)
        data["desktops"] = [{"id": f"x{i}", "name": f"x{i}", "image_id": "img-old"} for i in range(40)]
        client = sim_client(Simulator(load_fleet_data(data), clock=fake_clock))
        job_id = client.post(REBUILD, json=body(*[f"x{i}" for i in range(40)])).json()["job_id"]
        jobs = client.get("/_simulator/jobs").json()["jobs"]
        return [job_id] + [(s["id"], s["will_fail"]) for s in jobs[0]["sub_jobs"]]

    first, second = run(), run()
    assert first == second
    outcomes = [fail for _, fail in first[1:]]
    assert 5 < sum(outcomes) < 35


def test_sub_jobs_listing_filters_and_pages(make: Callable[..., Any], fake_clock: Any) -> None:
    _, client = make()
    first = client.post(REBUILD, json=body("d1", "d2")).json()["job_id"]
    fake_clock.advance(50)
    second = client.post(REBUILD, json=body("d5")).json()["job_id"]
    url = f"/v2/{P}/workspace-sub-jobs"
    listing = client.get(url, params={"job_id": first}).json()
    assert listing["total_count"] == 2
    sub = listing["jobs"][0]
    assert sub["job_id"] == first and sub["job_type"] == "rebuildDesktops" and sub["status"] == "RUNNING"
    assert sub["entities"] == {"desktop_id": "d1", "desktop_name": "pc1", "user_name": "ann",
                               "product_id": "workspace.x86.ultimate.large2", "ip_address": "10.0.0.10"}
    assert client.get(url, params={"job_type": "rebuildDesktops"}).json()["total_count"] == 3
    assert client.get(url, params={"status": "WAITING"}).json()["jobs"][0]["job_id"] == second
    paged = client.get(url, params={"limit": 1, "offset": 1}).json()
    assert paged["total_count"] == 3 and paged["jobs"][0]["entities"]["desktop_id"] == "d2"
    assert client.get(url, params={"job_id": "nope"}).json() == {"total_count": 0, "jobs": []}
    assert client.get(url, params={"desktop_pool_id": "pool"}).json()["total_count"] == 0
    bad = client.get(url, params={"status": "DONE", "limit": 2000})
    assert bad.status_code == 400 and "status: must be one of" in bad.json()["error_msg"]
    assert "limit: must be an integer from 0 to 1000" in bad.json()["error_msg"]


def test_unknown_job_is_404(make: Callable[..., Any]) -> None:
    _, client = make()
    response = client.get(f"/v2/{P}/workspace-jobs/nope")
    assert (response.status_code, response.json()["error_code"]) == (404, "WKS.00010404")


def test_delay_time_is_ignored_unless_honoured(make: Callable[..., Any], fake_clock: Any) -> None:
    _, client = make()
    client.post(REBUILD, json=body("d1", delay_time=10))
    _, honouring = make(honour_delay_time=True)
    honouring.post(REBUILD, json=body("d1", delay_time=10))
    plain = client.get("/_simulator/jobs").json()["jobs"][0]["sub_jobs"][0]
    delayed = honouring.get("/_simulator/jobs").json()["jobs"][0]["sub_jobs"][0]
    assert plain["ends_at"] - plain["accepted_at"] == 100
    assert delayed["starts_at"] - delayed["accepted_at"] == 600 + 10
    assert delayed["ends_at"] - delayed["accepted_at"] == 700


def test_zero_second_jobs_finish_by_the_next_request(make: Callable[..., Any]) -> None:
    _, client = make(job_seconds=0)
    job_id = client.post(REBUILD, json=body("d1")).json()["job_id"]
    assert client.get(f"/v2/{P}/workspace-jobs/{job_id}").json()["status"] == "SUCCESS"
    assert admin_desktop(client, "d1")["image_id"] == "img-new"
