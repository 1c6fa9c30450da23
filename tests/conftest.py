"""Shared fixtures: a fake clock and in-process clients of the simulator."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings as hypothesis_settings

from reconciler.cloud.signing import DATE_HEADER, format_sdk_date, sign
from reconciler.simulator import Simulator

# CI runs the same examples every time (a failure there is reproducible); locally they vary.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

CLOCK_START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
# Lines the crash and fault harnesses print at the end of every run (seeds, trials, figures).
HARNESS_LINES = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def harness_report(request: pytest.FixtureRequest) -> list[str]:
    """Append lines here to have them shown in the terminal summary, even without ``-s``."""
    return request.config.stash.setdefault(HARNESS_LINES, [])


@pytest.fixture
def harness_progress(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Show a line on the terminal at once, even without ``-s``: the harnesses run for minutes."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def show(line: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line(line)

    return show


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(HARNESS_LINES, [])
    if lines:
        terminalreporter.section("crash and fault harnesses")
        for line in lines:
            terminalreporter.write_line(line)


class FakeClock:
    """A clock tests move by hand; `sleep` advances it instead of waiting."""

    def __init__(self, now: float = CLOCK_START) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class SdkSignature(httpx.Auth):
    """Minimal SDK-HMAC-SHA256 signer for tests, dated by a (fake) clock."""

    requires_request_body = True

    def __init__(self, ak: str, sk: str, clock: Callable[[], float], project_id: str | None = None) -> None:
        self.ak, self.sk, self.clock, self.project_id = ak, sk, clock, project_id

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[DATE_HEADER] = format_sdk_date(datetime.fromtimestamp(self.clock(), UTC))
        if self.project_id:
            request.headers["X-Project-Id"] = self.project_id
        signed = {k: v for k, v in request.headers.items() if k.lower() in ("host", "content-type", "x-sdk-date", "x-project-id")}
        request.headers["Authorization"] = sign(request.method, str(request.url), signed, request.content, self.ak, self.sk)
        yield request


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim_client(fake_clock: FakeClock) -> Generator[Callable[..., httpx.Client], None, None]:
    """Factory: an httpx client of a simulator, signing with its first AK/SK unless told otherwise."""
    clients: list[httpx.Client] = []

    def make(sim: Simulator, *, sign_with: tuple[str, str] | None = None, unsigned: bool = False,
             remote_addr: str = "127.0.0.1") -> httpx.Client:
        creds = sign_with or sim.credentials
        auth = None if unsigned or creds is None else SdkSignature(*creds, fake_clock, sim.project_id)
        client = httpx.Client(transport=sim.transport(remote_addr), base_url="http://127.0.0.1", auth=auth)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def reconciler_command() -> list[str]:
    """How to run the `reconciler` CLI in a subprocess: the console script when installed."""
    script = Path(sys.executable).with_name("reconciler")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from reconciler.cli import main; main()"]


class ServedSimulator:
    """`reconciler simulator serve` running in a subprocess on a free loopback port."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.admin = httpx.Client(base_url=url, timeout=10)

    def desktops(self) -> dict[str, dict]:
        return {d["id"]: d for d in self.admin.get("/_simulator/desktops").json()["desktops"]}

    def jobs(self) -> list[dict]:
        return self.admin.get("/_simulator/jobs").json()["jobs"]

    def stop(self) -> None:
        self.admin.close()
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def serve_fleet(tmp_path: Path, reconciler_command: list[str]) -> Generator[Callable[[dict], ServedSimulator], None, None]:
    """Factory: serve a fleet (a dict in the fleet-file format) and return its handle."""

    import yaml

    served: list[ServedSimulator] = []

    def start(fleet: dict) -> ServedSimulator:
        path = tmp_path / f"fleet-{len(served)}.yaml"
        path.write_text(yaml.safe_dump(fleet))
        process = subprocess.Popen([*reconciler_command, "simulator", "serve", "--fleet", str(path), "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("Simulator listening on "), line + (process.stderr.read() if process.stderr else "")
        served.append(ServedSimulator(process, line.split()[-1]))
        return served[-1]

    yield start
    for simulator in served:
        simulator.stop()


@pytest.fixture(scope="session")
def s3_server() -> Generator[Any, None, None]:
    """moto's S3 server on 127.0.0.1 behind recording proxies, shared by the session (each
    test makes a bucket of its own)."""
    from harness.backends import shared_s3_server

    server = shared_s3_server()  # the harness's trials use the same one
    yield server
    server.stop()
