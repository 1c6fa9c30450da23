"""The world a harness trial runs in: a served simulator, a manifest directory, the CLI in
subprocesses, and the checks that hold after every kill and after convergence.

Everything is observed from the outside, as an operator would: the simulator's admin API says
what the cloud did, the files say what reconciler recorded. The only reconciler code used is
``reconciler.state`` to fold a leftover journal exactly as the next run would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import yaml

from harness.backends import RemoteRun, StateView, StoreView, TrialBackend
from reconciler.state import State, StateError, fold, state_from_json, state_to_json

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "AKHARNESS00000001", "harness-simulated-secret"
OLD_IMAGE, NEW_IMAGE = "img-old", "img-new"
# A run that takes longer than this is reported as hung (a problem of the trial, not a crash).
RUN_TIMEOUT = float(os.environ.get("RECONCILER_HARNESS_RUN_TIMEOUT", "900"))
# The API timeout of the runs.
TIMEOUT_SECONDS = 2
# How late a lost rebuild call may still land. A run waits this long after one of its calls was
# lost before it looks the call up, and a run that starts right after a kill up to this long (plus
# a second) for the dead run's last calls: short keeps trials fast.
LOST_CALL_HORIZON_SECONDS = 4


@dataclass(frozen=True)
class GroupSpec:
    """One desktop group of a trial: ``count`` desktops tagged ``dept={name}``, ``current`` of
    them already on the desired image (adopted, never rebuilt)."""

    name: str
    count: int
    batch_size: int = 100
    canary: int = 0
    max_in_flight: int | None = None
    current: int = 0

    def describe(self) -> str:
        parts = [f"{self.name}:{self.count}", f"b{self.batch_size}"]
        parts += [f"canary{self.canary}"] if self.canary else []
        parts += [f"mif{self.max_in_flight}"] if self.max_in_flight else []
        return "/".join(parts)


def fleet_document(seed: int, groups: Sequence[GroupSpec], *, job_seconds: float, unmanaged: int = 5,
                   faults: dict[str, float] | None = None) -> dict[str, Any]:
    """A fleet file: the groups' desktops on the old image (some already current) and a few
    desktops no group manages, which must never be touched."""
    generate = [{"count": unmanaged, "name_prefix": "other-", "image_id": OLD_IMAGE, "tags": {"dept": "other"}}]
    for g in groups:
        if g.count > g.current:
            generate.append({"count": g.count - g.current, "name_prefix": f"{g.name}-", "image_id": OLD_IMAGE, "tags": {"dept": g.name}})
        if g.current:
            generate.append({"count": g.current, "name_prefix": f"{g.name}-cur-", "image_id": NEW_IMAGE, "tags": {"dept": g.name}})
    return {
        "project_id": PROJECT,
        "credentials": [{"ak": AK, "sk": SK}],
        "images": [{"id": OLD_IMAGE, "type": "private"}, {"id": NEW_IMAGE, "type": "private"}],
        "generate": generate,
        "behaviour": {"seed": seed, "job_seconds": job_seconds, **(faults or {})},
    }


def write_manifests(root: Path, url: str, groups: Sequence[GroupSpec], *, poll_interval: float = 0.2,
                    state: dict[str, Any] | None = None) -> Path:
    """``state``: the ``spec.state`` block (None: the default local file)."""
    root.mkdir(parents=True, exist_ok=True)
    api = {"rate_limit_per_minute": 100000, "max_concurrent_calls": 4, "timeout_seconds": TIMEOUT_SECONDS,
           "lost_call_horizon_seconds": LOST_CALL_HORIZON_SECONDS, "poll_interval_seconds": poll_interval}
    documents: list[dict[str, Any]] = [
        {"apiVersion": "reconciler/v1", "kind": "Settings", "spec": {"project_id": PROJECT, "endpoint": url, "api": api}}
    ]
    if state:
        documents[0]["spec"]["state"] = state
    for g in groups:
        rollout: dict[str, Any] = {"batch_size": g.batch_size, "canary": g.canary, "max_in_flight": g.max_in_flight, "delay_time": 0}
        documents.append({
            "apiVersion": "reconciler/v1", "kind": "DesktopGroup", "metadata": {"name": g.name},
            "spec": {"desktops": {"selector": {"tags": {"dept": g.name}}},
                     "image": {"id": NEW_IMAGE, "type": "private"}, "rollout": rollout},
        })
    (root / "manifests.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return root


class ServedSimulator:
    """``reconciler simulator serve`` in a subprocess, and its admin API."""

    def __init__(self, fleet: dict[str, Any], directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "fleet.yaml"
        path.write_text(yaml.safe_dump(fleet))
        # stderr to a file: a pipe nobody reads would block the server once it filled up.
        self.log = directory / "simulator.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen([*reconciler_command(), "simulator", "serve", "--fleet", str(path), "--port", "0"],
                                            stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("Simulator listening on "):
            self.process.kill()
            raise RuntimeError(f"the simulator did not start: {line}{self.log.read_text()}")
        self.url = line.split()[-1]
        self.admin = httpx.Client(base_url=self.url, timeout=30)

    def desktops(self) -> dict[str, dict[str, Any]]:
        return {d["id"]: d for d in self.admin.get("/_simulator/desktops").json()["desktops"]}

    def jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = self.admin.get("/_simulator/jobs").json()["jobs"]
        return jobs

    def stop(self) -> None:
        self.admin.close()
        self.process.terminate()
        if self.process.stdout is not None:
            self.process.stdout.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def reconciler_command() -> list[str]:
    """The console script of the running interpreter's environment, as a user would run it."""
    script = Path(sys.executable).with_name("reconciler")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from reconciler.cli import main; main()"]


@dataclass
class Cli:
    """Runs ``reconciler`` against one manifest directory with the simulator's credentials."""

    manifests: Path
    env: dict[str, str] = field(default_factory=dict)
    backend: TrialBackend = field(default_factory=TrialBackend)

    def __post_init__(self) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("HW_", "HUAWEICLOUD_", "RECONCILER_"))}
        # RECONCILER_LOG=info logs every retry, which is how the soak counts the faults it met.
        self.env = {**base, "HW_ACCESS_KEY": AK, "HW_SECRET_KEY": SK, "NO_COLOR": "1", "RECONCILER_LOG": "info", **self.backend.env}
        self.view = self.backend.view(self.manifests)

    def watch(self) -> Any:
        """A watch on what one run writes (``kills.RunFiles`` or its shared-backend twin)."""
        from harness.kills import RunFiles

        return RemoteRun(self.view) if isinstance(self.view, StoreView) else RunFiles(self.state_path)

    @property
    def log(self) -> Path:
        """Every run's command line and output, for post-mortems of a failed trial."""
        return self.manifests.parent / "runs.log"

    @property
    def state_path(self) -> Path:
        return self.manifests / ".reconciler" / "state.json"

    def apply_args(self, wait: bool) -> list[str]:
        return ["apply", str(self.manifests), "--auto-approve", "--json", "--wait" if wait else "--no-wait"]

    def spawn(self, args: Sequence[str]) -> subprocess.Popen[str]:
        """Start a run whose output goes to the log (a pipe nobody reads would block it)."""
        with self.log.open("a") as output:
            output.write(f"$ reconciler {' '.join(args)}\n")
            output.flush()
            return subprocess.Popen([*reconciler_command(), *args], env=self.env, text=True,
                                    stdout=output, stderr=subprocess.STDOUT)

    def run(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run([*reconciler_command(), *args], env=self.env, capture_output=True, text=True,
                                    timeout=RUN_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"`reconciler {' '.join(args)}` hung: no exit within {RUN_TIMEOUT:.0f}s") from None
        with self.log.open("a") as output:
            output.write(f"$ reconciler {' '.join(args)}\n{result.stdout}{result.stderr}[exit {result.returncode}]\n")
        return result


# -- checks ----------------------------------------------------------------------------------


@cache
def _state_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((ROOT / "schemas" / "state.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def durable_problems(view: StateView) -> list[str]:
    """What must hold at every instant, even right after a SIGKILL: the stored state is absent
    or a complete, schema-valid state; a leftover journal folds into it as the next run would,
    into a state that is schema-valid too; and the dead run's lock is free (on s3, whose locks
    outlive their holders, once the operator's force-unlock removed it)."""
    problems = []
    disk = State()
    text = view.document_text()
    if text is not None:
        try:
            data = json.loads(text)
        except ValueError as exc:
            return [f"the {view.kind} state is not JSON: {exc}"]
        problems += [f"state schema: {e.json_path}: {e.message}" for e in _state_validator().iter_errors(data)]
        disk = state_from_json(data, view.kind)
    store = view.store()
    try:
        folded = state_to_json(fold(disk, store.replay()))
        problems += [f"folded state schema: {e.json_path}: {e.message}" for e in _state_validator().iter_errors(folded)]
    except StateError as exc:
        problems.append(f"the journal does not fold: {exc}")
    if store.lock_info() is not None:
        problems.append(f"the lock is still held: {store.lock_info()}")
    return problems


def converged_problems(sim: ServedSimulator, view: StateView, groups: Sequence[GroupSpec]) -> list[str]:
    """The end of every trial: each managed desktop rebuilt exactly once to the desired image
    (or, if it already ran it, never), nothing else touched, every job the cloud issued in the
    state and tied to the desktops it rebuilt, nothing left UNKNOWN or running, no journal."""
    problems = durable_problems(view)
    text = view.document_text()
    if text is None:
        return problems + ["no state was written"]
    state = json.loads(text)
    desktops, jobs = sim.desktops(), sim.jobs()
    problems += _rebuild_problems(desktops, groups)
    issued = {j["id"] for j in jobs}
    if set(state["jobs"]) != issued:
        problems.append(f"jobs issued but not in the state: {sorted(issued - set(state['jobs']))}; "
                        f"in the state but never issued: {sorted(set(state['jobs']) - issued)}")
    rebuilt_by = {s["desktop_id"]: j["id"] for j in jobs for s in j["sub_jobs"]}
    for desktop_id, job_id in rebuilt_by.items():
        record = state["desktops"].get(desktop_id, {}).get("job") or {}
        if record.get("id") != job_id or record.get("status") != "SUCCESS":
            problems.append(f"{desktop_id}: rebuilt by job {job_id}, the state says {record or 'nothing'}")
    unfinished = sorted(i for i, r in state["desktops"].items() if (r.get("job") or {}).get("status") not in (None, "SUCCESS"))
    if unfinished:
        problems.append(f"{len(unfinished)} desktops left unfinished or UNKNOWN, e.g. {unfinished[:3]}")
    open_jobs = sorted(i for i, j in state["jobs"].items() if j["status"] != "SUCCESS")
    if open_jobs:
        problems.append(f"{len(open_jobs)} ledger jobs not SUCCESS, e.g. {[(i, state['jobs'][i]['status']) for i in open_jobs[:3]]}")
    if view.journal_exists():
        problems.append("a journal is left after a clean run")
    stale = view.stale_temp_files()
    if stale:
        problems.append(f"temp files of killed state writes left behind: {stale}")
    return problems


def _rebuild_problems(desktops: dict[str, dict[str, Any]], groups: Sequence[GroupSpec]) -> list[str]:
    problems = []
    managed = {g.name for g in groups}
    for desktop in desktops.values():
        dept = desktop["tags"].get("dept")
        fresh = desktop["name"].startswith(f"{dept}-cur-")
        expected = 1 if dept in managed and not fresh else 0
        if desktop["rebuild_count"] != expected:
            problems.append(f"{desktop['id']} ({desktop['name']}): rebuilt {desktop['rebuild_count']} times, expected {expected}")
        if dept in managed and desktop["image_id"] != NEW_IMAGE:
            problems.append(f"{desktop['id']} ({desktop['name']}): runs {desktop['image_id']}, not {NEW_IMAGE}")
    return problems
