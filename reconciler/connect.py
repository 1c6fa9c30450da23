"""Opening the cloud a settings block points at: a real Workspace endpoint (credentials from the
environment) or the embedded simulator (its state persisted under the manifest directory).
Network and file I/O.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from reconciler.cloud.auth import AkSkAuth, credentials_from_env
from reconciler.cloud.client import WorkspaceClient
from reconciler.cloud.endpoints import (
    endpoint_host,
    iam_endpoint_for,
    is_loopback,
    region_endpoint,
    validate_endpoint,
)
from reconciler.cloud.pacing import RateLimiter
from reconciler.cloud.transport import PacedTransport
from reconciler.errors import ConfigurationError
from reconciler.files import write_atomically
from reconciler.manifest.paths import fleet_problems, simulator_file
from reconciler.model import Settings

if TYPE_CHECKING:
    from reconciler.simulator import Simulator

SIMULATED_ENDPOINT = "http://127.0.0.1"


def paced(inner: httpx.BaseTransport, settings: Settings) -> PacedTransport:
    """``inner`` paced as ``settings.api`` says: one general bucket, and one per operation listed
    in ``limits``, each holding ``burst`` calls."""
    api = settings.api
    per_operation = {name: RateLimiter(rate, burst=api.burst) for name, rate in api.limits}
    return PacedTransport(inner, RateLimiter(api.rate_limit_per_minute, burst=api.burst), per_operation=per_operation)


def environment_proxy(endpoint: str) -> str | None:
    """The proxy ``HTTPS_PROXY``/``NO_PROXY`` name for ``endpoint``, as httpx would pick it for a
    client without a transport of its own."""
    import urllib.request  # only the real cloud needs it

    scheme, _, rest = endpoint.partition("://")
    if urllib.request.proxy_bypass(rest.split("/", 1)[0]):
        return None
    return urllib.request.getproxies().get(scheme)


def check_resolves(endpoint: str, settings: Settings) -> None:
    """Fail at once on a name that does not resolve (a region typo), instead of retrying a
    connection that can never be made."""
    host = endpoint_host(endpoint)
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        field = f"spec.region '{settings.region}'" if settings.region and not settings.endpoint else "spec.endpoint"
        raise ConfigurationError(f"{settings.source}: cannot resolve {host} ({exc.__class__.__name__}): check {field}") from None


def _iam_endpoint(settings: Settings, endpoint: str, env: Mapping[str, str]) -> str:
    if env.get("HW_IAM_ENDPOINT"):
        return validate_endpoint(env["HW_IAM_ENDPOINT"])
    if settings.region:
        return iam_endpoint_for(settings.region)
    # A loopback endpoint is a served simulator, which also answers IAM.
    return endpoint if is_loopback(endpoint_host(endpoint)) else iam_endpoint_for(None)


@contextmanager
def open_client(settings: Settings, env: Mapping[str, str]) -> Iterator[WorkspaceClient]:
    """A client for the settings' cloud; the embedded simulator's state is saved on exit."""
    if settings.simulator_fleet:
        with embedded_simulator(settings) as simulator:
            ak, sk = simulator.credentials or ("", "")
            auth: httpx.Auth = AkSkAuth(ak, sk, project_id=settings.project_id) if ak else httpx.Auth()
            transport = paced(simulator.transport(), settings)
            with WorkspaceClient(SIMULATED_ENDPOINT, settings.project_id, auth, transport=transport,
                                 lost_call_horizon=settings.api.lost_call_horizon) as client:
                yield client
        return
    endpoint = validate_endpoint(settings.endpoint or region_endpoint(settings.region or ""))
    proxy = environment_proxy(endpoint)
    if proxy is None:  # through a proxy, names are the proxy's to resolve
        check_resolves(endpoint, settings)
    auth = credentials_from_env(env, project_id=settings.project_id, iam_endpoint=_iam_endpoint(settings, endpoint, env))
    transport = paced(httpx.HTTPTransport(proxy=proxy), settings)
    with WorkspaceClient(endpoint, settings.project_id, auth, timeout=settings.api.timeout_seconds, transport=transport,
                         lost_call_horizon=settings.api.lost_call_horizon) as client:
        yield client


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def embedded_simulator(settings: Settings) -> Iterator[Simulator]:
    """The simulated cloud of ``simulator.fleet``, continued from where the last command left it.

    Its state lives under the manifest directory (``.reconciler/simulator.json``), never beside
    a state kept elsewhere; editing the fleet file starts the simulated cloud afresh.
    """
    from reconciler.simulator import (  # only the embedded mode needs it
        Simulator,
        load_fleet,
    )

    fleet_path = settings.resolve(settings.simulator_fleet or "")
    # The manifest loader checked these paths; a saved plan carries its settings unchecked.
    problems = fleet_problems(settings)
    if problems:
        raise ConfigurationError(str(problems[0]))
    saved = simulator_file(settings)
    # A first run checks the fleet before creating anything: a fleet that does not load leaves
    # no trace (plan writes nothing it does not need).
    fleet = None if saved.is_file() else load_fleet(fleet_path)
    saved.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_fd = os.open(saved.with_name("simulator.json.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with open(lock_fd, "r+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one command at a time drives the fake cloud
        digest = _digest(fleet_path)
        simulator = None
        if saved.is_file():
            data = json.loads(saved.read_text())
            if data.get("fleet_digest") == digest:
                simulator = Simulator.from_dict(data["simulator"])
        if simulator is None:
            simulator = Simulator(fleet or load_fleet(fleet_path))
        try:
            yield simulator
        finally:
            _save(saved, {"fleet_digest": digest, "simulator": simulator.to_dict()})


def _save(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(data, separators=(",", ":")).encode("utf-8"))
