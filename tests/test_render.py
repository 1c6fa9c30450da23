"""Rendering plans for terminals and pull requests: golden files of a representative plan,
drift highlighting, refresh-only framing, Markdown safety and size on large fleets.

Regenerate the golden files after an intended change of the output with
``UPDATE_GOLDEN=1 python -m pytest tests/test_render.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import render
from reconciler.model import Action, Change, DesktopGroup, Image, Location, Reason, Rollout, Settings
from reconciler.plan import Plan
from reconciler.render import compact

GOLDEN = Path(__file__).parent / "golden"
GITHUB_COMMENT_LIMIT = 65_536
A, R = Action, Reason


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs; if intended, rerun with UPDATE_GOLDEN=1"


def group(name: str, image: str, file: str, line: int = 4, image_type: str = "private") -> DesktopGroup:
    return DesktopGroup(name, Image(image, image_type), Rollout(), source=Location(f"manifests/{file}", line))


ENG = group("engineering-ubuntu", "img-ubuntu-24-04", "engineering.yaml", image_type="gold")
FIN = group("finance-win11", "img-win11-2026-11", "finance.yaml", 5)
LAB = group("training-lab", "img-win11-2026-11", "labs.yaml", 7)
SETTINGS = Settings(project_id="0a1b2c3d4e5f60718293a4b5c6d7e8f9", region="cn-north-4", base_dir="manifests",
                    source=Location("manifests/settings.yaml", 3))
WINDOW = "window sat,sun 22:00-06:00 Asia/Shanghai opens 2026-11-28T22:00+08:00"


def change(desktop: str, action: Action, reason: Reason, grp: DesktopGroup | str, before: str | None,
           name: str | None = None, **extra: Any) -> Change:
    name_ = name if name is not None else desktop.replace("-desk", "")
    if isinstance(grp, str):
        return Change(desktop, action, reason, grp, name_, before, None, **extra)
    after = before if reason is R.LIVE_IMAGE else grp.image.id
    return Change(desktop, action, reason, grp.name, name_, before, after, **extra)


def representative() -> Plan:
    """One of every kind of entry a reviewer meets, in the planner's (id) order."""
    changes = [
        change("eng-001-desk", A.REBUILD, R.NOT_RECORDED, ENG, "img-ubuntu-22-04", wave="canary"),
        change("eng-002-desk", A.REBUILD, R.IMAGE_CHANGED, ENG, "img-ubuntu-22-04", wave="main"),
        change("eng-003-desk", A.ADOPT, R.ALREADY_CURRENT, ENG, "img-ubuntu-24-04"),
        change("eng-004-desk", A.REBUILD, R.DRIFT, ENG, "img-ubuntu-20-04", wave="main"),
        change("eng-005-desk", A.WAIT, R.IN_PROGRESS, ENG, "img-ubuntu-22-04", detail="f5facff141085fea"),
        change("eng-006-desk", A.REBUILD, R.RETRY_FAILED, ENG, "img-ubuntu-22-04", wave="main"),
        change("eng-007-desk", A.WAIT, R.USER_CONNECTED, ENG, "img-ubuntu-22-04"),
        change("fin-0001-desk", A.REBUILD, R.IMAGE_CHANGED, FIN, "img-win10-2025-06", wave="main"),
        change("fin-0002-desk", A.REBUILD, R.DRIFT, FIN, "img-win10-2025-06", name="fin|0002 <a&b>", wave="main"),
        change("fin-0003-desk", A.FORGET, R.REMOVED_FROM_MANIFESTS, FIN.name, "img-win11-2026-11"),
        change("kiosk-01-desk", A.FORGET, R.REMOVED_FROM_MANIFESTS, "old-kiosk", "img-win10-2025-06"),
        change("kiosk-02-desk", A.FORGET, R.REMOVED_FROM_MANIFESTS, "old-kiosk", None, name=""),
        change("lab-001-desk", A.WAIT, R.OUTSIDE_WINDOW, LAB, "img-win10-2025-06", detail=WINDOW),
        change("lab-002-desk", A.WAIT, R.OUTSIDE_WINDOW, LAB, "img-win10-2025-06", detail=WINDOW),
    ]
    return Plan(
        changes=tuple(changes), groups=(ENG, FIN, LAB), lineage="6f1c2b9e-8d7a-4c3b-9e2f-1a0b9c8d7e6f", serial=7,
        refreshed=True, manifest_digest="sha256:3b1f0c9d8e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c", settings=SETTINGS,
        created_at="2026-11-27T12:00:00+00:00",
    )


def refresh_only() -> Plan:
    changes = [
        change("eng-001-desk", A.ADOPT, R.LIVE_IMAGE, ENG, "img-ubuntu-22-04"),
        change("eng-003-desk", A.ADOPT, R.ALREADY_CURRENT, ENG, "img-ubuntu-24-04"),
        change("fin-0001-desk", A.ADOPT, R.LIVE_IMAGE, FIN, "img-win10-2025-06"),
    ]
    return replace(representative(), changes=tuple(changes), lineage=None, serial=0, ignore_window=True)


def tagged(text: str, **kwargs: Any) -> str:
    """A visible stand-in for colour, so a golden file pins which lines are highlighted how."""
    marks = ",".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    return f"<{marks}>{text}</>"


# -- golden files ----------------------------------------------------------------------------


def test_text_plan_golden() -> None:
    check_golden("plan.txt", render.plan_text(representative()))


def test_full_text_plan_golden() -> None:
    check_golden("plan.full.txt", render.plan_text(representative(), full=True))


def test_text_plan_styled_golden() -> None:
    check_golden("plan.styled.txt", render.plan_text(representative(), tagged, full=True))


def test_markdown_plan_golden() -> None:
    check_golden("plan.md", render.plan_markdown(representative()))


def test_refresh_only_golden() -> None:
    check_golden("refresh-only.txt", render.plan_text(refresh_only(), full=True))
    check_golden("refresh-only.md", render.plan_markdown(refresh_only()))


# -- text ------------------------------------------------------------------------------------


def test_drift_is_marked_apart_from_intended_changes() -> None:
    styled = render.plan_text(representative(), tagged, full=True)
    drift_lines = [line for line in styled.splitlines() if "[drift]" in line]
    assert len(drift_lines) == 2
    assert all("<bold=True,fg=magenta>  ! rebuild" in line for line in drift_lines)
    assert styled.splitlines()[0].startswith("<bold=True,fg=magenta>Drift: 2 desktops were changed outside reconciler")
    intended = [line for line in styled.splitlines() if "[image_changed]" in line]
    assert intended and all("<bold=True,fg=yellow>  ~ rebuild" in line for line in intended)


def test_text_groups_list_what_needs_attention_first() -> None:
    text = render.plan_text(representative(), full=True)
    eng = text.split("# group engineering-ubuntu")[1].split("\n\n")[0]
    ids = re.findall(r"^  \S \w+ +(eng-\d+-desk)", eng, flags=re.M)
    # canary first (it is rebuilt first), drift, failed retries, other rebuilds, adopt, waits
    assert ids == ["eng-001-desk", "eng-004-desk", "eng-006-desk", "eng-002-desk", "eng-003-desk",
                   "eng-005-desk", "eng-007-desk"]
    assert "#   4 to rebuild (1 canary first, 1 drifted), 1 to adopt, 2 waiting" in eng
    assert "(engineering.yaml:4)" in eng  # relative to the manifest directory, as on any runner


def test_every_desktop_has_one_greppable_line() -> None:
    plan = representative()
    text = render.plan_text(plan, full=True)
    for entry in plan.changes:
        lines = [line for line in text.splitlines() if entry.desktop_id in line]
        assert len(lines) == 1 and lines[0].lstrip().startswith(f"{render.symbol(entry)} {entry.action.value}")


def test_partial_plans_say_so() -> None:
    plan = replace(representative(), refreshed=False, targets=("finance-win11",), excludes=("fin-0002-desk",), ignore_window=True)
    head = render.plan_text(plan).split("reconciler will perform")[0]
    assert "Warning: No refresh: planned from the recorded state only" in head
    assert "Warning: Partial plan (--target finance-win11 --exclude fin-0002-desk)" in head
    assert "Warning: Maintenance windows are ignored (--ignore-window)." in head
    markdown = render.plan_markdown(plan)
    assert markdown.count("> [!IMPORTANT]") == 3


def test_no_changes_and_waiting_only() -> None:
    empty = replace(representative(), changes=())
    assert render.plan_text(empty) == "No changes. The desktops match the manifests.\n"
    assert render.plan_text(empty, refresh_only=True) == "No changes. The state already records the live image of every managed desktop.\n"
    assert "No changes. The desktops match the manifests." in render.plan_markdown(empty)
    waiting = replace(representative(), changes=tuple(c for c in representative().changes if c.action is A.WAIT))
    text = render.plan_text(waiting)
    assert "Plan: 0 to rebuild (0 drifted), 0 to adopt, 0 to forget, 4 waiting." in text
    assert "No changes to make now; the waiting desktops are picked up by a later run." in text
    assert "[in_progress; job f5facff141085fea]" in render.plan_text(waiting, full=True)


def test_refresh_only_shows_what_it_records() -> None:
    text = render.plan_text(refresh_only(), full=True)
    assert text.startswith("reconciler will record the live image of 3 desktops in the state (refresh-only):")
    assert "+ adopt   eng-001-desk (eng-001)  record img-ubuntu-22-04  [live_image; the group wants img-ubuntu-24-04]" in text
    assert "Refresh-only: nothing is rebuilt. 2 desktops run an image other than their group's;" in text
    assert "ignore" not in text.lower()  # refresh-only ignores windows internally; that is no caveat


# -- Markdown --------------------------------------------------------------------------------


def table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def cells(row: str) -> int:
    """Cells of a GFM table row: pipes not escaped with a backslash."""
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_markdown_counts_come_first() -> None:
    markdown = render.plan_markdown(representative())
    summary, details = markdown.split("#### Desktops")
    # "now": what the desktops to rebuild (or waiting to be) run; the most common first
    assert "| `engineering-ubuntu` | `img-ubuntu-22-04` ×5, `img-ubuntu-20-04` ×1 → `img-ubuntu-24-04` | 4 | 1 | 1 | – | 2 |" in summary
    assert "| `old-kiosk` | _removed from the manifests_ | – | – | – | 2 | – |" in summary
    assert "| **total** | | **6** | **2** | **1** | **3** | **4** |" in summary
    assert "> [!WARNING]\n> **2 desktops drifted**" in summary
    assert details.count("<details>") == 4 and details.count("</details>") == 4


def test_markdown_keeps_names_from_the_cloud_inert() -> None:
    """A desktop name is whatever someone typed in the console: it must not break the table,
    inject HTML, or @mention people in the pull request."""
    name = "x | y <script>alert(1)</script> ``z` **b** @octo-org/admins\nnext"
    plan = replace(representative(), changes=(replace(representative().changes[0], desktop_name=name),))
    markdown = render.plan_markdown(plan)
    row = next(r for r in table_rows(markdown) if "eng-001-desk" in r)
    assert cells(row) == 5, row
    assert "| ```x \\| y <script>alert(1)</script> ``z` **b** @octo-org/admins next``` |" in row  # one code span
    assert "\nnext" not in markdown


def test_markdown_tables_keep_their_shape() -> None:
    markdown = render.plan_markdown(representative())
    summary, details = markdown.split("#### Desktops")
    assert {cells(row) for row in table_rows(summary)} == {7}
    assert {cells(row) for row in table_rows(details)} == {5}


def fleet_plan(groups: int, per_group: int, drift_every: int = 50) -> Plan:
    members = [group(f"team-{g:04d}", f"img-new-{g % 3}", f"team-{g:04d}.yaml") for g in range(groups)]
    changes = []
    for g, grp in enumerate(members):
        for i in range(per_group):
            desktop = f"{g:04d}{i:04d}-5cee-4fd0-8857-a83cf65b{i:04d}"
            reason = R.DRIFT if i % drift_every == 0 else R.IMAGE_CHANGED
            changes.append(change(desktop, A.REBUILD, reason, grp, "img-old", name=f"pc-{g}-{i}"))
    return replace(representative(), changes=tuple(changes), groups=tuple(members))


@pytest.mark.parametrize("groups,per_group", [(1, 5000), (25, 200), (3000, 1)], ids=["one-big-group", "25-groups", "3000-groups"])
def test_markdown_fits_a_github_comment_on_large_fleets(groups: int, per_group: int) -> None:
    plan = fleet_plan(groups, per_group)
    markdown = render.plan_markdown(plan)
    assert len(markdown) <= render.MARKDOWN_MAX_CHARS < GITHUB_COMMENT_LIMIT
    total, drift = groups * per_group, sum(c.reason is R.DRIFT for c in plan.changes)
    assert f"**Plan: {total} to rebuild ({drift} drifted), 0 to adopt, 0 to forget, 0 waiting.**" in markdown
    assert f"**{drift} desktops drifted**" in markdown
    assert markdown.rstrip().endswith("</sub>")  # never cut mid-way
    if groups <= 25:
        assert all(f"<b>team-{g:04d}</b>" in markdown for g in range(groups))  # every group keeps its list
        shown = int(re.search(r"#### Desktops \((\d+) of 5000 shown\)", markdown).group(1))  # type: ignore[union-attr]
        hidden = sum(int(n) for n in re.findall(r"… and (\d+) more desktops", markdown))
        assert shown + hidden == 5000 and shown >= 400  # as many as fit, not a fixed handful
        assert len(markdown) > render.MARKDOWN_MAX_CHARS * 0.9
    else:
        assert "more groups" in markdown and "the plan file lists them all" in markdown


def test_markdown_lists_every_desktop_when_it_fits() -> None:
    markdown = render.plan_markdown(fleet_plan(2, 150))
    assert "#### Desktops\n" in markdown and "more desktop" not in markdown
    assert len(table_rows(markdown.split("#### Desktops")[1])) == 2 * (150 + 2)


def test_text_plan_of_a_large_fleet_stays_scannable() -> None:
    plan = fleet_plan(25, 200)
    text = render.plan_text(plan, full=True)
    lines = text.splitlines()
    entries = [line for line in lines if re.match(r"  [~!+=-] ", line)]
    assert len(entries) == 5000
    assert Counter(line.split()[0] for line in entries) == {"~": 4900, "!": 100}
    assert lines[0].startswith("Drift: 100 desktops were changed outside reconciler")
    assert sum(1 for line in lines if line.startswith("#   ")) == 25


def test_the_default_view_of_a_fleet_plan_fits_a_screen_and_shows_every_drift() -> None:
    """A 2,400-desktop plan: a header per group, names several to a line, ordinary buckets cut
    with "… and N more", every drifted desktop named, nothing wider than 100 columns."""
    plan = fleet_plan(12, 200, drift_every=13)
    lines = render.plan_text(plan).splitlines()
    assert len(plan.changes) == 2400 and len(lines) <= 200
    assert max(len(line) for line in lines) <= 100
    text = "\n".join(lines)
    drifted = [c.desktop_name for c in plan.changes if c.reason is R.DRIFT]
    assert drifted and all(re.search(rf"\b{re.escape(name)}(,|$)", text, flags=re.M) for name in drifted)
    hidden = sum(int(n) for n in re.findall(r"… and (\d+) more", text))
    shown = sum(len(re.findall(r"\bpc-\d+-\d+\b", line)) for line in lines if line.startswith("  ") or line.startswith("      "))
    assert shown + hidden == 2400
    assert sum(line.startswith("# group team-") for line in lines) == 12


def test_the_default_view_keeps_long_ids_and_images_within_100_columns() -> None:
    long_image = "2f5b0000-1111-2222-3333-444444444444"
    grp = group("a-group-with-a-rather-long-name-for-the-finance-department-x", long_image, "finance-department.yaml")
    changes = tuple(
        change(f"3f1c{i:04d}-0000-4000-8000-00000000{i:04d}", A.REBUILD, R.DRIFT if i % 2 else R.RETRY_FAILED, grp,
               f"9a770000-{i % 3:04d}-4000-8000-000000000000", name="")
        for i in range(40))
    plan = replace(representative(), changes=changes, groups=(grp,))
    lines = render.plan_text(plan).splitlines()
    assert max(len(line) for line in lines) <= 100
    assert all(c.desktop_id in "\n".join(lines) for c in plan.changes)  # drift and retries: all listed


@given(st.lists(st.text(alphabet="abcdefghij-0123456789|<>", min_size=1, max_size=80), min_size=1, max_size=300))
def test_packed_names_keep_every_name_within_the_width(names: list[str]) -> None:
    first = "  ~ rebuild [image_changed] (3): "
    lines = compact.pack(names, first, compact.INDENT)
    assert all(len(line) <= 100 or line.count(",") <= 1 for line in lines)  # only a lone overlong name sticks out
    body = [lines[0][len(first):], *(line[len(compact.INDENT):] for line in lines[1:])]
    assert " ".join(body) == ", ".join(names)
