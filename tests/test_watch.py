"""`reconciler watch` against a served simulator: drift corrected within two cycles, windows
honoured, metrics that match the simulator, readiness, notifications, and SIGTERM mid-apply.
The watch runs as a subprocess; tests synchronise on its log lines, never on sleeps."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from watch_support import (
    CREDENTIALS,
    Sink,
    WatchProcess,
    checked_status,
    desktops,
    fleet,
    group,
    metric_samples,
    write_manifests,
)

from reconciler.cli import main


@pytest.fixture
def watches(reconciler_command: list[str]) -> Iterator[Callable[..., WatchProcess]]:
    started: list[WatchProcess] = []

    def start(path: Path, *args: str, env: dict[str, str] | None = None) -> WatchProcess:
        started.append(WatchProcess(reconciler_command, path, *args, env=env))
        return started[-1]

    yield start
    for process in started:
        process.close()


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    """The manifest directory (the served fleet files live in tmp_path itself)."""
    return tmp_path / "manifests"


@pytest.fixture
def sinks() -> Iterator[Callable[..., Sink]]:
    made: list[Sink] = []

    def make(status: int = 200) -> Sink:
        made.append(Sink(status))
        return made[-1]

    yield make
    for sink in made:
        sink.close()


def apply(path: Path) -> None:
    result = CliRunner().invoke(main, ["apply", str(path), "--auto-approve", "--wait"], env=CREDENTIALS)
    assert result.exit_code == 0, result.output


def rebuilds(sim: Any) -> dict[str, int]:
    return {i: d["rebuild_count"] for i, d in sim.desktops().items()}


FIN = desktops("fin", 3)
LAB = desktops("lab", 2)


def test_drift_is_rebuilt_back_within_two_cycles_exactly_once(mdir: Path, serve_fleet: Any, watches: Any) -> None:
    sim = serve_fleet(fleet(*FIN, *LAB))
    write_manifests(mdir, sim.url, group("finance", [d["id"] for d in FIN]), group("lab", [d["id"] for d in LAB]))
    apply(mdir)
    watch = watches(mdir, "--interval", "1", "--apply", "drift")
    watch.cycle(1)
    before = rebuilds(sim)
    assert sim.admin.patch("/_simulator/desktops/fin-001", json={"image_id": "img-rogue"}).status_code == 200
    injected_after = watch.last_cycle()

    applied = watch.wait_for(r"^cycle (\d+): ok .*applied: 1 rebuild submitted")
    assert int(applied.group(1)) <= injected_after + 2
    # Two more cycles: the job finishes and is recorded; nothing is sent again.
    done = int(applied.group(1)) + 2
    watch.cycle(done)
    after = rebuilds(sim)
    assert after == {**before, "fin-001": before["fin-001"] + 1}
    assert sim.desktops()["fin-001"]["image_id"] == "img-new"
    assert len([line for line in watch.lines if re.search(r"applied: [1-9]\d* rebuilds? submitted", line)]) == 1


def _window(opens_in_hours: float) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(hours=opens_in_hours)
    end = start + timedelta(hours=2)
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": "UTC"}


def test_a_closed_window_group_is_untouched_while_an_open_one_is_rebuilt(mdir: Path, serve_fleet: Any, watches: Any) -> None:
    sim = serve_fleet(fleet(*FIN, *LAB))
    lab_opens = (datetime.now(UTC) + timedelta(minutes=30)).replace(second=0, microsecond=0)
    write_manifests(mdir, sim.url,
                    group("finance", [d["id"] for d in FIN], window=_window(-1)),  # opened an hour ago
                    group("lab", [d["id"] for d in LAB], window=_window(0.5)))  # opens in half an hour
    watch = watches(mdir, "--interval", "3600", "--apply", "all")
    watch.wait_for(r"^cycle 1: ok .*applied: 3 rebuilds submitted")
    counts = rebuilds(sim)
    assert [counts[d["id"]] for d in FIN] == [1, 1, 1]
    assert [counts[d["id"]] for d in LAB] == [0, 0]
    status = checked_status(watch.http.get("/api/status").json())
    lab = next(g for g in status["groups"] if g["name"] == "lab")
    assert lab["window_open"] is False and datetime.fromisoformat(lab["next_opening"]) == lab_opens
    assert lab["counts"]["waiting"] == 2
    # The next cycle comes when lab's window opens, before the hour of --interval is up.
    assert datetime.fromisoformat(status["next_cycle"]) == lab_opens


def test_metrics_parse_and_match_the_simulator(mdir: Path, serve_fleet: Any, watches: Any) -> None:
    sim = serve_fleet(fleet(*FIN, *desktops("lab", 4, image="img-new")))
    write_manifests(mdir, sim.url, group("finance", [d["id"] for d in FIN], batch_size=2),
                    group("lab", [f"lab-{n:03d}" for n in range(4)]))
    watch = watches(mdir, "--interval", "3600", "--apply", "all")
    watch.cycle(1)
    samples = metric_samples(watch.http.get("/metrics").text)
    stats = sim.admin.get("/_simulator/stats").json()["calls"]

    assert samples[("reconciler_rebuilds_submitted_total", (("group", "finance"),))] == sum(rebuilds(sim).values()) == 3
    api_calls = {dict(labels)["api"] + ":" + dict(labels)["code"]: value
                 for (name, labels), value in samples.items() if name == "reconciler_api_calls_total"}
    assert api_calls == {f"{api}:{code}": float(n) for api, outcomes in stats.items() for code, n in outcomes.items()}
    assert samples[("reconciler_desktops", (("group", "lab"), ("status", "current")))] == 4  # lab adopted: current
    assert samples[("reconciler_desktops", (("group", "finance"), ("status", "waiting")))] == 3  # rebuilding now
    assert samples[("reconciler_plan_changes", (("action", "rebuild"), ("group", "finance"), ("reason", "not_recorded")))] == 3
    assert samples[("reconciler_last_cycle_success", ())] == 1
    assert samples[("reconciler_cycle_duration_seconds_count", ())] == 1
    assert samples[("reconciler_lock_busy_total", ())] == 0
    jobs = json.loads((mdir / ".reconciler" / "state.json").read_text())["jobs"]
    assert sum(v for (n, _), v in samples.items() if n == "reconciler_rebuild_jobs") == len(jobs) == 2


def test_readyz_flips_on_broken_manifests_and_cycle_failed_is_notified_once(
    mdir: Path, serve_fleet: Any, watches: Any, sinks: Any
) -> None:
    sim = serve_fleet(fleet(*FIN))
    write_manifests(mdir, sim.url, group("finance", [d["id"] for d in FIN]))
    sink = sinks()
    watch = watches(mdir, "--interval", "0.5", "--apply", "none", "--notify", sink.url)
    watch.cycle(1)
    assert watch.http.get("/readyz").status_code == 200
    good = (mdir / "manifests.yaml").read_text()
    (mdir / "manifests.yaml").write_text(good.replace("kind: DesktopGroup", "kind: DesktopGroupp"))
    failed = watch.wait_for(r"^cycle (\d+): FAILED .*manifests: .*last good manifests")
    ready = watch.http.get("/readyz")
    assert ready.status_code == 503 and "last good manifests" in ready.text
    watch.cycle(int(failed.group(1)) + 1)  # fails again: notified once only
    status = checked_status(watch.http.get("/api/status").json())
    assert status["ready"] is False and status["groups"][0]["name"] == "finance"  # still reconciling finance
    (mdir / "manifests.yaml").write_text(good)
    watch.wait_for(r"^cycle \d+: ok", after=watch.index(r"^cycle %s: FAILED" % (int(failed.group(1)) + 1)))
    assert watch.http.get("/readyz").status_code == 200
    assert watch.terminate() == 0
    assert sink.events().count("cycle_failed") == 1


def test_each_event_reaches_the_sink_once(mdir: Path, serve_fleet: Any, reconciler_command: list[str], sinks: Any) -> None:
    sim = serve_fleet(fleet(*FIN))
    ids = [d["id"] for d in FIN]
    write_manifests(mdir, sim.url, group("finance", ids))
    apply(mdir)
    sim.admin.patch("/_simulator/desktops/fin-000", json={"image_id": "img-rogue", "fail_rebuilds": True})
    sim.admin.patch("/_simulator/desktops/fin-002", json={"image_id": "img-rogue"})
    write_manifests(mdir, sim.url, group("finance", ids, wait=True, batch_size=1))
    sink = sinks()
    watch = WatchProcess(reconciler_command, mdir, "--once", "--apply", "drift", "--notify", sink.url)
    try:
        # A failed rebuild is reported (events, metrics, status page), not a failed cycle.
        assert watch.process.wait(timeout=60) == 0, "\n".join(watch.lines)
    finally:
        watch.close()
    assert sorted(sink.events()) == ["apply_finished", "apply_started", "drift_detected", "group_halted", "rebuild_failed"]
    drift = next(b for b in sink.bodies if b["event"] == "drift_detected")
    assert drift["desktop_ids"] == ["fin-000", "fin-002"] and drift["groups"] == {"finance": 2}
    assert all(path == "/hook/SECRET-TOKEN-123?key=ALSO-SECRET" for path in sink.paths)


def test_a_failing_sink_never_fails_the_cycle_and_is_counted(mdir: Path, serve_fleet: Any, watches: Any, sinks: Any) -> None:
    sim = serve_fleet(fleet(*FIN))
    write_manifests(mdir, sim.url, group("finance", [d["id"] for d in FIN]))
    sink = sinks(status=500)
    watch = watches(mdir, "--interval", "3600", "--apply", "all", "--notify", sink.url)
    watch.wait_for(r"^cycle 1: ok .*applied: 3 rebuilds submitted")
    # apply_started and apply_finished, each tried three times, then given up and counted.
    watch.wait_for(r"notification apply_finished to http://127\.0\.0\.1:\d+/\*\*\* failed")
    samples = metric_samples(watch.http.get("/metrics").text)
    assert samples[("reconciler_notifications_failed_total", ())] == 2
    assert samples[("reconciler_last_cycle_success", ())] == 1
    assert len(sink.bodies) == 6
    assert watch.terminate() == 0
    assert not any("SECRET" in line for line in watch.lines)


def test_sigterm_during_an_apply_exits_0_and_the_restart_rebuilds_nothing_twice(
    mdir: Path, serve_fleet: Any, watches: Any
) -> None:
    fleet_desktops = desktops("fin", 12)
    sim = serve_fleet(fleet(*fleet_desktops, latency_seconds=0.2, job_seconds=0.5))
    write_manifests(mdir, sim.url, group("finance", [d["id"] for d in fleet_desktops], batch_size=1))
    watch = watches(mdir, "--interval", "3600", "--apply", "all")
    watch.wait_for(r"rebuild of 1 desktop submitted")
    assert watch.terminate(signal.SIGTERM, timeout=10) == 0
    assert any("deferred to a later run (stopping)" in line for line in watch.lines)
    state_dir = mdir / ".reconciler"
    assert not (state_dir / "state.json.journal").exists() or (state_dir / "state.json.journal").read_text() == ""
    state = json.loads((state_dir / "state.json").read_text())
    recorded = {i for i, r in state["desktops"].items() if r.get("job")}
    sent = {i for i, n in rebuilds(sim).items() if n}
    assert recorded == sent and 0 < len(sent) < 12

    restart = watches(mdir, "--once", "--apply", "all")
    assert restart.process.wait(timeout=60) == 0, "\n".join(restart.lines)
    counts = rebuilds(sim)
    assert max(counts.values()) == 1 and sum(counts.values()) == 12


def test_two_replicas_on_one_postgres_state_never_apply_at_once(mdir: Path, serve_fleet: Any, watches: Any) -> None:
    from harness.backends import PG_DSN, postgres_schema

    fleet_desktops = desktops("fin", 6)
    # Canary jobs that take long: the first replica holds the lock while it waits for its canary.
    sim = serve_fleet(fleet(*fleet_desktops, job_seconds=60))
    with postgres_schema("watch") as schema:
        state = {"backend": "postgres", "name": "replicas", "postgres": {"conn_str": PG_DSN, "schema": schema}}
        write_manifests(mdir, sim.url, group("finance", [d["id"] for d in fleet_desktops], canary=1), state=state)
        first = watches(mdir, "--interval", "3600", "--apply", "all")
        first.wait_for(r"rebuild of 1 desktop submitted")
        second = watches(mdir, "--interval", "3600", "--apply", "all", "--lock-timeout", "0")
        second.cycle(1)
        assert "another run holds the lock: reported only" in second.lines[second.index(r"^cycle 1")]
        samples = metric_samples(second.http.get("/metrics").text)
        assert samples[("reconciler_lock_busy_total", ())] == 1
        assert samples.get(("reconciler_rebuilds_submitted_total", (("group", "finance"),)), 0) == 0
        # The reporting replica sees the applier's canary through the shared journal.
        finance = checked_status(second.http.get("/api/status").json())["groups"][0]
        assert finance["counts"]["waiting"] == 1 and finance["counts"]["pending"] == 5
        assert first.terminate() == 0  # stops waiting for the canary at once
        assert second.terminate() == 0
        assert sorted(rebuilds(sim).values()) == [0, 0, 0, 0, 0, 1]


def test_apply_notify_sends_the_same_events(mdir: Path, serve_fleet: Any, sinks: Any) -> None:
    sim = serve_fleet(fleet(*FIN))
    write_manifests(mdir, sim.url, group("finance", [d["id"] for d in FIN]))
    apply(mdir)
    sim.admin.patch("/_simulator/desktops/fin-002", json={"image_id": "img-rogue"})
    sink = sinks()
    result = CliRunner().invoke(main, ["apply", str(mdir), "--auto-approve", "--notify", sink.url], env=CREDENTIALS)
    assert result.exit_code == 0, result.output
    assert sink.events() == ["drift_detected", "apply_started", "apply_finished"]
    assert sink.bodies[2]["summary"]["rebuilds_submitted"] == 1 and "SECRET" not in result.output


def test_watch_once_exits_1_when_its_cycle_fails(mdir: Path, serve_fleet: Any) -> None:
    sim = serve_fleet(fleet(*FIN))
    write_manifests(mdir, sim.url, group("finance", [d["id"] for d in FIN]))
    wrong = {**CREDENTIALS, "HW_SECRET_KEY": "not-the-secret"}
    result = CliRunner().invoke(main, ["watch", str(mdir), "--once", "--listen", "127.0.0.1:0"], env=wrong)
    assert result.exit_code == 1
    assert "cycle 1: FAILED" in result.output and "not-the-secret" not in result.output


def git(*args: str, cwd: Path) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]
    done = subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_git_pull_fast_forwards_before_the_cycle_and_reports_the_commit(tmp_path: Path, serve_fleet: Any) -> None:
    sim = serve_fleet(fleet(*FIN))
    origin, author, deployed = tmp_path / "origin.git", tmp_path / "author", tmp_path / "deployed"
    git("init", "--bare", "-q", str(origin), cwd=tmp_path)
    git("clone", "-q", str(origin), str(author), cwd=tmp_path)
    write_manifests(author / "manifests", sim.url, group("finance", [d["id"] for d in FIN], image="img-old"))
    git("add", "-A", cwd=author)
    git("commit", "-qm", "finance on img-old", cwd=author)
    git("push", "-q", "origin", "HEAD:main", cwd=author)
    git("clone", "-q", "--branch", "main", str(origin), str(deployed), cwd=tmp_path)
    # A reviewed change lands after the deployed checkout was made: the watch must pull it first.
    write_manifests(author / "manifests", sim.url, group("finance", [d["id"] for d in FIN], image="img-new"))
    git("commit", "-qam", "finance on img-new", cwd=author)
    git("push", "-q", "origin", "HEAD:main", cwd=author)
    head = git("rev-parse", "HEAD", cwd=author)

    args = ["watch", str(deployed / "manifests"), "--git-pull", "--once", "--apply", "all", "--listen", "127.0.0.1:0"]
    result = CliRunner().invoke(main, args, env=CREDENTIALS)
    assert result.exit_code == 0, result.output
    assert f"cycle 1 at {head[:12]}: ok" in result.output and "applied: 3 rebuilds submitted" in result.output

    git("commit", "-q", "--allow-empty", "-m", "local change", cwd=deployed)  # diverged: no fast-forward
    git("commit", "-q", "--allow-empty", "-m", "upstream change", cwd=author)
    git("push", "-q", "origin", "HEAD:main", cwd=author)
    result = CliRunner().invoke(main, args, env=CREDENTIALS)
    assert result.exit_code == 1 and "cycle 1: FAILED" in result.output and "git pull" in result.output


def test_the_mass_rebuild_guard_holds_for_a_watch(mdir: Path, serve_fleet: Any) -> None:
    sim = serve_fleet(fleet(*FIN))
    write_manifests(mdir, sim.url, group("finance", [d["id"] for d in FIN]), safety={"max_rebuilds_per_run": 2})
    args = ["watch", str(mdir), "--once", "--apply", "all", "--listen", "127.0.0.1:0"]
    result = CliRunner().invoke(main, args, env=CREDENTIALS)
    assert result.exit_code == 1 and "cycle 1: FAILED" in result.output
    assert "3 rebuilds exceed safety.max_rebuilds_per_run = 2" in result.output
    assert sum(rebuilds(sim).values()) == 0
