"""Just enough of GitHub Actions to run the GitOps recipe's workflows (examples/gitops) for real.

The `run:` scripts of the example workflows run verbatim in bash, as GitHub runs them
(`bash -eo pipefail`), with GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, the workflow's env and the
secrets. The few `uses:` actions between them are stood in for: artifacts are copied; comments,
issues and API look-ups are GitHub's side and are not run. The manifests point at a served
simulator and keep their state in a real S3 server (moto), as the recipe keeps it in OBS.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gitops"
WORKFLOWS = EXAMPLE / ".github" / "workflows"
BIN = Path(sys.executable).parent  # where the `reconciler` console script is installed
FLEET = yaml.safe_load((EXAMPLE / "simulator" / "fleet.yaml").read_text())
AK, SK = FLEET["credentials"][0]["ak"], FLEET["credentials"][0]["sk"]
PLAN_KEY = "gitops-test-plan-key-0123456789abcdef-0123456789"
SECRETS = {
    "RECONCILER_READ_ACCESS_KEY": AK, "RECONCILER_READ_SECRET_KEY": SK, "RECONCILER_READ_PG_CONN_STR": "",
    "RECONCILER_ACCESS_KEY": AK, "RECONCILER_SECRET_KEY": SK, "RECONCILER_PG_CONN_STR": "",
    "RECONCILER_PLAN_KEY": PLAN_KEY,
}
PLAN, APPLY, DRIFT, ONBOARD = "reconciler-plan.yml", "reconciler-apply.yml", "reconciler-drift.yml", "reconciler-onboard.yml"
EXPRESSION = re.compile(r"\$\{\{ (secrets\.\w+|steps\.\w+\.(?:outcome|outputs\.\w+)) \}\}")


def workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(job, step title, step) of every step, titled by name, else by what it uses."""
    return [(job, step.get("name", step.get("uses", "")), step)
            for job, spec in workflow(name)["jobs"].items() for step in spec["steps"]]


def step(name: str, title: str) -> dict[str, Any]:
    return next(s for _, t, s in steps(name) if t == title)


class Actions:
    """Runs the example's steps in order, in one workspace."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.artifacts = workspace.parent / "artifacts"
        self.summary = workspace.parent / "step-summary.md"
        self.ran: set[tuple[str, str, str]] = set()

    def _env(self, name: str, job: str, spec: dict[str, Any], context: dict[str, str]) -> dict[str, str]:
        flow = workflow(name)
        declared = {**flow.get("env", {}), **flow["jobs"][job].get("env", {}), **spec.get("env", {})}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HW_", "HUAWEICLOUD_", "RECONCILER_"))}
        env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", RUNNER_TEMP=str(self.workspace.parent / "tmp"),
                   GITHUB_STEP_SUMMARY=str(self.summary), GITHUB_OUTPUT=str(self.workspace.parent / "output"))
        for key, value in declared.items():
            found = EXPRESSION.fullmatch(str(value))
            assert found or "${{" not in str(value), f"{name}: {key}: an expression the harness does not know"
            if found is None:
                env[key] = str(value)
            elif found.group(1).startswith("secrets."):
                env[key] = SECRETS[found.group(1).removeprefix("secrets.")]
            else:
                env[key] = context[found.group(1)]
        return env

    def run(self, name: str, title: str, context: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
        """Run a step's script as GitHub does (bash -eo pipefail); return it and its outputs.
        ``context``: values of step expressions, such as ``steps.apply.outcome``."""
        job, _, spec = next(s for s in steps(name) if s[1] == title)
        env = self._env(name, job, spec, context or {})
        Path(env["GITHUB_OUTPUT"]).write_text("")
        Path(env["RUNNER_TEMP"]).mkdir(exist_ok=True)
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", spec["run"]],
                              cwd=self.workspace, env=env, capture_output=True, text=True, timeout=120)
        self.ran.add((name, job, title))
        outputs = dict(line.split("=", 1) for line in Path(env["GITHUB_OUTPUT"]).read_text().splitlines())
        return done, outputs

    def upload(self, name: str, title: str) -> None:
        spec = step(name, title)["with"]
        target = self.artifacts / spec["name"]
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for line in spec["path"].split():
            shutil.copy(self.workspace / line, target)

    def download(self, name: str, title: str) -> None:
        spec = step(name, title)["with"]
        target = self.workspace / spec["path"]
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.artifacts / spec["name"], target)


class Repository:
    """A checkout of the example repository: its fleet served by a simulator, its state in a
    bucket of a real S3 server (the recipe's OBS)."""

    def __init__(self, root: Path, simulator: Any, s3_url: str, bucket: str) -> None:
        self.sim = simulator
        self.workspace = root / "workspace"
        shutil.copytree(EXAMPLE, self.workspace, ignore=shutil.ignore_patterns(".reconciler", "simulator"))
        settings = self.workspace / "manifests" / "settings.yaml"
        text = settings.read_text()
        for old, new in (("  region: cn-north-4\n  state:", f"  endpoint: {simulator.url}\n  state:"),
                         ("bucket: acme-reconciler-state", f"bucket: {bucket}"),
                         ("endpoint: https://obs.cn-north-4.myhuaweicloud.com", f"endpoint: {s3_url}"),
                         ("      region: cn-north-4", "      region: us-east-1"),
                         ("addressing_style: virtual", "addressing_style: path"),
                         ("rate_limit_per_minute: 100", "rate_limit_per_minute: 60000"),
                         ("poll_interval_seconds: 15", "poll_interval_seconds: 0.1")):
            assert old in text, old
            text = text.replace(old, new)
        settings.write_text(text)
        self.ci = Actions(self.workspace)

    def edit(self, manifest: str, old: str, new: str) -> None:
        path = self.workspace / "manifests" / manifest
        assert old in path.read_text(), old
        path.write_text(path.read_text().replace(old, new))

    def rebuilds(self) -> dict[str, int]:
        return {d["name"]: d["rebuild_count"] for d in self.sim.desktops().values()}

    def rebuilt(self) -> set[str]:
        return {name for name, count in self.rebuilds().items() if count}

    def settle(self) -> None:
        """Let the simulated rebuild jobs finish (they take job_seconds)."""
        deadline = time.monotonic() + 20
        while any(d["task_status"] for d in self.sim.desktops().values()) and time.monotonic() < deadline:
            time.sleep(0.1)
