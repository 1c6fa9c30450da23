"""Rollout rules through the CLI against a served simulator: canaries, failure budgets,
connected users, maintenance windows, the --json event stream, and one state write per run."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
AK, SK = "AKROLLOUT0001", "rollout-secret"
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def fleet(desktops: list[dict[str, Any]], **behaviour: Any) -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "credentials": [{"ak": AK, "sk": SK}],
        "images": [{"id": "img-old", "type": "private"}, {"id": "img-new", "type": "private"}],
        "desktops": desktops,
        "behaviour": {"seed": 9, "job_seconds": 0.3, **behaviour},
    }


def desktops(prefix: str, count: int, dept: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i:02d}", "name": f"{prefix}{i:02d}", "image_id": "img-old", "tags": {"dept": dept}, **extra}
            for i in range(count)]


def write_manifests(root: Path, url: str, groups: dict[str, dict[str, Any]]) -> Path:
    root.mkdir(exist_ok=True)
    documents: list[dict[str, Any]] = [{"apiVersion": "reconciler/v1", "kind": "Settings", "spec": {
        "project_id": PROJECT, "endpoint": url, "api": {"poll_interval_seconds": 0.05, "rate_limit_per_minute": 6000}}}]
    for name, rollout in groups.items():
        documents.append({"apiVersion": "reconciler/v1", "kind": "DesktopGroup", "metadata": {"name": name}, "spec": {
            "desktops": {"selector": {"tags": {"dept": name}}}, "image": {"id": "img-new", "type": "private"}, "rollout": rollout}})
    (root / "manifests.yaml").write_text(yaml.safe_dump_all(documents))
    return root


def cli(command: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HW_ACCESS_KEY": AK, "HW_SECRET_KEY": SK}
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def events(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_canary_wave_is_waited_for_then_the_rest_goes(tmp_path, serve_fleet, reconciler_command) -> None:
    served = serve_fleet(fleet(desktops("a", 6, "apps")))
    write_manifests(tmp_path / "m", served.url, {"apps": {"canary": 2, "batch_size": 10}})
    result = cli(reconciler_command, "apply", "m", "--auto-approve", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stream = events(result)
    kinds = [e["event"] for e in stream]
    assert kinds[0] == "plan" and kinds[-1] == "summary" and all("at" in e for e in stream)
    first_main = kinds.index("wave_started", kinds.index("wave_started") + 1)
    assert "job_finished" in kinds[:first_main]  # the canary job finished before the main wave began
    submitted = [e for e in stream if e["event"] == "batch_submitted"]
    assert [(e["wave"], len(e["desktop_ids"])) for e in submitted] == [("canary", 2), ("main", 4)]
    jobs = sorted(served.jobs(), key=lambda j: j["accepted_at"])
    assert jobs[1]["accepted_at"] >= max(s["finished_at"] for s in jobs[0]["sub_jobs"])


def test_failure_budget_halts_the_group_and_others_carry_on(tmp_path, serve_fleet, reconciler_command) -> None:
    bad = desktops("a", 3, "apps", fail_rebuilds=True)
    fleet_desktops = bad + desktops("a1", 8, "apps") + desktops("b", 3, "docs")
    served = serve_fleet(fleet(fleet_desktops))
    write_manifests(tmp_path / "m", served.url, {
        "apps": {"batch_size": 2, "max_in_flight": 2, "max_failures": 1},
        "docs": {"batch_size": 10},
    })
    result = cli(reconciler_command, "apply", "m", "--auto-approve", "--json", cwd=tmp_path)
    assert result.returncode == 1
    stream = events(result)
    halted = [e for e in stream if e["event"] == "group_halted"]
    assert [h["group"] for h in halted] == ["apps"] and "max_failures" in halted[0]["reason"]
    counts = {i: d["rebuild_count"] for i, d in served.desktops().items()}
    assert sum(counts[f"a1{i:02d}"] for i in range(8)) < 8  # halted before the end
    assert all(counts[f"b{i:02d}"] == 1 for i in range(3))  # the other group finished
    summary = stream[-1]
    assert summary["event"] == "summary" and summary["halted_groups"] == ["apps"] and not summary["ok"]


def test_percentage_budget(tmp_path, serve_fleet, reconciler_command) -> None:
    fleet_desktops = desktops("a", 1, "apps", fail_rebuilds=True) + desktops("a1", 9, "apps")
    served = serve_fleet(fleet(fleet_desktops))
    write_manifests(tmp_path / "m", served.url, {"apps": {"batch_size": 5, "max_failures": "10%"}})
    result = cli(reconciler_command, "apply", "m", "--auto-approve", "--wait", cwd=tmp_path)
    # one failure out of ten is within 10%: the group is not halted, but the run reports it
    assert result.returncode == 1 and "HALTED" not in result.stderr and "Failed a00" in result.stdout
    assert sum(d["rebuild_count"] for d in served.desktops().values()) == 10


def test_connected_users_are_deferred(tmp_path, serve_fleet, reconciler_command) -> None:
    served = serve_fleet(fleet(desktops("a", 4, "apps")))
    served.admin.patch("/_simulator/desktops/a01", json={"login_status": "CONNECTED"})
    write_manifests(tmp_path / "m", served.url, {"apps": {"skip_connected": True}})
    planned = cli(reconciler_command, "plan", "m", "--json", cwd=tmp_path)
    reasons = {c["desktop_id"]: c["reason"] for c in json.loads(planned.stdout)["changes"]}
    assert reasons == {"a00": "not_recorded", "a01": "user_connected", "a02": "not_recorded", "a03": "not_recorded"}
    assert cli(reconciler_command, "apply", "m", "--auto-approve", cwd=tmp_path).returncode == 0
    assert served.desktops()["a01"]["rebuild_count"] == 0
    served.admin.patch("/_simulator/desktops/a01", json={"login_status": "DISCONNECTED"})
    later = cli(reconciler_command, "plan", "m", "--json", cwd=tmp_path)
    rebuilds = [c["desktop_id"] for c in json.loads(later.stdout)["changes"] if c["action"] == "rebuild"]
    assert rebuilds == ["a01"]


def closed_window() -> dict[str, Any]:
    """A window that is certainly closed now: a one-hour window three days from today."""
    day = DAYS[(datetime.now(UTC).weekday() + 3) % 7]
    return {"days": [day], "start": "01:00", "end": "02:00", "timezone": "UTC"}


def test_outside_the_window_nothing_is_rebuilt_unless_overridden(tmp_path, serve_fleet, reconciler_command) -> None:
    served = serve_fleet(fleet(desktops("a", 3, "apps")))
    write_manifests(tmp_path / "m", served.url, {"apps": {"window": closed_window()}})
    planned = cli(reconciler_command, "plan", "m", "--detailed-exitcode", cwd=tmp_path)
    # Deferred rebuilds are still differences: the nightly drift check must see them.
    assert planned.returncode == 2 and "outside_window; then rebuild: not_recorded" in planned.stdout
    assert cli(reconciler_command, "apply", "m", "--auto-approve", cwd=tmp_path).returncode == 0
    assert all(d["rebuild_count"] == 0 for d in served.desktops().values())
    forced = cli(reconciler_command, "apply", "m", "--auto-approve", "--ignore-window", cwd=tmp_path)
    assert forced.returncode == 0 and "Warning: --ignore-window" in forced.stderr
    assert all(d["rebuild_count"] == 1 for d in served.desktops().values())


def test_state_is_written_once_per_run_and_jobs_are_tracked(tmp_path, serve_fleet, reconciler_command) -> None:
    served = serve_fleet(fleet(desktops("a", 30, "apps")))
    write_manifests(tmp_path / "m", served.url, {"apps": {"batch_size": 3}})
    assert cli(reconciler_command, "apply", "m", "--auto-approve", cwd=tmp_path).returncode == 0
    state = json.loads((tmp_path / "m" / ".reconciler" / "state.json").read_text())
    assert state["serial"] == 1 and len(state["jobs"]) == 10  # ten batches, one write
    listed = cli(reconciler_command, "jobs", "-m", "m", cwd=tmp_path)
    assert "Jobs: 10 SUBMITTED" in listed.stdout
    waited = cli(reconciler_command, "jobs", "-m", "m", "--wait", cwd=tmp_path)
    assert waited.returncode == 0 and "Jobs: 10 SUCCESS" in waited.stdout
    again = json.loads((tmp_path / "m" / ".reconciler" / "state.json").read_text())
    assert again["serial"] == 2
    as_json = json.loads(cli(reconciler_command, "jobs", "-m", "m", "--json", cwd=tmp_path).stdout)
    assert {j["status"] for j in as_json["jobs"].values()} == {"SUCCESS"}


@pytest.mark.parametrize("flag", ["--json"])
def test_json_needs_auto_approve(tmp_path, serve_fleet, reconciler_command, flag: str) -> None:
    served = serve_fleet(fleet(desktops("a", 1, "apps")))
    write_manifests(tmp_path / "m", served.url, {"apps": {}})
    result = cli(reconciler_command, "apply", "m", flag, cwd=tmp_path)
    assert result.returncode == 1 and "--auto-approve" in result.stderr


def test_apply_wait_also_waits_for_rebuilds_left_running(tmp_path, serve_fleet, reconciler_command) -> None:
    served = serve_fleet(fleet(desktops("a", 4, "apps"), job_seconds=1.0))
    write_manifests(tmp_path / "m", served.url, {"apps": {}})
    assert cli(reconciler_command, "apply", "m", "--auto-approve", cwd=tmp_path).returncode == 0
    # Nothing to send now, only running jobs: --wait follows them to the end.
    waited = cli(reconciler_command, "apply", "m", "--auto-approve", "--wait", cwd=tmp_path)
    assert waited.returncode == 0, waited.stderr
    state = json.loads((tmp_path / "m" / ".reconciler" / "state.json").read_text())
    assert {j["status"] for j in state["jobs"].values()} == {"SUCCESS"}
    assert {d["job"]["status"] for d in state["desktops"].values()} == {"SUCCESS"}
