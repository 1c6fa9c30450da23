"""The GitOps recipe in examples/gitops, run for real: its workflows' scripts against a served
simulator, the state in a real S3 server, the plan key held by the merge job only.

Each scenario declares the steps it runs, and a last test checks that together they run every
step that calls reconciler. The workflow files themselves are checked in test_gitops_workflows.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from harness.gitops import AK, APPLY, DRIFT, FLEET, ONBOARD, PLAN, PLAN_KEY, SK, WORKFLOWS, Repository, steps

from reconciler.cli import main
from reconciler.model import WEEKDAYS
from reconciler.plan import _checksum
from reconciler.plan_signing import key_id


@pytest.fixture
def repo(tmp_path: Path, serve_fleet: Callable[[dict], Any], s3_server: Any) -> Repository:
    fast = {**FLEET, "behaviour": {**FLEET["behaviour"], "job_seconds": 0.3}}
    return Repository(tmp_path, serve_fleet(fast), s3_server.url, s3_server.new_bucket())


def pull_request(repo: Repository) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """reconciler-plan.yml on a pull request: validate, plan, keep the plan for review."""
    validated, _ = repo.ci.run(PLAN, "Validate the manifests")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    planned, outputs = repo.ci.run(PLAN, "Plan")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    repo.ci.upload(PLAN, "Keep the plan for review")
    return planned, outputs


def merge(repo: Repository) -> tuple[subprocess.CompletedProcess[str], str]:
    """reconciler-apply.yml on the merged commit: plan, sign, compare, apply, report.
    Returns the step that stopped the job (or the apply) and the report."""
    repo.ci.download(APPLY, "Download the reviewed plan")
    planned, _ = repo.ci.run(APPLY, "Plan the merged commit and sign it")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    compared, _ = repo.ci.run(APPLY, "Compare with the reviewed plan")
    last, outcome = compared, "skipped"
    if compared.returncode == 0:
        last, _ = repo.ci.run(APPLY, "Apply the signed plan")
        outcome = "success" if last.returncode == 0 else "failure"
    reported, _ = repo.ci.run(APPLY, "Report", {"steps.apply.outcome": outcome})
    assert reported.returncode == 0, reported.stderr
    return last, (repo.workspace / "outcome.md").read_text()


def reviewed_rebuilds(repo: Repository) -> set[str]:
    plan = json.loads((repo.workspace / "plan.json").read_text())
    return {c["desktop_name"] for c in plan["changes"] if c["action"] == "rebuild"}


def test_a_merge_applies_its_own_signed_plan_when_it_does_what_was_reviewed(repo: Repository) -> None:
    planned, outputs = pull_request(repo)
    assert outputs == {"changes": "true"}
    assert "Plan: 53 to rebuild (0 drifted), 0 to adopt, 0 to forget, 0 waiting." in planned.stdout
    comment = (repo.workspace / "plan.md").read_text()
    assert comment.startswith("### reconciler plan\n") and len(comment) < 65_536 and comment in repo.ci.summary.read_text()
    reviewed = json.loads((repo.workspace / "plan.json").read_text())
    assert "signature" not in reviewed  # the pull request's job has no key

    applied, report = merge(repo)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    merged = json.loads((repo.workspace / "merged.json").read_text())
    assert merged["signature"]["key_id"] == key_id(PLAN_KEY.encode())
    assert "Apply complete: 53 rebuilds submitted" in (repo.workspace / "apply.txt").read_text()
    assert repo.rebuilt() == reviewed_rebuilds(repo)
    assert report.startswith(f"### reconciler apply\n\n:white_check_mark: Applied the plan of the merged commit (signed, key `{key_id(PLAN_KEY.encode())}`)")
    assert "Rebuilds submitted: `engineering-ubuntu` (30), `finance-win11` (13), `training-lab` (10)." in report
    assert "waiting for the maintenance window" not in report
    assert not list(repo.workspace.rglob("state.json")), "the state lives in the bucket, not on the runner"
    assert PLAN_KEY not in (repo.workspace / "merged.json").read_text() + applied.stdout + report


def test_a_merged_commit_that_differs_from_the_review_is_not_applied(repo: Repository) -> None:
    pull_request(repo)
    repo.edit("training-lab.yaml", "img-win11-2026-11", "img-win10-2025-06")  # main moved on before the merge
    stopped, report = merge(repo)
    assert stopped.returncode == 1 and stopped.stdout.endswith(
        "::error title=reconciler apply::The plan of the merged commit differs from the reviewed plan: nothing was applied. "
        "See the job summary.\n")
    summary = repo.ci.summary.read_text()
    assert "group training-lab: image was" in summary and "#### The merged commit" in summary and "#### The reviewed plan" in summary
    assert summary.index("#### The merged commit") < summary.index("#### The reviewed plan")
    assert repo.rebuilt() == set()
    assert report.startswith("### reconciler apply\n\n:no_entry: Not applied")


def test_a_desktop_that_joined_a_selector_since_the_review_is_listed_and_rolled_out(repo: Repository) -> None:
    pull_request(repo)
    repo.sim.admin.post("/_simulator/desktops", json={"id": "fin-new-desk", "name": "fin-new", "image_id": "img-win10-2025-06",
                                                        "tags": {"dept": "finance"}})
    applied, report = merge(repo)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    compared = (repo.workspace / "compare.txt").read_text()
    assert "Joined a selector since the review (1):\n  fin-new-desk (fin-new): rebuild to img-win11-2026-11 in finance-win11\n" in compared
    assert repo.rebuilt() == reviewed_rebuilds(repo) | {"fin-new"}
    assert "fin-new-desk (fin-new): rebuild to img-win11-2026-11 in finance-win11" in report


def closed_window() -> str:
    """A window on neither today nor tomorrow (UTC): closed now, and for a day at least."""
    today = datetime.now(UTC)
    days = [d for d in WEEKDAYS if d not in {WEEKDAYS[today.weekday()], WEEKDAYS[(today + timedelta(days=1)).weekday()]}]
    return f"{{days: [{', '.join(days)}], start: \"01:00\", end: \"02:00\", timezone: UTC}}"


def test_groups_waiting_for_their_window_are_not_reported_as_applied(repo: Repository) -> None:
    repo.edit("training-lab.yaml", "    delay_time: 0", f"    delay_time: 0\n    window: {closed_window()}")
    pull_request(repo)
    applied, report = merge(repo)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Rebuilds submitted: `engineering-ubuntu` (30), `finance-win11` (13)." in report
    assert ":hourglass: **Not applied yet: waiting for the maintenance window**\n\n- `training-lab`: 10 desktops, window " in report
    assert "`reconciler watch` (the controller) or the nightly `reconciler drift` job" in report
    assert not any(name.startswith("lab-") for name in repo.rebuilt())


def test_a_forged_review_artifact_is_never_applied(repo: Repository) -> None:
    """The pull request's job runs code the pull request controls: say it uploads a plan with a
    rebuild the manifests do not ask for, checksum recomputed. The merge job applies only what it
    planned and signed itself; the forged plan fails the comparison, and its key refuses the
    forged plan outright."""
    pull_request(repo)
    forged_path = repo.ci.artifacts / "reconciler-plan" / "plan.json"
    forged = json.loads(forged_path.read_text())
    forged["changes"].append({**forged["changes"][0], "desktop_id": "hr-desk-1", "desktop_name": "hr-01"})
    forged["checksum"] = _checksum(forged)
    forged_path.write_text(json.dumps(forged))
    stopped, _ = merge(repo)
    assert stopped.returncode == 1 and "desktop hr-desk-1 (hr-01): rebuild to" in (repo.workspace / "compare.txt").read_text()
    env = {"HW_ACCESS_KEY": AK, "HW_SECRET_KEY": SK, "RECONCILER_PLAN_KEY": PLAN_KEY}
    refused = CliRunner().invoke(main, ["-C", str(repo.workspace), "apply", "reviewed/plan.json"], env=env)
    assert refused.exit_code == 1 and "Error: reviewed/plan.json is not signed with this RECONCILER_PLAN_KEY" in refused.stderr
    assert repo.rebuilt() == set()


def test_a_review_overtaken_by_another_merge_is_not_applied(repo: Repository) -> None:
    pull_request(repo)
    shutil.copytree(repo.ci.artifacts, repo.workspace.parent / "first-pr")
    repo.edit("training-lab.yaml", "img-win11-2026-11", "img-win10-2025-06")
    pull_request(repo)  # a second pull request, planned from the same state
    second = repo.workspace.parent / "second-pr"
    shutil.copytree(repo.ci.artifacts, second)

    repo.edit("training-lab.yaml", "img-win10-2025-06", "img-win11-2026-11")  # main as the first merge left it
    shutil.rmtree(repo.ci.artifacts)
    shutil.copytree(repo.workspace.parent / "first-pr", repo.ci.artifacts)
    assert merge(repo)[0].returncode == 0
    repo.settle()
    before = repo.rebuilds()
    repo.edit("training-lab.yaml", "img-win11-2026-11", "img-win10-2025-06")  # then the second merge
    shutil.rmtree(repo.ci.artifacts)
    shutil.copytree(second, repo.ci.artifacts)
    stopped, report = merge(repo)
    assert stopped.returncode == 1 and report.startswith("### reconciler apply\n\n:no_entry: Not applied")
    assert repo.rebuilds() == before  # the review showed 53 rebuilds; 10 are left: a new review is due


def nightly(repo: Repository, expect: str) -> subprocess.CompletedProcess[str]:
    """reconciler-drift.yml: detect; on changes keep the plan, fail, or correct."""
    detected, outputs = repo.ci.run(DRIFT, "Plan against the live fleet")
    assert detected.returncode == 0 and outputs == {"changes": expect}, detected.stdout + detected.stderr
    if expect == "true":
        repo.ci.upload(DRIFT, "Keep the drift plan")
        failed, _ = repo.ci.run(DRIFT, "Fail on drift")
        assert failed.returncode == 1 and failed.stdout.startswith("::error title=reconciler drift::")
        repo.ci.download(DRIFT, "Download the drift plan")
        compared, _ = repo.ci.run(DRIFT, "Plan again, sign and compare")
        assert compared.returncode == 0 and compared.stdout.startswith("The plan carries out what was reviewed"), compared.stdout
        corrected, _ = repo.ci.run(DRIFT, "Apply the signed plan")
        assert corrected.returncode == 0, corrected.stdout + corrected.stderr
        repo.settle()
    return detected


def test_onboarding_then_nightly_drift_checks(repo: Repository) -> None:
    recorded, _ = repo.ci.run(ONBOARD, "Record the live images")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert set(repo.rebuilds().values()) == {0}
    summary = repo.ci.summary.read_text()
    assert "Apply complete: 0 rebuilds submitted in 0 jobs, 53 adopted, 0 forgotten." in summary
    shown, _ = repo.ci.run(ONBOARD, "Show what an apply would do now")
    assert shown.returncode == 0 and "`not_recorded`" not in repo.ci.summary.read_text()
    assert "53 `image_changed` (the group's image changed)" in repo.ci.summary.read_text()

    nightly(repo, "true")  # the rebuilds the manifests ask for, applied by the correct job
    assert nightly(repo, "false").stdout.startswith("No changes.")

    repo.sim.admin.patch("/_simulator/desktops/cfo-desk", json={"image_id": "img-win10-2025-06"})
    repo.sim.admin.post("/_simulator/desktops", json={"id": "fin-new-desk", "name": "fin-new", "image_id": "img-win10-2025-06",
                                                        "tags": {"dept": "finance"}})
    before = repo.rebuilds()
    detected = nightly(repo, "true")
    assert "cfo-01" in detected.stdout and "fin-new" in detected.stdout
    assert "**1 desktop drifted**" in (repo.workspace / "drift.md").read_text()
    after = repo.rebuilds()
    assert {name for name in after if after[name] != before.get(name, 0)} == {"cfo-01", "fin-new"}
    nightly(repo, "false")


def test_validation_failures_become_annotations(repo: Repository) -> None:
    repo.edit("finance.yaml", "    delay_time: 10", "    delay_time: 10\n    dely: 5")
    failed, _ = repo.ci.run(PLAN, "Validate the manifests")
    assert failed.returncode == 1
    assert failed.stdout.startswith("::error file=manifests/finance.yaml,line=20,col=5,title=reconciler validate::"
                                    "spec.rollout: unknown field 'dely'")


def test_the_scenarios_run_every_step_that_calls_reconciler() -> None:
    """Every step whose script runs reconciler is run by a scenario above (by its title here)."""
    scenarios = {
        (PLAN, "Validate the manifests"), (PLAN, "Plan"),
        (APPLY, "Plan the merged commit and sign it"), (APPLY, "Compare with the reviewed plan"),
        (APPLY, "Apply the signed plan"), (APPLY, "Report"),
        (ONBOARD, "Record the live images"), (ONBOARD, "Show what an apply would do now"),
        (DRIFT, "Plan against the live fleet"), (DRIFT, "Fail on drift"),
        (DRIFT, "Plan again, sign and compare"), (DRIFT, "Apply the signed plan"),
    }
    scripted = {(p.name, title) for p in WORKFLOWS.glob("*.yml") for _, title, spec in steps(p.name) if "run" in spec}
    assert scripted - {(name, "Install reconciler") for name in (PLAN, APPLY, DRIFT, ONBOARD)} == scenarios


def test_plan_json_is_the_plan_file_in_one_step(repo: Repository) -> None:
    env = {"HW_ACCESS_KEY": AK, "HW_SECRET_KEY": SK}
    manifests, saved = str(repo.workspace / "manifests"), repo.workspace / "plan.json"
    result = CliRunner().invoke(main, ["plan", manifests, "--json", "-o", str(saved), "--detailed-exitcode"], env=env)
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout) == json.loads(saved.read_text())
    assert result.stderr == ""


def test_an_apply_with_nothing_to_do_keeps_open_plans_valid(repo: Repository) -> None:
    env = {"HW_ACCESS_KEY": AK, "HW_SECRET_KEY": SK}
    manifests = str(repo.workspace / "manifests")
    assert CliRunner().invoke(main, ["apply", manifests, "--auto-approve", "--wait"], env=env).exit_code == 0
    repo.settle()
    open_pr = repo.workspace / "open-pr.json"
    repo.edit("training-lab.yaml", "img-win11-2026-11", "img-win10-2025-06")
    assert CliRunner().invoke(main, ["plan", manifests, "-o", str(open_pr)], env=env).exit_code == 0
    repo.edit("training-lab.yaml", "img-win10-2025-06", "img-win11-2026-11")
    noop = CliRunner().invoke(main, ["apply", manifests, "--auto-approve"], env=env)  # e.g. a docs-only merge
    assert noop.exit_code == 0 and "No changes" in noop.stdout
    repo.edit("training-lab.yaml", "img-win11-2026-11", "img-win10-2025-06")  # the open pull request's manifests
    applied = CliRunner().invoke(main, ["apply", str(open_pr)], env=env)
    assert applied.exit_code == 0, applied.stderr  # today: "Error: the plan is stale: ... serial 1 ... (serial 2)"
