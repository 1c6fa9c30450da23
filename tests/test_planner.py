"""The planner's decision table, rollout shaping, and its properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cloud.models import Desktop
from reconciler.model import Action, DesktopGroup, Image, Location, Reason, Rollout, Selector, Window
from reconciler.planner import Inventory, PlanError, PlanOptions, plan
from reconciler.state import DesktopRecord, JobRef, State

D, OLD, OTHER = "img-desired", "img-old", "img-other"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def group(name: str = "g", ids: tuple[str, ...] = ("d1",), image: str = D, **rollout: object) -> DesktopGroup:
    return DesktopGroup(name, Image(image, "private"), Rollout(**rollout), ids=ids, source=Location(f"{name}.yaml", 3))


def live(desktop_id: str = "d1", image: str | None = OLD, task: str = "", login: str = "REGISTERED", tags: tuple = ()) -> Desktop:
    return Desktop(desktop_id, f"pc-{desktop_id}", "ACTIVE", task, login, image, None, None, tags)


def record(image: str | None = OLD, group_name: str = "g", job: JobRef | None = None) -> DesktopRecord:
    return DesktopRecord(group_name, image, None, job, "2026-11-01T00:00:00+00:00")


def job(status: str, image: str = D) -> JobRef:
    return JobRef("job-1", status, image, "2026-11-27T11:00:00+00:00")


def state_of(**records: DesktopRecord) -> State:
    return State("lineage", 3, MappingProxyType(records))


def inventory(*desktops: Desktop, matches: dict[str, frozenset[str]] | None = None) -> Inventory:
    return Inventory({d.id: d for d in desktops}, matches or {})


def only_change(groups, state, inv):
    result = plan(groups, state, inv, PlanOptions(now=NOW))
    assert len(result.changes) <= 1
    return (result.changes[0].action, result.changes[0].reason) if result.changes else None


TABLE = [
    # (case, record, live desktop (None = no refresh), expected)
    ("job still running (recorded)", record(job=job("RUNNING")), live(), (Action.WAIT, Reason.IN_PROGRESS)),
    ("job submitted, no refresh", record(job=job("SUBMITTED")), None, (Action.WAIT, Reason.IN_PROGRESS)),
    ("lost call not resolved yet", record(job=job("UNKNOWN")._replace(id=None)), None, (Action.WAIT, Reason.IN_PROGRESS)),
    ("live task_status rebuilding", record(), live(task="rebuild_spawning"), (Action.WAIT, Reason.IN_PROGRESS)),
    ("L == D and R == D", record(D), live(image=D), None),
    ("L == D, no record", None, live(image=D), (Action.ADOPT, Reason.ALREADY_CURRENT)),
    ("L == D, R differs", record(OLD), live(image=D), (Action.ADOPT, Reason.ALREADY_CURRENT)),
    ("L == D, recorded in another group", record(D, "old-group"), live(image=D), (Action.ADOPT, Reason.ALREADY_CURRENT)),
    ("L != D, R == L", record(OLD), live(image=OLD), (Action.REBUILD, Reason.IMAGE_CHANGED)),
    ("L != D, no record", None, live(image=OLD), (Action.REBUILD, Reason.NOT_RECORDED)),
    ("L != D, R == D: drift", record(D), live(image=OLD), (Action.REBUILD, Reason.DRIFT)),
    ("L != D, R neither: drift", record(OTHER), live(image=OLD), (Action.REBUILD, Reason.DRIFT)),
    ("no refresh, R != D", record(OLD), None, (Action.REBUILD, Reason.IMAGE_CHANGED)),
    ("no refresh, no record", None, None, (Action.REBUILD, Reason.NOT_RECORDED)),
    ("no refresh, R == D", record(D), None, None),
    ("last job FAILED", record(OLD, job=job("FAILED")), live(image=OLD), (Action.REBUILD, Reason.RETRY_FAILED)),
    ("last job FAILED, no refresh", record(OLD, job=job("FAILED")), None, (Action.REBUILD, Reason.RETRY_FAILED)),
    ("last job FAILED but live is desired", record(OLD, job=job("FAILED")), live(image=D), (Action.ADOPT, Reason.ALREADY_CURRENT)),
    ("last job SUCCESS folded", record(D, job=job("SUCCESS")), live(image=D), None),
]


@pytest.mark.parametrize("case,rec,desktop,expected", TABLE, ids=[row[0] for row in TABLE])
def test_decision_table(case: str, rec, desktop, expected) -> None:
    state = state_of(d1=rec) if rec else state_of()
    inv = inventory(desktop) if desktop else None
    assert only_change([group()], state, inv) == expected


def test_recorded_desktop_in_no_group_is_forgotten() -> None:
    result = plan([group(ids=("d1",))], state_of(d1=record(D), d9=record(OLD, "gone")), inventory(live(image=D), live("d9")))
    assert [(c.desktop_id, c.action, c.reason, c.group) for c in result.changes] == [
        ("d9", Action.FORGET, Reason.REMOVED_FROM_MANIFESTS, "gone")
    ]


def test_forget_waits_for_a_running_job() -> None:
    result = plan([], state_of(d9=record(OLD, "gone", job("RUNNING"))), inventory())
    assert result.changes == ()


def test_listed_but_missing_live_is_an_error_naming_the_file() -> None:
    with pytest.raises(PlanError, match=r"g\.yaml:3: group 'g': desktop d1 not found \(missing\)"):
        plan([group()], state_of(), inventory())


def test_desktop_claimed_by_two_groups_names_both() -> None:
    tagged = replace(group("b", ids=()), selector=Selector(tags=(("dept", "fin"),)))
    inv = inventory(live("d1", tags=(("dept", "fin"),)), matches={"b": frozenset({"d1"})})
    with pytest.raises(PlanError, match=r"desktop d1 is claimed by groups 'a' \(a\.yaml:3\) and 'b' \(b\.yaml:3\)"):
        plan([group("a"), tagged], state_of(), inv)


def test_selector_matches_join_the_group_when_refreshing() -> None:
    tagged = replace(group("b", ids=()), selector=Selector(tags=(("dept", "fin"),)))
    inv = inventory(live("d5"), matches={"b": frozenset({"d5"})})
    result = plan([tagged], state_of(), inv)
    assert [(c.desktop_id, c.group, c.reason) for c in result.changes] == [("d5", "b", Reason.NOT_RECORDED)]


def test_selector_members_are_kept_from_state_without_refresh() -> None:
    tagged = replace(group("b", ids=()), selector=Selector(name="fin-*"))
    result = plan([tagged], state_of(d5=record(OLD, "b")), None)
    assert [(c.desktop_id, c.action) for c in result.changes] == [("d5", Action.REBUILD)]


def test_targets_and_excludes() -> None:
    groups = [group("a", ids=("d1", "d2")), group("b", ids=("d3",))]
    inv = inventory(live("d1"), live("d2"), live("d3"))
    targeted = plan(groups, state_of(), inv, PlanOptions(targets=("a",), excludes=("d2",)))
    assert [c.desktop_id for c in targeted.changes] == ["d1"]
    by_desktop = plan(groups, state_of(), inv, PlanOptions(targets=("d3",)))
    assert [c.desktop_id for c in by_desktop.changes] == ["d3"]
    with pytest.raises(PlanError, match="'nope' names no group or desktop"):
        plan(groups, state_of(), inv, PlanOptions(targets=("nope",)))


def test_plan_carries_lineage_serial_and_is_sorted() -> None:
    groups = [group("z", ids=("d2",)), group("a", ids=("d3", "d1"))]
    result = plan(groups, state_of(), inventory(live("d1"), live("d2"), live("d3")))
    assert (result.lineage, result.serial, result.refreshed) == ("lineage", 3, True)
    assert [(c.group, c.desktop_id) for c in result.changes] == [("a", "d1"), ("a", "d3"), ("z", "d2")]


# -- rollout shaping -------------------------------------------------------------------------


def test_canary_wave_takes_the_first_desktops() -> None:
    g = group(ids=("d3", "d1", "d2"), canary=2)
    result = plan([g], state_of(), inventory(live("d1"), live("d2"), live("d3")))
    assert [(c.desktop_id, c.wave) for c in result.changes] == [("d1", "canary"), ("d2", "canary"), ("d3", "main")]


def test_canary_already_proven_in_an_earlier_run_is_not_repeated() -> None:
    g = group(ids=("d1", "d2", "d3"), canary=1)
    state = state_of(d1=record(D, job=job("SUCCESS")))
    result = plan([g], state, inventory(live("d1", image=D), live("d2"), live("d3")))
    assert [(c.desktop_id, c.wave) for c in result.changes] == [("d2", "main"), ("d3", "main")]


def test_connected_users_are_deferred_when_asked() -> None:
    g = group(ids=("d1", "d2"), skip_connected=True)
    result = plan([g], state_of(), inventory(live("d1", login="CONNECTED"), live("d2", login="DISCONNECTED")))
    assert [(c.desktop_id, c.action, c.reason) for c in result.changes] == [
        ("d1", Action.WAIT, Reason.USER_CONNECTED),
        ("d2", Action.REBUILD, Reason.NOT_RECORDED),
    ]


def test_outside_window_waits_and_says_when_it_opens() -> None:
    window = Window(time(22, 0), time(6, 0), "Asia/Shanghai", frozenset({5, 6}))
    g = group(window=window)
    friday_noon = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai, a Friday
    result = plan([g], state_of(), inventory(live()), PlanOptions(now=friday_noon))
    change = result.changes[0]
    assert (change.action, change.reason) == (Action.WAIT, Reason.OUTSIDE_WINDOW)
    assert "2026-11-28T22:00+08:00" in (change.detail or "")
    ignored = plan([g], state_of(), inventory(live()), PlanOptions(now=friday_noon, ignore_window=True))
    assert ignored.changes[0].action is Action.REBUILD
    saturday_night = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)  # 23:30 Saturday in Shanghai
    assert plan([g], state_of(), inventory(live()), PlanOptions(now=saturday_night)).changes[0].action is Action.REBUILD


# -- properties ------------------------------------------------------------------------------

IMAGES = st.sampled_from([D, OLD, OTHER])
STATUSES = st.sampled_from(["SUBMITTED", "RUNNING", "SUCCESS", "FAILED"])


@st.composite
def scenarios(draw):
    ids = [f"d{i:02d}" for i in range(draw(st.integers(0, 12)))]
    owners = draw(st.lists(st.sampled_from(["a", "b", None]), min_size=len(ids), max_size=len(ids)))
    groups = [
        group(name, ids=tuple(i for i, o in zip(ids, owners, strict=False) if o == name), image=draw(IMAGES), canary=draw(st.integers(0, 2)))
        for name in ("a", "b")
    ]
    records = {}
    for desktop_id in ids + ["x1", "x2"]:
        if draw(st.booleans()):
            maybe_job = draw(st.one_of(st.none(), st.builds(job, STATUSES, IMAGES)))
            records[desktop_id] = record(draw(IMAGES), draw(st.sampled_from(["a", "b", "old"])), maybe_job)
    desktops = [live(i, image=draw(IMAGES)) for i in ids + ["x1"]]
    return groups, state_of(**records), inventory(*desktops)


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_plans_are_deterministic_and_list_each_desktop_once(scenario, rnd) -> None:
    groups, state, inv = scenario
    first = plan(groups, state, inv, PlanOptions(now=NOW))
    shuffled_groups = list(groups)
    rnd.shuffle(shuffled_groups)
    shuffled_inv = Inventory(dict(sorted(inv.desktops.items(), key=lambda _: rnd.random())), inv.selector_matches)
    assert plan(shuffled_groups, state, shuffled_inv, PlanOptions(now=NOW)) == first
    ids = [c.desktop_id for c in first.changes]
    assert len(ids) == len(set(ids))


def _apply_and_finish(result, state: State, inv: Inventory) -> tuple[State, Inventory]:
    """What an apply followed by finished jobs leaves behind, computed directly."""
    records, desktops = dict(state.desktops), dict(inv.desktops)
    for change in result.changes:
        if change.action is Action.REBUILD:
            desktops[change.desktop_id] = replace(desktops[change.desktop_id], image_id=change.after_image)
            records[change.desktop_id] = record(change.after_image, change.group, job("SUCCESS", change.after_image))
        elif change.action is Action.ADOPT:
            records[change.desktop_id] = record(change.after_image, change.group)
        elif change.action is Action.FORGET:
            del records[change.desktop_id]
        elif change.action is Action.WAIT:
            # the running job finishes successfully
            target = change.after_image
            desktops[change.desktop_id] = replace(desktops[change.desktop_id], image_id=target, task_status="")
            records[change.desktop_id] = record(target, change.group, job("SUCCESS", target))
    for desktop_id, rec in list(records.items()):
        if rec.job is not None and rec.job.in_progress:  # jobs of forgotten-later desktops finish too
            records[desktop_id] = rec._replace(job=rec.job._replace(status="SUCCESS"), image_id=rec.job.image_id)
    return State(state.lineage, state.serial + 1, MappingProxyType(records)), Inventory(desktops, inv.selector_matches)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_after_apply_and_finished_jobs_a_new_plan_is_clean(scenario) -> None:
    groups, state, inv = scenario
    first = plan(groups, state, inv, PlanOptions(now=NOW))
    after_state, after_inv = _apply_and_finish(first, state, inv)
    second = plan(groups, after_state, after_inv, PlanOptions(now=NOW))
    settled, settled_inv = _apply_and_finish(second, after_state, after_inv)
    third = plan(groups, settled, settled_inv, PlanOptions(now=NOW))
    assert not third.has_changes and not third.changes, third.changes


def test_canaries_are_chosen_among_the_targeted_desktops() -> None:
    g = group(ids=("d1", "d2", "d3", "d4"), canary=1)
    inv = inventory(live("d1"), live("d2"), live("d3"), live("d4"))
    excluded = plan([g], state_of(), inv, PlanOptions(excludes=("d1",)))
    assert [(c.desktop_id, c.wave) for c in excluded.changes] == [("d2", "canary"), ("d3", "main"), ("d4", "main")]
    targeted = plan([g], state_of(), inv, PlanOptions(targets=("d3", "d4")))
    assert [(c.desktop_id, c.wave) for c in targeted.changes] == [("d3", "canary"), ("d4", "main")]


def test_drift_outside_the_window_is_deferred_but_still_a_change() -> None:
    window = Window(time(22, 0), time(23, 0), "UTC")
    result = plan([group(window=window)], state_of(d1=record(D)), inventory(live(image=OLD)), PlanOptions(now=NOW))
    (change,) = result.changes
    assert (change.action, change.reason, change.pending) == (Action.WAIT, Reason.OUTSIDE_WINDOW, Reason.DRIFT)
    assert change.drifted and result.has_changes and not result.has_actions
