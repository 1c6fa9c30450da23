"""The image catalogue and the desktop fields that decide fit and rebuildability, through
``WorkspaceClient`` against the in-process simulator: ListImages, ListMarketImages, the desktop
detail fields, and the simulator refusing to rebuild frozen or maintenance-mode desktops."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from reconciler.cloud import errors
from reconciler.cloud.client import WorkspaceClient
from reconciler.cloud.models import CatalogueImage, Desktop, RebuildRequest
from reconciler.simulator import Simulator, load_fleet_data

P = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
FLEET: dict[str, Any] = {
    "project_id": P,
    "images": [
        {"id": "img-win", "type": "private", "os_type": "Windows", "name": "Win"},
        {"id": "img-arm", "type": "gold", "os_type": "Linux", "architecture": "arm", "min_disk": 100, "min_ram": 2048},
        {"id": "img-other", "type": "gold", "os_type": "Others", "name": "Kiosk"},
        {"id": "img-mkt", "type": "market", "os_type": "Windows", "min_disk": 60},
    ],
    "desktops": [
        {"id": "d1", "name": "pc1", "image_id": "img-win"},
        {"id": "d2", "name": "pc2", "image_id": "img-win", "architecture": "arm", "system_disk_size": 120},
        {"id": "d3", "name": "pc3", "image_id": "img-win", "frozen": True},
        {"id": "d4", "name": "pc4", "image_id": "img-win", "in_maintenance_mode": True},
    ],
    "generate": [{"count": 2, "name_prefix": "gen-", "image_id": "img-win", "architecture": "arm", "frozen": True}],
    "behaviour": {"job_seconds": 10},
}


@pytest.fixture
def sim(fake_clock: Any) -> Simulator:
    return Simulator(load_fleet_data(FLEET), clock=fake_clock, sleep=fake_clock.sleep)


@pytest.fixture
def client(sim: Simulator) -> WorkspaceClient:
    return WorkspaceClient("http://127.0.0.1", P, httpx.Auth(), transport=sim.transport())


def test_list_images_answers_image_info(client: WorkspaceClient) -> None:
    page = client.list_images()
    assert page.total_count == 3 and sorted(i.id for i in page.images) == ["img-arm", "img-other", "img-win"]
    assert client.list_images(image_id="img-arm").images == (
        CatalogueImage("img-arm", "gold", "Linux", "arm", 100, 2048, "img-arm", ""),)
    # Desktops say "Others"; the catalogue says "Other".
    assert [i.os_type for i in client.list_images(image_id="img-other").images] == ["Other"]
    assert [i.id for i in client.list_images(architecture="arm").images] == ["img-arm"]
    assert [i.id for i in client.list_images(image_type="private", os_type="Windows").images] == ["img-win"]
    assert client.list_images(image_id="img-mkt").images == ()
    assert client.list_images(limit=1, offset=2).images != () and client.list_images(limit=0).total_count == 3


def test_list_images_refuses_what_it_cannot_answer(client: WorkspaceClient) -> None:
    with pytest.raises(errors.BadRequest, match="limit"):
        client.list_images(limit=101)
    with pytest.raises(errors.BadRequest, match="image_type"):
        client.list_images(image_type="market")
    with pytest.raises(errors.BadRequest, match="image id"):
        client.list_images(image_id="a,b")


def test_list_market_images_by_ids(client: WorkspaceClient) -> None:
    found = client.list_market_images(["img-mkt", "img-win", "missing"])
    assert [(i.id, i.image_type, i.min_disk, i.architecture) for i in found] == [("img-mkt", "market", 60, None)]
    with pytest.raises(ValueError, match="1 to 100"):
        client.list_market_images([])


def test_desktops_report_architecture_disk_freeze_and_maintenance(client: WorkspaceClient) -> None:
    desktops = {d.id: d for d in client.iter_desktops()}
    assert (desktops["d1"].architecture, desktops["d1"].system_disk_gb) == ("x86", 80)
    assert (desktops["d2"].architecture, desktops["d2"].system_disk_gb) == ("arm", 120)
    assert desktops["d3"].frozen and not desktops["d3"].in_maintenance_mode
    assert desktops["d4"].in_maintenance_mode and not desktops["d4"].frozen
    assert sum(d.frozen and d.architecture == "arm" for d in desktops.values()) == 2


def test_the_maintenance_filter_of_desktops_detail(sim: Simulator) -> None:
    with httpx.Client(transport=sim.transport(), base_url="http://127.0.0.1") as http:
        listed = http.get(f"/v2/{P}/desktops/detail", params={"in_maintenance_mode": "true"}).json()
        assert [d["desktop_id"] for d in listed["desktops"]] == ["d4"]
        assert http.get(f"/v2/{P}/desktops/detail", params={"in_maintenance_mode": "false"}).json()["total_count"] == 5


def test_disk_size_falls_back_to_the_product() -> None:
    parsed = Desktop.from_api({"desktop_id": "x", "product": {"architecture": "arm", "system_disk_size": "90"}})
    assert (parsed.architecture, parsed.system_disk_gb, parsed.frozen) == ("arm", 90, False)
    junk = Desktop.from_api({"desktop_id": "y", "product": ["no"], "root_volume": "no", "is_freeze": "yes"})
    assert (junk.architecture, junk.system_disk_gb, junk.frozen) == (None, None, False)


@pytest.mark.parametrize(("desktop", "why"), [("d3", "frozen"), ("d4", "in maintenance mode")])
def test_frozen_and_maintenance_desktops_are_refused(client: WorkspaceClient, sim: Simulator, desktop: str, why: str) -> None:
    with pytest.raises(errors.Busy, match=why):
        client.rebuild_desktops(RebuildRequest((desktop, "d1"), "img-win", "private"))
    with httpx.Client(transport=sim.transport(), base_url="http://127.0.0.1") as admin:
        counts = {d["id"]: d["rebuild_count"] for d in admin.get("/_simulator/desktops").json()["desktops"]}
        assert counts[desktop] == 0 and counts["d1"] == 0  # the whole request is refused
        admin.patch(f"/_simulator/desktops/{desktop}", json={"frozen": False, "in_maintenance_mode": False})
    assert client.rebuild_desktops(RebuildRequest((desktop,), "img-win", "private"))
