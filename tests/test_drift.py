"""Drift, new selector matches, refresh-only onboarding, the scheduler's exit codes and
selectors, against `reconciler simulator serve` (its admin API plays the admin who changes
desktops behind reconciler's back). The CLI runs in-process through click's CliRunner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.cloud.auth import AkSkAuth
from reconciler.cloud.client import WorkspaceClient
from reconciler.model import DesktopGroup, Image, Selector
from reconciler.refresh import read_inventory
from reconciler.simulator import Simulator, load_fleet_data
from reconciler.state import State

PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "DRIFTTESTAK00000001", "drift-test-secret"
CREDENTIALS = {"HW_ACCESS_KEY": AK, "HW_SECRET_KEY": SK, "NO_COLOR": "1"}


def desktop(name: str, image: str = "img-old", **fields: Any) -> dict[str, Any]:
    dept = "finance" if name.startswith("fin") else "lab"
    return {"id": f"{name}-desk", "name": name, "image_id": image, "tags": {"dept": dept}, **fields}


FLEET = {
    "project_id": PROJECT,
    "credentials": [{"ak": AK, "sk": SK}],
    "images": [{"id": i, "type": "private"} for i in ("img-old", "img-new", "img-rogue")],
    "desktops": [desktop("fin-0001"), desktop("fin-0002"), desktop("fin-0003", "img-new"),
                 desktop("lab-0001"), desktop("lab-0002")],
    "behaviour": {"seed": 5, "job_seconds": 0.3},
}


def manifests(endpoint: str, *groups: dict[str, Any]) -> str:
    settings = {"apiVersion": "reconciler/v1", "kind": "Settings", "spec": {
        "project_id": PROJECT, "endpoint": endpoint,
        "api": {"rate_limit_per_minute": 60000, "poll_interval_seconds": 0.1}}}
    return yaml.safe_dump_all([settings, *groups], sort_keys=False)


def group(name: str, image: str = "img-new", **desktops: Any) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": "DesktopGroup", "metadata": {"name": name},
            "spec": {"desktops": desktops, "image": {"id": image, "type": "private"}}}


FINANCE = group("finance", selector={"tags": {"dept": "finance"}})
LAB = group("lab", ids=["lab-0001-desk", "lab-0002-desk"])


class World:
    """A served simulated cloud, a manifest directory that manages it, and the CLI."""

    def __init__(self, simulator: Any, root: Path) -> None:
        self.sim, self.root = simulator, root
        self.dir = root / "manifests"
        self.dir.mkdir()
        self.write(FINANCE, LAB)

    def write(self, *groups: dict[str, Any]) -> None:
        (self.dir / "manifests.yaml").write_text(manifests(self.sim.url, *groups))

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env=env or CREDENTIALS)

    def plan(self, *args: str) -> Result:
        return self.cli("plan", str(self.dir), *args)

    def changes(self) -> dict[str, tuple[str, str]]:
        result = self.plan("--json")
        assert result.exit_code == 0, result.stderr
        return {c["desktop_id"]: (c["action"], c["reason"]) for c in json.loads(result.stdout)["changes"]}

    def apply(self, *args: str) -> Result:
        result = self.cli("apply", *(args or (str(self.dir), "--auto-approve")), "--wait")
        assert result.exit_code == 0, result.output
        return result

    def state(self) -> dict[str, Any]:
        return json.loads((self.dir / ".reconciler" / "state.json").read_text())

    def rebuilds(self) -> dict[str, int]:
        return {i: d["rebuild_count"] for i, d in self.sim.desktops().items()}


@pytest.fixture
def world(tmp_path: Path, serve_fleet: Callable[[dict], Any]) -> World:
    return World(serve_fleet(FLEET), tmp_path)


def converged(world: World) -> World:
    world.apply()
    assert world.plan("--detailed-exitcode").exit_code == 0
    return world


# -- drift -----------------------------------------------------------------------------------


def test_a_desktop_reimaged_by_hand_is_drift_and_is_rebuilt_back(world: World) -> None:
    converged(world)
    assert world.sim.admin.patch("/_simulator/desktops/fin-0002-desk", json={"image_id": "img-rogue"}).status_code == 200
    before = world.rebuilds()

    planned = world.plan("--detailed-exitcode", "--full", "-o", str(world.root / "drift.json"))
    assert planned.exit_code == 2, planned.output
    assert planned.stdout.startswith("Drift: 1 desktop was changed outside reconciler since last recorded (finance 1)")
    assert "  ! rebuild fin-0002-desk (fin-0002)  img-rogue -> img-new  [drift]" in planned.stdout
    markdown = world.cli("show", str(world.root / "drift.json"), "--markdown").stdout
    assert "> [!WARNING]\n> **1 desktop drifted**" in markdown

    world.apply(str(world.root / "drift.json"))
    after = world.rebuilds()
    assert {i for i in after if after[i] != before[i]} == {"fin-0002-desk"}
    assert world.sim.desktops()["fin-0002-desk"]["image_id"] == "img-new"
    assert world.plan("--detailed-exitcode").exit_code == 0


def test_drift_is_named_even_when_the_group_image_also_changed(world: World) -> None:
    converged(world)
    world.sim.admin.patch("/_simulator/desktops/lab-0001-desk", json={"image_id": "img-rogue"})
    world.write(FINANCE, group("lab", "img-old", ids=["lab-0001-desk", "lab-0002-desk"]))
    assert world.changes() == {"lab-0001-desk": ("rebuild", "drift"), "lab-0002-desk": ("rebuild", "image_changed")}


def test_a_new_desktop_with_a_matching_tag_is_picked_up(world: World) -> None:
    converged(world)
    for body in (desktop("fin-0009"), desktop("fin-0010", "img-new"), desktop("lab-0009")):
        assert world.sim.admin.post("/_simulator/desktops", json=body).status_code == 201
    assert world.changes() == {"fin-0009-desk": ("rebuild", "not_recorded"), "fin-0010-desk": ("adopt", "already_current")}
    world.apply()
    assert world.rebuilds()["fin-0009-desk"] == 1 and world.rebuilds()["lab-0009-desk"] == 0
    recorded = world.state()["desktops"]
    assert recorded["fin-0009-desk"]["group"] == recorded["fin-0010-desk"]["group"] == "finance"
    assert "lab-0009-desk" not in recorded


# -- refresh-only ----------------------------------------------------------------------------


def test_refresh_only_records_live_images_and_rebuilds_nothing(world: World) -> None:
    result = world.cli("apply", str(world.dir), "--refresh-only", "--auto-approve", "--full")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("reconciler will record the live image of 5 desktops in the state (refresh-only):")
    assert "+ adopt   fin-0001-desk (fin-0001)  record img-old  [live_image; the group wants img-new]" in result.stdout
    assert "+ adopt   fin-0003-desk (fin-0003)  record img-new  [already_current]" in result.stdout
    assert "Refresh-only: nothing is rebuilt. 4 desktops run an image other than their group's" in result.stdout
    assert "Apply complete: 0 rebuilds submitted in 0 jobs, 5 adopted, 0 forgotten." in result.stdout

    assert set(world.rebuilds().values()) == {0} and world.sim.jobs() == []
    live = {i: d["image_id"] for i, d in world.sim.desktops().items()}
    assert {i: r["image_id"] for i, r in world.state()["desktops"].items()} == live
    # Recorded as they are: the next plan rebuilds them because the manifests say so, not as drift.
    assert set(world.changes().values()) == {("rebuild", "image_changed")}


def test_refresh_only_adopts_drift_as_the_new_record(world: World) -> None:
    converged(world)
    world.sim.admin.patch("/_simulator/desktops/fin-0001-desk", json={"image_id": "img-rogue"})
    result = world.cli("apply", str(world.dir), "--refresh-only", "--auto-approve", "--full")
    assert "+ adopt   fin-0001-desk (fin-0001)  record img-rogue  [live_image; the group wants img-new]" in result.stdout
    assert world.state()["desktops"]["fin-0001-desk"]["image_id"] == "img-rogue"
    assert world.changes() == {"fin-0001-desk": ("rebuild", "image_changed")}


def test_refresh_only_respects_targets(world: World) -> None:
    result = world.cli("apply", str(world.dir), "--refresh-only", "--auto-approve", "--target", "fin-0001-desk")
    assert result.exit_code == 0, result.output
    assert list(world.state()["desktops"]) == ["fin-0001-desk"]


def test_a_repeated_refresh_only_does_not_claim_the_fleet_matches_the_manifests(world: World) -> None:
    assert world.cli("apply", str(world.dir), "--refresh-only", "--auto-approve").exit_code == 0
    again = world.cli("apply", str(world.dir), "--refresh-only", "--auto-approve")
    assert again.exit_code == 0
    assert "The desktops match the manifests" not in again.stdout  # 4 of them still need a rebuild


# -- the scheduler's check -------------------------------------------------------------------


def test_detailed_exitcode_is_0_clean_2_changes_1_error(world: World) -> None:
    assert world.plan("--detailed-exitcode").exit_code == 2
    converged(world)
    # A rebuild someone started by hand is running: reconciler waits for it, which is no change.
    world.sim.admin.patch("/_simulator/desktops/fin-0001-desk", json={"task_status": "rebuilding"})
    waiting = world.plan("--detailed-exitcode", "--full")
    assert waiting.exit_code == 0 and "= wait    fin-0001-desk" in waiting.stdout, waiting.output
    world.sim.admin.patch("/_simulator/desktops/fin-0001-desk", json={"task_status": ""})
    assert world.plan("--detailed-exitcode").exit_code == 0

    no_credentials = world.cli("plan", str(world.dir), "--detailed-exitcode", env={"HW_ACCESS_KEY": ""})
    assert no_credentials.exit_code == 1 and no_credentials.stderr.startswith("Error: ")
    world.write(FINANCE, group("lab", "img-new", ids=["no-such-desk"]))
    missing = world.plan("--detailed-exitcode")
    assert missing.exit_code == 1 and "desktop no-such-desk not found" in missing.stderr
    assert "Traceback" not in missing.output + no_credentials.output


# -- selectors -------------------------------------------------------------------------------


def test_selector_criteria_all_match_and_unite_with_ids(world: World) -> None:
    picked = group("picked", selector={"tags": {"dept": "finance"}, "name": "fin-000[12]"}, ids=["lab-0002-desk"])
    world.write(picked)
    assert set(world.changes()) == {"fin-0001-desk", "fin-0002-desk", "lab-0002-desk"}


def test_a_desktop_claimed_by_two_groups_names_both(world: World) -> None:
    world.write(FINANCE, LAB, group("first-floor", selector={"name": "*-0001"}))
    result = world.plan()
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: 2 problems:")
    for claimed, other in (("fin-0001-desk", "finance"), ("lab-0001-desk", "lab")):
        line = next(line for line in result.stderr.splitlines() if f"desktop {claimed} is claimed by groups" in line)
        assert f"'{other}' (" in line and "'first-floor' (" in line and line.count("manifests.yaml:") == 2


class Recording(httpx.BaseTransport):
    """Delegates to the simulator and keeps the query of every desktops/detail call."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.queries: list[dict[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/desktops/detail"):
            self.queries.append(dict(request.url.params))
        return self.inner.handle_request(request)


def big_fleet() -> dict[str, Any]:
    """Pages of desktops: more than the selectors' filtered calls cost, so they are worth it
    (on a fleet of one or two pages, one listing matched locally is cheaper, and is used)."""
    generated = [
        {"count": 2500, "name_prefix": "eng-", "image_id": "img-old", "tags": {"dept": "eng"}},
        {"count": 12, "name_prefix": "pool-", "image_id": "img-old", "pool_id": "pool-7"},
        {"count": 8, "name_prefix": "ep-", "image_id": "img-old", "enterprise_project_id": "ep-42"},
        {"count": 5, "name_prefix": "kiosk-", "image_id": "img-rogue"},
    ]
    return {**FLEET, "generate": generated}


def test_selectors_use_the_api_filters_where_it_has_them() -> None:
    sim = Simulator(load_fleet_data(big_fleet()))
    transport = Recording(sim.transport())
    groups = [
        DesktopGroup("fin", Image("img-new", "private"), selector=Selector(tags=(("dept", "finance"),))),
        DesktopGroup("pooled", Image("img-new", "private"), selector=Selector(pool_id="pool-7")),
        DesktopGroup("ep", Image("img-new", "private"), selector=Selector(enterprise_project_id="ep-42")),
        DesktopGroup("kiosks", Image("img-new", "private"), selector=Selector(image_id="img-rogue", name="kiosk-[1-3]")),
    ]
    with WorkspaceClient("http://127.0.0.1", PROJECT, AkSkAuth(AK, SK, project_id=PROJECT), transport=transport) as client:
        inventory = read_inventory(client, groups, State())
    sizes = {name: len(ids) for name, ids in inventory.selector_matches.items()}
    assert sizes == {"fin": 3, "pooled": 12, "ep": 8, "kiosks": 3}
    filtered = [q for q in transport.queries if set(q) - {"offset", "limit"}]
    assert {"tag": "dept=finance"} in [{k: v for k, v in q.items() if k == "tag"} for q in filtered]
    used = {k for q in filtered for k in q} - {"offset", "limit"}
    assert {"tag", "pool_id", "enterprise_project_id", "image_id"} <= used
    assert "computer_name" not in used  # the name glob is matched locally
    assert len(transport.queries) < 6  # never a page-by-page walk of the 2,530 desktops
