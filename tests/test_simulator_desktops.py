"""desktops/detail paging and filters, desktops/{id}, and the desktop JSON shape."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.simulator import Simulator, load_fleet_data

PROJECT = "proj1"
IMAGES = [{"id": "img-a", "type": "private"}, {"id": "img-b", "type": "gold", "os_type": "Linux", "name": "Ubuntu"}]
DEPTS = ("fin", "hr", "lab")
POOLS = (None, "pool-1", "pool-2")
STATUSES = ("ACTIVE", "SHUTOFF", "ERROR")
EPS = ("0", "eps-9")


def _desktop(i: int) -> dict[str, Any]:
    return {
        "id": f"d-{i:03d}",
        "name": f"pc-{i:03d}",
        "image_id": IMAGES[i % 2]["id"],
        "tags": {"dept": DEPTS[i % 3], **({"floor": str(i % 4)} if i % 5 else {})},
        "pool_id": POOLS[i % 3 if i % 7 else 0],
        "status": STATUSES[i % 3 if i % 4 else 0],
        "enterprise_project_id": EPS[i % 2 if i % 3 else 0],
        "user_name": f"user{i % 6}" if i % 8 else None,
    }


FLEET = load_fleet_data({"project_id": PROJECT, "images": IMAGES, "desktops": [_desktop(i) for i in range(60)]})
ALL = [_desktop(i) for i in range(60)]
# One simulator for the property test (listing never changes it); a constant clock suffices.
SIM = Simulator(FLEET, clock=lambda: 1_800_000_000.0)
CLIENT = httpx.Client(transport=SIM.transport(), base_url="http://127.0.0.1")


def brute_force(filters: dict[str, Any]) -> list[str]:
    """Reference filter semantics, written independently of the simulator's indexes."""
    def keep(d: dict[str, Any]) -> bool:
        checks = [
            "ids" not in filters or d["id"] in filters["ids"],
            "tags" not in filters or all(d["tags"].get(k) == v for k, v in filters["tags"].items()),
            "image_id" not in filters or d["image_id"] == filters["image_id"],
            "pools" not in filters or d["pool_id"] in filters["pools"],
            "status" not in filters or d["status"] == filters["status"],
            "computer_name" not in filters or d["name"] == filters["computer_name"],
            "eps" not in filters or d["enterprise_project_id"] == filters["eps"],
            "user_name" not in filters or d["user_name"] == filters["user_name"],
        ]
        return all(checks)

    return [d["id"] for d in ALL if keep(d)]


def to_params(filters: dict[str, Any], repeat_ids: bool) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    if "ids" in filters:
        ids = sorted(filters["ids"])
        params += [("desktop_id", i) for i in ids] if repeat_ids else [("desktop_id", ",".join(ids))]
    if "tags" in filters:
        params.append(("tag", ",".join(f"{k}={v}" for k, v in filters["tags"].items())))
    if "pools" in filters:
        params.append(("pool_id", ",".join(filters["pools"])))
    for key, param in (("image_id", "image_id"), ("status", "status"), ("computer_name", "computer_name"),
                       ("eps", "enterprise_project_id"), ("user_name", "user_name")):
        if key in filters:
            params.append((param, filters[key]))
    return params


def page_through(params: list[tuple[str, str]], limit: int) -> tuple[list[str], set[int]]:
    seen: list[str] = []
    totals: set[int] = set()
    for offset in itertools.count(0, limit):
        query = (*params, ("offset", str(offset)), ("limit", str(limit)))
        response = CLIENT.get(f"/v2/{PROJECT}/desktops/detail", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        totals.add(body["total_count"])
        seen += [d["desktop_id"] for d in body["desktops"]]
        if len(body["desktops"]) < limit:
            return seen, totals
    raise AssertionError("unreachable")


filter_strategy = st.fixed_dictionaries({}, optional={
    "ids": st.sets(st.sampled_from([f"d-{i:03d}" for i in range(65)]), min_size=1, max_size=12),
    "tags": st.dictionaries(st.sampled_from(["dept", "floor"]), st.sampled_from(["fin", "hr", "lab", "0", "1", "2"]), min_size=1),
    "image_id": st.sampled_from(["img-a", "img-b", "img-z"]),
    "pools": st.sets(st.sampled_from(["pool-1", "pool-2", "pool-9"]), min_size=1, max_size=2).map(sorted),
    "status": st.sampled_from(STATUSES),
    "computer_name": st.sampled_from(["pc-001", "pc-042", "nope"]),
    "eps": st.sampled_from(EPS),
    "user_name": st.sampled_from(["user1", "user3"]),
})


@settings(max_examples=150, deadline=None)
@given(filters=filter_strategy, limit=st.integers(1, 25), repeat_ids=st.booleans())
def test_paging_with_filters_matches_brute_force(filters: dict[str, Any], limit: int, repeat_ids: bool) -> None:
    seen, totals = page_through(to_params(filters, repeat_ids), limit)
    expected = brute_force(filters)
    assert seen == expected  # same desktops, creation order, no duplicates
    assert totals == {len(expected)}


def test_default_and_maximum_limits(sim_client: Callable[..., httpx.Client]) -> None:
    big = load_fleet_data({"project_id": "p", "images": IMAGES,
                           "generate": [{"count": 1200, "name_prefix": "w", "image_id": "img-a"}]})
    client = sim_client(Simulator(big))
    assert len(client.get("/v2/p/desktops/detail").json()["desktops"]) == 500
    assert len(client.get("/v2/p/desktops/detail", params={"limit": 0}).json()["desktops"]) == 500
    body = client.get("/v2/p/desktops/detail", params={"limit": 1000, "offset": 1100}).json()
    assert len(body["desktops"]) == 100 and body["total_count"] == 1200
    assert client.get("/v2/p/desktops/detail", params={"offset": 5000}).json() == {"desktops": [], "total_count": 1200}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 1001}, "limit: must be an integer from 0 to 1000 (got '1001')"),
        ({"limit": "ten"}, "limit: must be an integer from 0 to 1000 (got 'ten')"),
        ({"offset": -1}, "offset: must be an integer >= 0 (got '-1')"),
        ({"tag": "dept"}, "tag: expected key=value pairs separated by commas (got 'dept')"),
        ({"desktop_ip": "10.0.0.1"}, "desktop_ip: filter not supported by the simulator"),
        ({"sort_field": "computer_name"}, "sort_field: only 'created' is supported by the simulator"),
        ({"in_maintenance_mode": "maybe"}, "in_maintenance_mode: must be true or false"),
    ],
)
def test_invalid_queries_are_400(params: dict[str, Any], message: str) -> None:
    response = CLIENT.get(f"/v2/{PROJECT}/desktops/detail", params=params)
    assert response.status_code == 400
    assert response.json()["error_code"] == "WKS.00010400"
    assert message in response.json()["error_msg"]


def test_descending_order_pages_from_the_newest() -> None:
    body = CLIENT.get(f"/v2/{PROJECT}/desktops/detail", params={"sort_type": "DESC", "limit": 3, "offset": 1}).json()
    assert [d["desktop_id"] for d in body["desktops"]] == ["d-058", "d-057", "d-056"]


def test_maintenance_and_type_filters() -> None:
    url = f"/v2/{PROJECT}/desktops/detail"
    assert CLIENT.get(url, params={"in_maintenance_mode": "true"}).json()["total_count"] == 0
    assert CLIENT.get(url, params={"in_maintenance_mode": "false"}).json()["total_count"] == 60
    pooled = CLIENT.get(url, params={"desktop_type": "POOLED", "limit": 100}).json()["desktops"]
    assert [d["desktop_id"] for d in pooled] == [d["id"] for d in ALL if d["pool_id"]]


def test_desktop_json_matches_the_sdk_shape() -> None:
    desktop = CLIENT.get(f"/v2/{PROJECT}/desktops/d-001").json()["desktop"]
    assert desktop["desktop_id"] == "d-001" and desktop["computer_name"] == "pc-001"
    assert desktop["metadata"]["metering.image_id"] == "img-b"
    assert desktop["metadata"]["image_name"] == "Ubuntu" and desktop["metadata"]["os_type"] == "Linux"
    assert desktop["task_status"] == "" and desktop["process"] is None
    assert desktop["created"] == "2023-11-14T22:13:21.000Z"
    assert {"key": "dept", "value": "hr"} in desktop["tags"]
    assert desktop["product"]["product_id"] == desktop["product_id"]
    assert desktop["desktop_type"] == "POOLED" and desktop["user_name"] == "user1"
    assert set(desktop) >= {"status", "login_status", "enterprise_project_id", "in_maintenance_mode", "user_list"}


def test_unknown_desktop_is_404_and_unknown_api_is_404() -> None:
    response = CLIENT.get(f"/v2/{PROJECT}/desktops/d-999")
    assert (response.status_code, response.json()["error_code"]) == (404, "WKS.00010404")
    assert "d-999" in response.json()["error_msg"]
    response = CLIENT.get(f"/v2/{PROJECT}/desktopz")
    assert (response.status_code, response.json()["error_code"]) == (404, "APIG.0101")
    assert response.headers["X-Request-Id"]


def test_wrong_project_is_404_and_wrong_method_is_405() -> None:
    response = CLIENT.get("/v2/other-project/desktops/detail")
    assert (response.status_code, response.json()["error_code"]) == (404, "WKS.00010404")
    response = CLIENT.delete(f"/v2/{PROJECT}/desktops/detail")
    assert response.status_code == 405 and response.headers["Allow"] == "GET"
