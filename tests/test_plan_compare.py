"""plan-diff: a plan made from the merged commit against the plan that was reviewed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.model import Action, Change, DesktopGroup, Image, Reason, Selector, Settings
from reconciler.plan import Plan, plan_to_json
from reconciler.plan_compare import compare, comparison_text

A, R = Action, Reason
ENG = DesktopGroup("engineering", Image("img-ubuntu-24-04", "gold"), selector=Selector(tags=(("dept", "engineering"),)))
FIN = DesktopGroup("finance", Image("img-win11", "private"), ids=("fin-1", "fin-2"))
SETTINGS = Settings(project_id="p1", region="cn-north-4")


def change(desktop: str, action: Action, reason: Reason, group: DesktopGroup, pending: Reason | None = None) -> Change:
    return Change(desktop, action, reason, group.name, desktop.upper(), "img-old", group.image.id, pending=pending)


def plan(*changes: Change, groups: tuple[DesktopGroup, ...] = (ENG, FIN), **fields: object) -> Plan:
    made = Plan(changes=changes, groups=groups, lineage="l", serial=1, refreshed=True, settings=SETTINGS)
    return replace(made, **fields)  # type: ignore[arg-type]


REVIEWED = plan(
    change("eng-1", A.REBUILD, R.IMAGE_CHANGED, ENG),
    change("eng-2", A.WAIT, R.OUTSIDE_WINDOW, ENG, pending=R.IMAGE_CHANGED),
    change("eng-3", A.WAIT, R.IN_PROGRESS, ENG),
    change("fin-1", A.REBUILD, R.NOT_RECORDED, FIN),
)


def test_the_same_plan_made_later_agrees() -> None:
    later = plan(
        change("eng-1", A.REBUILD, R.IMAGE_CHANGED, ENG),
        change("eng-2", A.REBUILD, R.IMAGE_CHANGED, ENG),  # the window opened since: the same intent
        change("fin-1", A.REBUILD, R.NOT_RECORDED, FIN),  # eng-3's rebuild finished: not an intent
        serial=2, created_at="later",
    )
    result = compare(REVIEWED, later)
    assert result.same and result.joined == ()
    assert comparison_text(result) == "The plan carries out what was reviewed: the same 2 groups, the same 3 desktops, the same images.\n"


def test_a_desktop_that_joined_a_selector_is_listed_not_a_difference() -> None:
    joined = change("eng-9", A.REBUILD, R.NOT_RECORDED, ENG)
    current = change("eng-8", A.ADOPT, R.ALREADY_CURRENT, ENG)
    result = compare(REVIEWED, replace(REVIEWED, changes=(*REVIEWED.changes, joined, current)))
    assert result.same and result.joined == (current, joined)
    assert "Joined a selector since the review (2):\n  eng-8 (ENG-8): adopt to img-ubuntu-24-04 in engineering\n" in comparison_text(result)


def test_other_differences_are_each_named() -> None:
    drifted = change("eng-7", A.REBUILD, R.DRIFT, ENG)  # a drift since the review is not a joiner
    listed = change("fin-2", A.REBUILD, R.NOT_RECORDED, FIN)  # nor is a desktop a group lists by id
    lab = DesktopGroup("lab", Image("img-win10", "private"), selector=Selector(name="lab-*"))
    other_image = replace(ENG, image=Image("img-ubuntu-22-04", "gold"))
    candidate = plan(
        replace(REVIEWED.changes[0], after_image="img-ubuntu-22-04"), REVIEWED.changes[1], drifted, listed,
        groups=(other_image, FIN, lab), targets=("engineering",),
    )
    result = compare(REVIEWED, candidate)
    assert not result.same and result.joined == ()
    assert result.differences == (
        "group lab: not in the reviewed plan",
        'group engineering: image was {"id":"img-ubuntu-24-04","order_id":null,"os_type":null,"type":"gold"}, '
        'is {"id":"img-ubuntu-22-04","order_id":null,"os_type":null,"type":"gold"}',
        'the plan options differ: {"excludes":[],"ignore_window":false,"refresh_only":false,"replace":[],"targets":[]} in the '
        'reviewed plan, {"excludes":[],"ignore_window":false,"refresh_only":false,"replace":[],"targets":["engineering"]} now',
        "desktop eng-1 (ENG-1): rebuild to img-ubuntu-24-04 in engineering in the reviewed plan, rebuild to img-ubuntu-22-04 in engineering now",
        "desktop eng-7 (ENG-7): nothing in the reviewed plan, rebuild to img-ubuntu-24-04 in engineering now",
        "desktop fin-1 (FIN-1): rebuild to img-win11 in finance in the reviewed plan, nothing now",
        "desktop fin-2 (FIN-2): nothing in the reviewed plan, rebuild to img-win11 in finance now",
    )


def test_other_settings_are_a_difference() -> None:
    elsewhere = replace(REVIEWED, settings=replace(SETTINGS, project_id="p2"))
    assert compare(REVIEWED, elsewhere).differences == ("the settings differ (project, endpoint, state or api)",)
    moved = replace(REVIEWED, settings=replace(SETTINGS, base_dir="/elsewhere"))  # where they were read: no matter
    assert compare(REVIEWED, moved).same


@given(st.sets(st.sampled_from([f"eng-{i}" for i in range(8)])), st.sets(st.sampled_from([f"eng-{i}" for i in range(8)])))
def test_agreement_is_the_same_set_of_intents(before: set[str], after: set[str]) -> None:
    """Without joiners (drifted desktops, not new ones), two plans agree exactly when they
    rebuild the same desktops, and every desktop on one side only is named."""
    reviewed = plan(*(change(d, A.REBUILD, R.DRIFT, ENG) for d in sorted(before)))
    candidate = plan(*(change(d, A.REBUILD, R.DRIFT, ENG) for d in sorted(after)))
    result = compare(reviewed, candidate)
    assert result.same == (before == after)
    assert {line.split(" ")[1] for line in result.differences} == before ^ after


def test_plan_diff_command(tmp_path: Path) -> None:
    reviewed, candidate = tmp_path / "reviewed.json", tmp_path / "merged.json"
    reviewed.write_text(json.dumps(plan_to_json(REVIEWED)))
    candidate.write_text(json.dumps(plan_to_json(replace(REVIEWED, changes=REVIEWED.changes[:1]))))
    same = CliRunner().invoke(main, ["plan-diff", str(reviewed), str(reviewed)])
    assert same.exit_code == 0 and same.stdout.startswith("The plan carries out what was reviewed")
    differs = CliRunner().invoke(main, ["plan-diff", str(reviewed), str(candidate), "--json"])
    assert differs.exit_code == 2
    report = json.loads(differs.stdout)
    assert report["same"] is False and len(report["differences"]) == 2 and report["joined"] == []
    candidate.write_text(candidate.read_text().replace('"serial": 1', '"serial": 5'))
    tampered = CliRunner().invoke(main, ["plan-diff", str(reviewed), str(candidate)])
    assert tampered.exit_code == 1 and "checksum mismatch" in tampered.stderr
