"""Plan safety through the CLI, against the embedded (in-process) simulator and against
`reconciler simulator serve`: catalogue checks, --replace, the blast-radius guard and desktops
that cannot be rebuilt now. Whatever is refused must send no rebuild call at all: the
simulator's own stats (``/_simulator/stats``) say so."""

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
from reconciler.simulator import Simulator

PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "SAFETYTESTAK0000001", "safety-test-secret"
CREDENTIALS = {"HW_ACCESS_KEY": AK, "HW_SECRET_KEY": SK, "NO_COLOR": "1"}


def desktop(name: str, image: str = "img-old", **fields: Any) -> dict[str, Any]:
    return {"id": f"{name}-desk", "name": name, "image_id": image, "tags": {"dept": name.split("-")[0]}, **fields}


FLEET: dict[str, Any] = {
    "project_id": PROJECT,
    "credentials": [{"ak": AK, "sk": SK}],
    "images": [
        {"id": "img-old", "type": "private"},
        {"id": "img-new", "type": "private", "os_type": "Windows"},
        {"id": "img-gold", "type": "gold"},
        {"id": "img-arm", "type": "private", "architecture": "arm"},
        {"id": "img-big", "type": "private", "min_disk": 100},
        {"id": "img-market", "type": "market", "min_disk": 60},
    ],
    "desktops": [
        desktop("fin-01"), desktop("fin-02"), desktop("fin-03", system_disk_size=120),
        desktop("lab-01"), desktop("lab-02"),
        desktop("ops-01", frozen=True), desktop("ops-02", in_maintenance_mode=True),
        desktop("ops-03", status="HIBERNATED"), desktop("ops-04"),
    ],
    "behaviour": {"seed": 3, "job_seconds": 0.2},
}


def group(name: str, image: str = "img-new", image_type: str = "private", **image_fields: Any) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": "DesktopGroup", "metadata": {"name": name},
            "spec": {"desktops": {"selector": {"tags": {"dept": name}}},
                     "image": {"id": image, "type": image_type, **image_fields}}}


class World:
    """A simulated cloud (embedded in the CLI, or served), manifests that manage it, the CLI."""

    def __init__(self, mode: str, root: Path, serve: Callable[[dict], Any]) -> None:
        self.mode, self.dir = mode, root / "manifests"
        self.dir.mkdir()
        if mode == "served":
            self.served = serve(FLEET)
            self.target: dict[str, Any] = {"endpoint": self.served.url}
        else:
            (self.dir / "fleet.yaml").write_text(yaml.safe_dump(FLEET))
            self.target = {"simulator": {"fleet": "fleet.yaml"}}
        self.write(group("fin"), group("lab"))

    def write(self, *groups: dict[str, Any], safety: dict[str, Any] | None = None) -> None:
        spec = {"project_id": PROJECT, **self.target, "api": {"rate_limit_per_minute": 60000, "poll_interval_seconds": 0.05}}
        spec |= {"safety": safety} if safety else {}
        settings = {"apiVersion": "reconciler/v1", "kind": "Settings", "spec": spec}
        (self.dir / "manifests.yaml").write_text(yaml.safe_dump_all([settings, *groups], sort_keys=False))

    def group_source(self, index: int) -> str:
        """``file:line`` of the index-th DesktopGroup document, as messages name it."""
        path = self.dir / "manifests.yaml"
        starts = [n + 2 for n, line in enumerate(path.read_text().splitlines()) if line == "---"]
        return f"{path}:{starts[index]}"

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=CREDENTIALS)

    def plan(self, *args: str) -> Result:
        return self.cli("plan", str(self.dir), *args)

    def apply(self, *args: str) -> Result:
        return self.cli("apply", str(self.dir), "--auto-approve", "--wait", *args)

    def changes(self, *args: str) -> dict[str, tuple[str, str]]:
        result = self.plan("--json", *args)
        assert result.exit_code == 0, result.output
        return {c["desktop_id"]: (c["action"], c["reason"]) for c in json.loads(result.stdout)["changes"]}

    def _admin(self) -> httpx.Client:
        if self.mode == "served":
            return self.served.admin
        saved = json.loads((self.dir / ".reconciler" / "simulator.json").read_text())
        return httpx.Client(transport=Simulator.from_dict(saved["simulator"]).transport(), base_url="http://127.0.0.1")

    def calls(self, api: str) -> int:
        """Workspace calls of one API the simulator served (every outcome)."""
        return sum(self._admin().get("/_simulator/stats").json()["calls"].get(api, {}).values())

    def rebuilds(self) -> dict[str, int]:
        return {d["id"]: d["rebuild_count"] for d in self._admin().get("/_simulator/desktops").json()["desktops"]}


@pytest.fixture(params=["embedded", "served"])
def world(request: pytest.FixtureRequest, tmp_path: Path, serve_fleet: Callable[[dict], Any]) -> World:
    return World(request.param, tmp_path, serve_fleet)


def served_world(tmp_path: Path, serve_fleet: Callable[[dict], Any]) -> World:
    return World("served", tmp_path, serve_fleet)


# -- catalogue checks ------------------------------------------------------------------------

CHECKS = [
    (group("fin", "img-typo"),
     "group 'fin' ({src}), image img-typo (private), rule exists: no such image among the project's gold and private images"),
    (group("fin", "img-gold"),
     "group 'fin' ({src}), image img-gold (private), rule type: the catalogue has it as a gold image, the manifest says private"),
    (group("fin", "img-new", os_type="Linux"),
     "group 'fin' ({src}), image img-new (private), rule os_type: the catalogue has it as a Windows image, the manifest says Linux"),
    (group("fin", "img-arm"),
     "group 'fin' ({src}), image img-arm (private), rule architecture: an arm image, but 3 desktops to rebuild are x86: "
     "fin-01-desk, fin-02-desk, fin-03-desk"),
    (group("fin", "img-big"),
     "group 'fin' ({src}), image img-big (private), rule min_disk: needs a system disk of at least 100 GB, 2 desktops to "
     "rebuild have less: fin-01-desk (80 GB), fin-02-desk (80 GB)"),
    (group("fin", "img-new", "market"),
     "group 'fin' ({src}), image img-new (market), rule exists: no such image among the project's market images"),
]


@pytest.mark.parametrize(("bad", "message"), CHECKS, ids=[m.split("rule ")[1].split(":")[0] for _, m in CHECKS])
def test_each_image_check_fails_plan_and_apply_before_any_rebuild(world: World, bad: dict[str, Any], message: str) -> None:
    world.write(bad, group("lab"))
    expected = "Error: image check failed: " + message.format(src=world.group_source(0))
    for result in (world.plan(), world.apply()):
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(expected), result.stderr
        assert "Traceback" not in result.output
    assert world.calls("rebuild") == 0 and set(world.rebuilds().values()) == {0}
    assert world.plan("--no-refresh").exit_code == 0  # offline planning does not read the catalogue
    assert world.cli("validate", str(world.dir)).exit_code == 0


def test_violations_of_several_groups_are_all_named(world: World) -> None:
    world.write(group("fin", "img-arm"), group("lab", "img-gold", "private"))
    result = world.plan()
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: image check failed, 2 problems:\n  group 'fin'")
    assert "\n  group 'lab'" in result.stderr and world.calls("rebuild") == 0


def test_a_valid_image_plans_as_before_with_one_look_up_per_image(world: World) -> None:
    world.write(group("fin"), group("lab"), group("ops", "img-market", "market"))
    assert world.changes() == {
        **{f"fin-0{i}-desk": ("rebuild", "not_recorded") for i in (1, 2, 3)},
        **{f"lab-0{i}-desk": ("rebuild", "not_recorded") for i in (1, 2)},
        "ops-01-desk": ("wait", "not_rebuildable"), "ops-02-desk": ("wait", "not_rebuildable"),
        "ops-03-desk": ("wait", "not_rebuildable"), "ops-04-desk": ("rebuild", "not_recorded"),
    }
    # fin and lab share img-new: one ListImages call for both, one ListMarketImages call.
    assert (world.calls("list_images"), world.calls("list_market_images")) == (1, 1)
    assert world.apply().exit_code == 0
    assert (world.calls("list_images"), world.calls("list_market_images")) == (2, 2)
    counts = world.rebuilds()
    assert {i for i, n in counts.items() if n} == {"fin-01-desk", "fin-02-desk", "fin-03-desk", "lab-01-desk", "lab-02-desk", "ops-04-desk"}


def test_only_groups_with_rebuilds_are_checked(world: World) -> None:
    assert world.apply().exit_code == 0  # fin and lab run img-new now
    before = world.calls("list_images")
    assert world.plan("--detailed-exitcode").exit_code == 0 and world.calls("list_images") == before
    world.write(group("fin"), group("lab"), group("ops", "img-typo"))
    assert world.plan().exit_code == 1  # ops-04-desk would be rebuilt with it
    assert world.plan("--target", "fin").exit_code == 0  # a plan without ops leaves its image alone


def test_apply_of_a_saved_plan_checks_again_just_before_sending(tmp_path: Path, serve_fleet: Callable[[dict], Any]) -> None:
    world = served_world(tmp_path, serve_fleet)
    saved = str(tmp_path / "plan.json")
    assert world.plan("-o", saved).exit_code == 0
    world.served.admin.patch("/_simulator/desktops/fin-02-desk", json={"architecture": "arm"})
    result = world.cli("apply", saved)
    assert result.exit_code == 1
    assert "rule architecture: an x86 image, but 1 desktop to rebuild is arm: fin-02-desk" in result.stderr
    assert world.calls("rebuild") == 0
    world.served.admin.patch("/_simulator/desktops/fin-02-desk", json={"architecture": "x86"})
    assert world.cli("apply", saved).exit_code == 0 and world.calls("rebuild") == 2  # one call per group


# -- not rebuildable -------------------------------------------------------------------------


def test_frozen_maintenance_and_hibernated_desktops_wait_and_are_not_sent(world: World) -> None:
    world.write(group("ops"))
    planned = world.plan("--full")
    assert planned.exit_code == 0, planned.output
    for line in ("= wait    ops-01-desk (ops-01)  img-old -> img-new  [not_rebuildable; then rebuild: not_recorded; frozen]",
                 "= wait    ops-02-desk (ops-02)  img-old -> img-new  [not_rebuildable; then rebuild: not_recorded; in maintenance mode]",
                 "= wait    ops-03-desk (ops-03)  img-old -> img-new  [not_rebuildable; then rebuild: not_recorded; status HIBERNATED]"):
        assert line in planned.stdout
    assert world.plan("--detailed-exitcode").exit_code == 2  # a deferred rebuild is a change
    assert world.apply().exit_code == 0
    assert {i for i, n in world.rebuilds().items() if n} == {"ops-04-desk"}
    assert world.calls("rebuild") == 1  # no 409: the waiting desktops were never sent


def test_an_unfrozen_desktop_is_rebuilt_by_the_next_run(tmp_path: Path, serve_fleet: Callable[[dict], Any]) -> None:
    world = served_world(tmp_path, serve_fleet)
    world.write(group("ops"))
    assert world.apply().exit_code == 0
    world.served.admin.patch("/_simulator/desktops/ops-01-desk", json={"frozen": False})
    assert world.changes()["ops-01-desk"] == ("rebuild", "not_recorded")


# -- --replace -------------------------------------------------------------------------------


def test_replace_rebuilds_exactly_the_named_desktops_once(world: World) -> None:
    assert world.apply().exit_code == 0
    before = world.rebuilds()
    assert world.changes() == {}
    assert world.changes("--replace", "fin-02-desk") == {"fin-02-desk": ("rebuild", "replace_requested")}
    assert world.changes("--replace", "lab") == {"lab-01-desk": ("rebuild", "replace_requested"), "lab-02-desk": ("rebuild", "replace_requested")}
    result = world.apply("--replace", "fin-02-desk", "--replace", "lab-01-desk")
    assert result.exit_code == 0, result.output
    after = world.rebuilds()
    assert {i: after[i] - before[i] for i in after if after[i] != before[i]} == {"fin-02-desk": 1, "lab-01-desk": 1}
    assert world.changes() == {}  # once: the next plan wants nothing


def test_replace_goes_through_saved_plans_and_rollout_rules(tmp_path: Path, serve_fleet: Callable[[dict], Any]) -> None:
    world = served_world(tmp_path, serve_fleet)
    assert world.apply().exit_code == 0
    saved = tmp_path / "replace.json"
    assert world.plan("--replace", "fin", "-o", str(saved)).exit_code == 0
    document = json.loads(saved.read_text())
    assert document["options"]["replace"] == ["fin"]
    assert [c["wave"] for c in document["changes"]] == ["main", "main", "main"]
    assert world.cli("apply", str(saved), "--replace", "fin").exit_code == 1  # a saved plan is applied as it is
    before = world.calls("rebuild")
    assert world.cli("apply", str(saved), "--wait").exit_code == 0
    assert world.calls("rebuild") == before + 1  # one batch of the three
    assert world.cli("show", str(saved)).stdout.count("[replace_requested]") == 1  # grouped: one line


def test_replace_of_an_unknown_name_is_an_error(world: World) -> None:
    result = world.plan("--replace", "nobody")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --replace 'nobody' names no group or managed desktop")


# -- the blast-radius guard ------------------------------------------------------------------


@pytest.mark.parametrize("limit", [4, "80%"])  # 5 managed desktops of fin and lab; 80% of 5 is 4
def test_the_guard_refuses_one_over_the_limit_and_accepts_with_the_flag(world: World, limit: int | str) -> None:
    world.write(group("fin"), group("lab"), safety={"max_rebuilds_per_run": limit})
    planned = world.plan()
    assert planned.exit_code == 0
    assert "Warning: Over the safety limit: 5 rebuilds exceed safety.max_rebuilds_per_run = 4" in planned.stdout
    refused = world.apply()
    assert refused.exit_code == 1
    of = " (80% of 5 managed desktops)" if limit == "80%" else ""
    assert refused.stderr.startswith(
        f"Error: refusing to apply: 5 rebuilds exceed safety.max_rebuilds_per_run = 4{of}; groups: fin 3, lab 2. Nothing was sent.")
    assert world.calls("rebuild") == 0
    document = json.loads(world.plan("--json").stdout)
    assert document["safety"] == {"managed_desktops": 5, "rebuilds": 5, "max_rebuilds_per_run": limit, "limit": 4, "over_limit": True}
    assert world.apply("--allow-mass-rebuild").exit_code == 0
    assert sum(world.rebuilds().values()) == 5


def test_the_guard_accepts_a_plan_at_the_limit(world: World) -> None:
    world.write(group("fin"), group("lab"), safety={"max_rebuilds_per_run": 5})
    assert "safety limit" not in world.plan().stdout
    assert world.apply().exit_code == 0 and sum(world.rebuilds().values()) == 5


def test_the_guard_refuses_a_saved_plan_over_the_limit(tmp_path: Path, serve_fleet: Callable[[dict], Any]) -> None:
    world = served_world(tmp_path, serve_fleet)
    world.write(group("fin"), group("lab"), safety={"max_rebuilds_per_run": "50%"})
    saved = str(tmp_path / "mass.json")
    assert world.plan("-o", saved).exit_code == 0
    markdown = world.cli("show", saved, "--markdown").stdout
    assert "Over the safety limit: 5 rebuilds exceed safety.max\\_rebuilds\\_per\\_run = 2" in markdown
    refused = world.cli("apply", saved)
    assert refused.exit_code == 1 and "groups: fin 3, lab 2. Nothing was sent." in refused.stderr
    assert world.calls("rebuild") == 0
    assert world.cli("apply", saved, "--allow-mass-rebuild").exit_code == 0
    assert sum(world.rebuilds().values()) == 5
