"""The pure side of plan safety: image rules over catalogue entries and desktops, desktops that
cannot be rebuilt now, the blast-radius guard, ``--replace`` in the planner, and golden files
of what reviewers and operators read (regenerate with ``UPDATE_GOLDEN=1``)."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import render
from reconciler.catalogue import ImageCheckFailed, Rule, Violation, image_violations
from reconciler.cloud.models import CatalogueImage, Desktop
from reconciler.model import (
    Action,
    Change,
    DesktopGroup,
    FailureBudget,
    Image,
    Location,
    Reason,
    SafetySettings,
    Selector,
    Settings,
)
from reconciler.plan import Plan, plan_from_json, plan_to_json
from reconciler.planner import Inventory, PlanError, PlanOptions, plan
from reconciler.safety import MassRebuildRefused, hold_unrebuildable, mass_rebuild, refuse_mass_rebuild, unrebuildable
from reconciler.state import State

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs; if intended, rerun with UPDATE_GOLDEN=1"


FIN = DesktopGroup("finance", Image("img-win11", "private", "Windows"), source=Location("manifests/finance.yaml", 5))
LAB = DesktopGroup("lab", Image("img-ubuntu", "gold"), source=Location("manifests/lab.yaml", 3))
WIN11 = CatalogueImage("img-win11", "private", "Windows", "x86", 60)
UBUNTU = CatalogueImage("img-ubuntu", "gold", "Linux", "x86", 40)


def desktop(i: int, arch: str | None = "x86", disk: int | None = 80, status: str = "ACTIVE", **flags: bool) -> Desktop:
    return Desktop(f"d{i:03d}", f"pc{i:03d}", status, "", "REGISTERED", "img-old", None, None,
                   architecture=arch, system_disk_gb=disk, **flags)


def catalogue(*entries: CatalogueImage) -> dict[tuple[str, bool], CatalogueImage | None]:
    return {(e.id, e.image_type == "market"): e for e in entries}


# -- image rules -----------------------------------------------------------------------------


def test_a_fitting_image_breaks_no_rule() -> None:
    assert image_violations([FIN, LAB], {"finance": [desktop(1)], "lab": [desktop(2)]}, catalogue(WIN11, UBUNTU)) == []


@pytest.mark.parametrize(("entry", "rule"), [
    (None, Rule.EXISTS),
    (replace(WIN11, image_type="gold"), Rule.TYPE),
    (replace(WIN11, os_type="Linux"), Rule.OS_TYPE),
    (replace(WIN11, architecture="arm"), Rule.ARCHITECTURE),
    (replace(WIN11, min_disk=100), Rule.MIN_DISK),
])
def test_each_rule(entry: CatalogueImage | None, rule: Rule) -> None:
    found = image_violations([FIN], {"finance": [desktop(1)]}, {("img-win11", False): entry})
    assert [v.rule for v in found] == [rule] and found[0].group is FIN


def test_what_cannot_be_known_is_not_held_against_the_image() -> None:
    market = CatalogueImage("img-win11", "private", "Windows", None, None)  # no architecture, no min_disk
    unknown = [desktop(1, arch=None, disk=None)]
    assert image_violations([FIN], {"finance": unknown}, catalogue(replace(WIN11, min_disk=500, architecture="arm"))) == []
    assert image_violations([FIN], {"finance": [desktop(1, arch="arm", disk=10)]}, catalogue(market)) == []
    untyped = DesktopGroup("any", Image("img-ubuntu", "gold"))  # no os_type in the manifest: any will do
    assert image_violations([untyped], {"any": [desktop(1)]}, catalogue(replace(UBUNTU, os_type="Other"))) == []


def test_a_market_image_is_one_whatever_its_own_type_field_says() -> None:
    market = DesktopGroup("shop", Image("img-m", "market"))
    entry = CatalogueImage("img-m", "commercial", "Windows", None, 40)
    assert image_violations([market], {"shop": [desktop(1)]}, {("img-m", True): entry}) == []


def test_os_types_match_across_spellings() -> None:
    other = DesktopGroup("kiosk", Image("img-k", "gold", "Others"))
    assert image_violations([other], {"kiosk": [desktop(1)]}, catalogue(CatalogueImage("img-k", "gold", "Other"))) == []
    assert image_violations([FIN], {"finance": [desktop(1, arch="X86"), desktop(2, arch="x86_64")]}, catalogue(WIN11)) == []
    arm = replace(WIN11, architecture="arm")
    assert image_violations([FIN], {"finance": [desktop(1, arch="aarch64")]}, catalogue(arm)) == []


def test_groups_without_rebuilds_are_not_checked() -> None:
    assert image_violations([FIN, LAB], {"lab": [desktop(1)]}, catalogue(UBUNTU)) == []


@given(st.integers(min_value=1, max_value=40))
def test_a_violation_names_at_most_ten_desktops_and_counts_the_rest(count: int) -> None:
    desktops = [desktop(i, arch="arm") for i in range(count)]
    (found,) = image_violations([FIN], {"finance": desktops}, catalogue(WIN11))
    text = str(found)
    named = [d.id for d in desktops if d.id in text]
    assert named == [d.id for d in desktops][:10]
    assert (f" and {count - 10} more" in text) == (count > 10)
    assert f"{count} desktops to rebuild are arm" in text if count > 1 else "1 desktop to rebuild is arm" in text


# -- not rebuildable -------------------------------------------------------------------------

STATUSES = ["ACTIVE", "SHUTOFF", "ERROR", "HIBERNATED", "STARTING", "STOPPING", "RESTARTING", "HIBERNATING", "AWAKENING"]


@given(st.sampled_from(STATUSES), st.booleans(), st.booleans())
def test_only_rebuildable_desktops_stay_rebuilds(status: str, frozen: bool, maintenance: bool) -> None:
    live = desktop(1, status=status, frozen=frozen, in_maintenance_mode=maintenance)
    change = Change(live.id, Action.REBUILD, Reason.IMAGE_CHANGED, "finance", live.name, "img-old", "img-win11", wave="main")
    (held,) = hold_unrebuildable([change], {live.id: live})
    refused = frozen or maintenance or status not in ("ACTIVE", "SHUTOFF", "ERROR")
    assert (held.action is Action.WAIT) == refused
    if refused:
        assert held.reason is Reason.NOT_REBUILDABLE and held.pending is Reason.IMAGE_CHANGED
        assert held.detail == unrebuildable(live) and held.detail
    else:
        assert held == change


def test_the_planner_holds_unrebuildable_desktops_before_rollout() -> None:
    live = {d.id: d for d in (desktop(1), desktop(2, frozen=True), desktop(3, status="HIBERNATED"))}
    group = DesktopGroup("finance", Image("img-win11", "private"), ids=tuple(live))
    result = plan([group], State(), Inventory(live))
    assert [(c.desktop_id, c.action.value, c.reason.value, c.detail) for c in result.changes] == [
        ("d001", "rebuild", "not_recorded", None),
        ("d002", "wait", "not_rebuildable", "frozen"),
        ("d003", "wait", "not_rebuildable", "status HIBERNATED"),
    ]
    assert result.has_changes and result.managed_desktops == 3


# -- --replace -------------------------------------------------------------------------------


def current_fleet() -> tuple[DesktopGroup, dict[str, Desktop]]:
    live = {d.id: replace(d, image_id="img-win11") for d in (desktop(1), desktop(2), desktop(3))}
    return DesktopGroup("finance", Image("img-win11", "private"), selector=Selector(tags=())), live


def test_replace_rebuilds_current_desktops_by_id_or_group() -> None:
    group, live = current_fleet()
    inventory = Inventory(live, {"finance": frozenset(live)})
    assert plan([group], State(), inventory).changes[0].action is Action.ADOPT  # not replaced: adopted
    one = plan([group], State(), inventory, PlanOptions(replace=("d002",)))
    assert [(c.desktop_id, c.action.value, c.reason.value) for c in one.changes if c.action is Action.REBUILD] == [
        ("d002", "rebuild", "replace_requested")]
    everything = plan([group], State(), inventory, PlanOptions(replace=("finance",)))
    assert {c.reason for c in everything.changes} == {Reason.REPLACE_REQUESTED} and len(everything.changes) == 3
    assert everything.replace == ("finance",)


def test_replace_keeps_a_running_rebuild_waiting_and_unknown_names_are_errors() -> None:
    group, live = current_fleet()
    live["d001"] = replace(live["d001"], task_status="rebuilding")
    inventory = Inventory(live, {"finance": frozenset(live)})
    changes = plan([group], State(), inventory, PlanOptions(replace=("finance",))).changes
    assert (changes[0].action, changes[0].reason) == (Action.WAIT, Reason.IN_PROGRESS)
    with pytest.raises(PlanError, match="--replace 'nope' names no group or managed desktop"):
        plan([group], State(), inventory, PlanOptions(replace=("nope",)))


# -- the blast-radius guard ------------------------------------------------------------------


def guarded(limit: FailureBudget | None, rebuilds: int, managed: int) -> Plan:
    settings = Settings("0a1b2c3d4e5f60718293a4b5c6d7e8f9", region="cn-north-4", safety=SafetySettings(limit))
    changes = tuple(Change(f"d{i:03d}", Action.REBUILD, Reason.IMAGE_CHANGED, "finance" if i % 3 else "lab") for i in range(rebuilds))
    return Plan(changes, (FIN, LAB), None, 0, True, settings=settings, managed_desktops=managed)


@given(st.integers(0, 60), st.integers(0, 200), st.one_of(st.integers(0, 80), st.floats(0, 100).map(lambda p: round(p, 1))))
def test_the_guard_refuses_exactly_the_plans_over_the_limit(rebuilds: int, managed: int, limit: int | float) -> None:
    budget = FailureBudget(count=None, percent=limit) if isinstance(limit, float) else FailureBudget(count=limit)
    allowed = math.floor(managed * limit / 100) if isinstance(limit, float) else limit
    candidate = guarded(budget, rebuilds, managed)
    assert (mass_rebuild(candidate) is not None) == (rebuilds > allowed)
    if rebuilds > allowed:
        with pytest.raises(MassRebuildRefused, match=f"^refusing to apply: {rebuilds} rebuilds exceed"):
            refuse_mass_rebuild(candidate, allowed=False)
    refuse_mass_rebuild(candidate, allowed=True)
    document = plan_to_json(candidate)
    assert document["safety"]["over_limit"] == (rebuilds > allowed)
    assert plan_from_json(document, "plan.json").managed_desktops == managed


def test_no_limit_no_guard() -> None:
    assert mass_rebuild(guarded(None, 1000, 10)) is None


# -- golden files ----------------------------------------------------------------------------


def safety_plan() -> Plan:
    settings = Settings("0a1b2c3d4e5f60718293a4b5c6d7e8f9", region="cn-north-4", base_dir="manifests",
                        safety=SafetySettings(FailureBudget(count=None, percent=10)), source=Location("manifests/settings.yaml", 3))
    rebuild = Action.REBUILD
    changes = (
        Change("fin-0001-desk", rebuild, Reason.REPLACE_REQUESTED, "finance", "fin-0001", "img-win11", "img-win11", wave="main"),
        Change("fin-0002-desk", rebuild, Reason.IMAGE_CHANGED, "finance", "fin-0002", "img-win10", "img-win11", wave="main"),
        Change("fin-0003-desk", Action.WAIT, Reason.NOT_REBUILDABLE, "finance", "fin-0003", "img-win10", "img-win11",
               detail="frozen", pending=Reason.IMAGE_CHANGED),
        Change("fin-0004-desk", Action.WAIT, Reason.NOT_REBUILDABLE, "finance", "fin-0004", "img-win10", "img-win11",
               detail="status HIBERNATED", pending=Reason.IMAGE_CHANGED),
        Change("lab-0001-desk", rebuild, Reason.NOT_RECORDED, "lab", "lab-0001", "img-ubuntu-22", "img-ubuntu", wave="main"),
    )
    return Plan(changes, (FIN, LAB), "6f1c2b9e-8d7a-4c3b-9e2f-1a0b9c8d7e6f", 4, True, replace=("fin-0001-desk",),
                settings=settings, managed_desktops=20, created_at="2026-11-27T12:00:00+00:00")


def test_plan_safety_golden() -> None:
    check_golden("plan-safety.txt", render.plan_text(safety_plan(), full=True))
    check_golden("plan-safety.md", render.plan_markdown(safety_plan()))


def test_refusal_messages_golden() -> None:
    arm = [desktop(i, arch="arm") for i in range(12)]
    small = [desktop(20, disk=50), desktop(21, disk=30)]
    violations = image_violations([FIN, LAB], {"finance": arm + small, "lab": [desktop(30)]},
                                  {("img-win11", False): replace(WIN11, min_disk=60), ("img-ubuntu", False): None})
    single = ImageCheckFailed([Violation(FIN, Rule.TYPE, "the catalogue has it as a gold image, the manifest says private")])
    with pytest.raises(MassRebuildRefused) as refused:
        refuse_mass_rebuild(safety_plan(), allowed=False)
    check_golden("refusals.txt", "\n".join([str(ImageCheckFailed(violations)), str(single), str(refused.value)]) + "\n")
