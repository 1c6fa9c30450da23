"""Serving over a socket: threads, real dropped connections, and the `simulator serve` command."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from reconciler.simulator import Simulator, load_fleet, load_fleet_data
from reconciler.simulator.cli import simulator
from reconciler.simulator.server import make_server

FIXTURE = Path(__file__).parent / "fixtures" / "simulator-sdk.yaml"
P = "proj1"


def fleet_data(**behaviour: Any) -> dict[str, Any]:
    return {
        "project_id": P,
        "images": [{"id": "img-1", "type": "gold"}, {"id": "img-2", "type": "gold"}],
        "generate": [{"count": 200, "name_prefix": "pc", "image_id": "img-1"}],
        "behaviour": {"job_seconds": 30, **behaviour},
    }


@pytest.fixture
def served() -> Generator[tuple[Simulator, str], None, None]:
    sim = Simulator(load_fleet_data(fleet_data()))
    server = make_server(sim.app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield sim, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_served_requests_and_real_drops(served: tuple[Simulator, str]) -> None:
    _, url = served
    with httpx.Client(base_url=url, timeout=5) as client:
        response = client.get(f"/v2/{P}/desktops/detail", params={"limit": 2})
        assert response.status_code == 200 and response.json()["total_count"] == 200
        assert response.headers["X-Request-Id"]
        ids = [d["id"] for d in client.get("/_simulator/desktops").json()["desktops"]]
        client.put("/_simulator/faults", json={"drop_after_rate": 1})
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(f"/v2/{P}/desktops/rebuild", json={"desktop_ids": ids[:1], "image_type": "gold", "image_id": "img-2"})
        assert client.get(f"/_simulator/desktops/{ids[0]}").json()["rebuild_count"] == 1
        client.put("/_simulator/faults", json={"drop_after_rate": 0, "drop_before_rate": 1})
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(f"/v2/{P}/desktops/rebuild", json={"desktop_ids": ids[1:2], "image_type": "gold", "image_id": "img-2"})
        assert client.get(f"/_simulator/desktops/{ids[1]}").json()["rebuild_count"] == 0


def test_concurrent_rebuilds_are_consistent(served: tuple[Simulator, str]) -> None:
    _, url = served
    with httpx.Client(base_url=url, timeout=10) as admin:
        ids = [d["id"] for d in admin.get("/_simulator/desktops").json()["desktops"]]

    shared = httpx.Client(base_url=url, timeout=10)  # httpx clients are thread-safe

    def rebuild(desktop_id: str) -> int:
        body = {"desktop_ids": [desktop_id], "image_type": "gold", "image_id": "img-2"}
        return shared.post(f"/v2/{P}/desktops/rebuild", json=body).status_code

    # Every desktop twice, from 8 threads: exactly one of each pair is accepted, the other is busy.
    with shared, ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(rebuild, ids[:50] * 2))
    assert codes.count(200) == 50 and codes.count(409) == 50
    with httpx.Client(base_url=url, timeout=10) as admin:
        desktops = admin.get("/_simulator/desktops").json()["desktops"]
        assert [d["rebuild_count"] for d in desktops[:50]] == [1] * 50
        assert len(admin.get("/_simulator/jobs").json()["jobs"]) == 50


def test_cli_reports_bad_fleets_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("project_id: p\nimages: [{id: i, type: tin}]\n")
    result = CliRunner().invoke(simulator, ["serve", "--fleet", str(bad), "--port", "0"])
    assert result.exit_code == 1
    assert f"Error: {bad}:2: images[0].type: must be one of gold, private, market" in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(simulator, ["serve", "--fleet", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 1 and "cannot read the fleet file" in missing.output


def test_cli_refuses_remote_hosts_without_the_flag() -> None:
    result = CliRunner().invoke(simulator, ["serve", "--fleet", str(FIXTURE), "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "--allow-remote" in result.output


def test_cli_reports_a_busy_port() -> None:
    sim = Simulator(load_fleet(FIXTURE))
    server = make_server(sim.app, "127.0.0.1", 0)
    try:
        result = CliRunner().invoke(simulator, ["serve", "--fleet", str(FIXTURE), "--port", str(server.server_port)])
    finally:
        server.server_close()
    assert result.exit_code == 1 and "cannot listen on 127.0.0.1" in result.output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_signals(signum: int, reconciler_command: list[str]) -> None:
    command = [*reconciler_command, "simulator", "serve", "--fleet", str(FIXTURE), "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("Simulator listening on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        assert httpx.get(f"http://127.0.0.1:{port}/_simulator/faults", timeout=5).status_code == 200
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()
