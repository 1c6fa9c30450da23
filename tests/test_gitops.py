"""The GitOps recipe in examples/gitops: its workflows, run for real, and its pre-commit hook.

A small harness plays GitHub Actions: it runs the `run:` scripts of the example workflows
verbatim in bash (with GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, the workflow's env and the secrets
pointing at a served simulator), and stands in for the few `uses:` actions between them
(artifacts are copied; comments and issues are GitHub's side and are not run). Each scenario
declares the steps it runs, and a last test checks that together they run every step that
calls reconciler.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gitops"
WORKFLOWS = EXAMPLE / ".github" / "workflows"
BIN = Path(sys.executable).parent  # where the `reconciler` console script is installed
FLEET = yaml.safe_load((EXAMPLE / "simulator" / "fleet.yaml").read_text())
AK, SK = FLEET["credentials"][0]["ak"], FLEET["credentials"][0]["sk"]
SECRETS = {"RECONCILER_PLAN_ACCESS_KEY": AK, "RECONCILER_PLAN_SECRET_KEY": SK,
           "RECONCILER_ACCESS_KEY": AK, "RECONCILER_SECRET_KEY": SK}


def workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(job, step.get("name", step.get("uses", "")), step)
            for job, spec in workflow(name)["jobs"].items() for step in spec["steps"]]


CLI_CALL = re.compile(r"(?m)^\s*(?:if ! )?reconciler (?:validate|plan|apply|show|state|jobs|force-unlock)\b")


def reconciler_steps() -> set[tuple[str, str, str]]:
    """(workflow, job, step) of every step whose script runs the reconciler CLI."""
    return {(name, job, title) for name in sorted(p.name for p in WORKFLOWS.glob("*.yml"))
            for job, title, step in steps(name) if CLI_CALL.search(step.get("run", ""))}


class Actions:
    """Just enough of a GitHub Actions runner to run the example's steps in order."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.artifacts = workspace.parent / "artifacts"
        self.summary = workspace.parent / "step-summary.md"
        self.ran: set[tuple[str, str, str]] = set()

    def _env(self, name: str, job: str, step: dict[str, Any]) -> dict[str, str]:
        flow = workflow(name)
        declared = {**flow.get("env", {}), **flow["jobs"][job].get("env", {}), **step.get("env", {})}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HW_", "HUAWEICLOUD_"))}
        env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", RUNNER_TEMP=str(self.workspace.parent / "tmp"),
                   GITHUB_STEP_SUMMARY=str(self.summary), GITHUB_OUTPUT=str(self.workspace.parent / "output"))
        for key, value in declared.items():
            secret = re.fullmatch(r"\$\{\{ secrets\.(\w+) \}\}", str(value))
            assert secret or "${{" not in str(value), f"{name}: {key}: only secrets are expressions in run env"
            env[key] = SECRETS[secret.group(1)] if secret else str(value)
        return env

    def run(self, name: str, title: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
        """Run a step's script as GitHub does (bash -eo pipefail); return it and its outputs."""
        job, _, step = next(s for s in steps(name) if s[1] == title)
        env = self._env(name, job, step)
        Path(env["GITHUB_OUTPUT"]).write_text("")
        Path(env["RUNNER_TEMP"]).mkdir(exist_ok=True)
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              cwd=self.workspace, env=env, capture_output=True, text=True, timeout=120)
        self.ran.add((name, job, title))
        outputs = dict(line.split("=", 1) for line in Path(env["GITHUB_OUTPUT"]).read_text().splitlines())
        return done, outputs

    def upload(self, name: str, title: str) -> None:
        spec = next(s for s in steps(name) if s[1] == title)[2]["with"]
        target = self.artifacts / spec["name"]
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for line in spec["path"].split():
            shutil.copy(self.workspace / line, target)

    def download(self, name: str, title: str) -> None:
        spec = next(s for s in steps(name) if s[1] == title)[2]["with"]
        target = self.workspace / spec["path"]
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.artifacts / spec["name"], target)


class Repository:
    """A checkout of the example repository, managing a served copy of its simulated fleet."""

    def __init__(self, root: Path, simulator: Any) -> None:
        self.sim = simulator
        self.workspace = root / "workspace"
        shutil.copytree(EXAMPLE, self.workspace, ignore=shutil.ignore_patterns(".reconciler", "simulator"))
        self.state = root / "runner-state" / "state.json"  # outlives checkouts, as on the runner
        settings = self.workspace / "manifests" / "settings.yaml"
        text = settings.read_text()
        for old, new in (("region: cn-north-4", f"endpoint: {simulator.url}"),
                         ("/var/lib/reconciler/acme-desktops/state.json", str(self.state)),
                         ("rate_limit_per_minute: 100", "rate_limit_per_minute: 60000"),
                         ("poll_interval_seconds: 15", "poll_interval_seconds: 0.1")):
            assert old in text, old
            text = text.replace(old, new)
        settings.write_text(text)
        self.ci = Actions(self.workspace)

    def edit(self, manifest: str, old: str, new: str) -> None:
        path = self.workspace / "manifests" / manifest
        path.write_text(path.read_text().replace(old, new))

    def rebuilds(self) -> dict[str, int]:
        return {d["name"]: d["rebuild_count"] for d in self.sim.desktops().values()}

    def settle(self) -> None:
        """Let the simulated rebuild jobs finish (they take job_seconds)."""
        deadline = time.monotonic() + 20
        while any(d["task_status"] for d in self.sim.desktops().values()) and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture
def repo(tmp_path: Path, serve_fleet: Callable[[dict], Any]) -> Repository:
    fast = {**FLEET, "behaviour": {**FLEET["behaviour"], "job_seconds": 0.3}}
    return Repository(tmp_path, serve_fleet(fast))


PLAN, APPLY, DRIFT, ONBOARD = "reconciler-plan.yml", "reconciler-apply.yml", "reconciler-drift.yml", "reconciler-onboard.yml"


def pull_request(repo: Repository) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """reconciler-plan.yml on a pull request: validate, plan, keep the plan file."""
    validated, _ = repo.ci.run(PLAN, "Validate the manifests")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    planned, outputs = repo.ci.run(PLAN, "Plan")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    repo.ci.upload(PLAN, "Keep the plan file for the apply on merge")
    return planned, outputs


def merge(repo: Repository) -> subprocess.CompletedProcess[str]:
    """reconciler-apply.yml once the pull request is merged."""
    repo.ci.download(APPLY, "Download the plan file")
    applied, _ = repo.ci.run(APPLY, "Apply the reviewed plan")
    return applied


def test_pull_request_plan_then_merge_applies_exactly_that_plan(repo: Repository) -> None:
    planned, outputs = pull_request(repo)
    assert outputs == {"changes": "true"}
    assert "Plan: 53 to rebuild (0 drifted), 0 to adopt, 0 to forget, 0 waiting." in planned.stdout
    comment = (repo.workspace / "plan.md").read_text()
    assert comment.startswith("### reconciler plan\n") and len(comment) < 65_536
    assert "| `engineering-ubuntu` | `img-ubuntu-22-04` → `img-ubuntu-24-04` | 30 |" in comment
    assert comment in repo.ci.summary.read_text()
    reviewed = {c["desktop_name"] for c in json.loads((repo.workspace / "plan.json").read_text())["changes"]}

    applied = merge(repo)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete: 53 rebuilds submitted" in (repo.workspace / "apply.txt").read_text()
    assert {name for name, count in repo.rebuilds().items() if count} == reviewed
    assert repo.ci.ran == SCENARIOS["pull request and merge"]


def test_a_plan_overtaken_by_another_merge_is_refused(repo: Repository) -> None:
    pull_request(repo)
    shutil.copytree(repo.ci.artifacts, repo.workspace.parent / "first-pr")
    repo.edit("training-lab.yaml", "img-win11-2026-11", "img-win10-2025-06")
    pull_request(repo)  # a second pull request, planned from the same state
    second = repo.workspace.parent / "second-pr"
    shutil.copytree(repo.ci.artifacts, second)

    shutil.rmtree(repo.ci.artifacts)
    shutil.copytree(repo.workspace.parent / "first-pr", repo.ci.artifacts)
    repo.edit("training-lab.yaml", "img-win10-2025-06", "img-win11-2026-11")  # main as the first merge left it
    assert merge(repo).returncode == 0
    repo.edit("training-lab.yaml", "img-win11-2026-11", "img-win10-2025-06")  # then the second merge
    shutil.rmtree(repo.ci.artifacts)
    shutil.copytree(second, repo.ci.artifacts)
    refused = merge(repo)
    assert refused.returncode == 1
    # The report step tells a stale plan from a failure by this text.
    assert "the plan is stale" in (repo.workspace / "apply.txt").read_text()


def nightly(repo: Repository, expect: str) -> subprocess.CompletedProcess[str]:
    """reconciler-drift.yml: detect; on changes keep the plan, fail, or correct."""
    detected, outputs = repo.ci.run(DRIFT, "Plan against the live fleet")
    assert detected.returncode == 0 and outputs == {"changes": expect}, detected.stdout + detected.stderr
    if expect == "true":
        repo.ci.upload(DRIFT, "Keep the drift plan")
        failed, _ = repo.ci.run(DRIFT, "Fail on drift")
        assert failed.returncode == 1 and failed.stdout.startswith("::error title=reconciler drift::")
        repo.ci.download(DRIFT, "Download the drift plan")
        corrected, _ = repo.ci.run(DRIFT, "Apply the drift plan")
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
    assert "! rebuild [drift; running img-win10-2025-06] (1): cfo-01" in detected.stdout
    assert re.search(r"~ rebuild \[not_recorded\] \(1\): fin-new$", detected.stdout, flags=re.M)
    assert "**1 desktop drifted**" in (repo.workspace / "drift.md").read_text()
    after = repo.rebuilds()
    assert {name for name in after if after[name] != before.get(name, 0)} == {"cfo-01", "fin-new"}
    nightly(repo, "false")
    assert repo.ci.ran == SCENARIOS["onboarding and nightly"]


def test_validation_failures_become_annotations(repo: Repository) -> None:
    repo.edit("finance.yaml", "    delay_time: 10", "    delay_time: 10\n    dely: 5")
    failed, _ = repo.ci.run(PLAN, "Validate the manifests")
    assert failed.returncode == 1
    assert failed.stdout == (
        "::error file=manifests/finance.yaml,line=20,col=5,title=reconciler validate::"
        "spec.rollout: unknown field 'dely' (expected one of: batch_size, canary, delay_time, max_failures, "
        "max_in_flight, message, skip_connected, wait, window)\n"
    )


SCENARIOS = {
    "pull request and merge": {(PLAN, "plan", "Validate the manifests"), (PLAN, "plan", "Plan"),
                               (APPLY, "apply", "Apply the reviewed plan")},
    "onboarding and nightly": {(ONBOARD, "onboard", "Record the live images"),
                               (ONBOARD, "onboard", "Show what an apply would do now"),
                               (DRIFT, "detect", "Plan against the live fleet"), (DRIFT, "detect", "Fail on drift"),
                               (DRIFT, "correct", "Apply the drift plan")},
}


def test_the_scenarios_run_every_step_that_calls_reconciler() -> None:
    covered = set().union(*SCENARIOS.values())
    assert reconciler_steps() <= covered, reconciler_steps() - covered
    assert len(reconciler_steps()) == 7  # the pattern finds them (a renamed command would fall out)


# -- the workflow files ----------------------------------------------------------------------


def test_workflows_parse_with_the_expected_jobs_and_triggers() -> None:
    assert sorted(p.name for p in WORKFLOWS.iterdir()) == [APPLY, DRIFT, ONBOARD, PLAN]
    plan, apply, drift, onboard = (workflow(n) for n in (PLAN, APPLY, DRIFT, ONBOARD))
    assert list(plan["jobs"]) == ["plan"] and plan["on"]["pull_request"]["paths"] == ["manifests/**"]
    assert plan["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert list(apply["jobs"]) == ["apply"] and apply["on"]["pull_request"]["types"] == ["closed"]
    assert apply["jobs"]["apply"]["if"] == "github.event.pull_request.merged == true"
    assert apply["jobs"]["apply"]["environment"] == "production"
    assert list(drift["jobs"]) == ["detect", "correct"] and set(drift["on"]) == {"schedule", "workflow_dispatch"}
    assert drift["jobs"]["correct"]["needs"] == "detect" and drift["jobs"]["correct"]["environment"] == "production"
    assert list(onboard["jobs"]) == ["onboard"] and set(onboard["on"]) == {"workflow_dispatch"}


def test_the_apply_downloads_what_the_plan_uploaded() -> None:
    uploaded = next(s for _, t, s in steps(PLAN) if t == "Keep the plan file for the apply on merge")["with"]
    find, download = (next(s for _, t, s in steps(APPLY) if t == title)
                      for title in ("Find the reviewed plan", "Download the plan file"))
    assert download["with"]["name"] == uploaded["name"] and download["with"]["run-id"] == "${{ steps.find.outputs.run_id }}"
    assert f"workflow_id: '{PLAN}'" in find["with"]["script"]
    drift_up = next(s for _, t, s in steps(DRIFT) if t == "Keep the drift plan")["with"]
    assert next(s for _, t, s in steps(DRIFT) if t == "Download the drift plan")["with"]["name"] == drift_up["name"]


def test_run_scripts_take_no_expressions() -> None:
    """Pull-request data reaches scripts through env only: no script injection."""
    for name in (PLAN, APPLY, DRIFT, ONBOARD):
        for _, title, step in steps(name):
            assert "${{" not in step.get("run", ""), (name, title)


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
    (checkout / "manifests" / "engineering.yaml").write_text((checkout / "manifests" / "engineering.yaml").read_text().replace("canary: 2", "canary: -2"))
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
    report = json.loads(result.stdout)
    assert report["format_version"] == 1 and report["valid"] is False
    [problem] = report["diagnostics"]
    assert problem["file"].endswith("manifests/finance.yaml") and problem["line"] == 15 and problem["column"] > 0
    assert problem["field"] == "spec.image.type" and problem["severity"] == "error"


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
