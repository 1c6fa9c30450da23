"""The ``Simulator``: one simulated Workspace project as a WSGI app and an httpx transport.

No I/O of its own: the clock and the sleep used for injected latency are injected, the state
is handed out and taken back as JSON-able data (``to_dict`` / ``from_dict``) for callers that
persist it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from reconciler.simulator.app import WorkspaceApp
from reconciler.simulator.spec import Behaviour, FleetSpec
from reconciler.simulator.state import SimState
from reconciler.simulator.wsgi import ConnectionDropped

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class SimulatorTransport(httpx.WSGITransport):
    """In-process transport; an injected dropped connection surfaces as on a real socket."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except ConnectionDropped:
            # Same exception httpx raises when a server closes the connection without a response.
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request) from None


class Simulator:
    """A simulated Huawei Cloud Workspace project.

    ``clock`` returns epoch seconds (tests pass a fake one); ``sleep`` is used for
    ``latency_seconds`` only. Thread-safe: the app serialises model access with one lock.
    """

    def __init__(self, fleet: FleetSpec, clock: Clock = time.time, sleep: Sleep = time.sleep) -> None:
        self._setup(SimState(fleet, clock()), clock, sleep)

    def _setup(self, state: SimState, clock: Clock, sleep: Sleep) -> None:
        self._state = state
        self._clock = clock
        self.app = WorkspaceApp(state, clock, sleep)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], clock: Clock = time.time, sleep: Sleep = time.sleep) -> Simulator:
        """Restore a simulator saved with `to_dict`; its jobs carry on by the given clock."""
        sim = cls.__new__(cls)
        sim._setup(SimState.from_dict(data, clock()), clock, sleep)
        return sim

    def to_dict(self) -> dict[str, Any]:
        """The whole mutable state (desktops, jobs, tokens, counters, random states, behaviour)."""
        return self._state.to_dict()

    def transport(self, remote_addr: str = "127.0.0.1") -> httpx.BaseTransport:
        """An httpx transport that calls the app in-process."""
        return SimulatorTransport(app=self.app, remote_addr=remote_addr)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The fleet's first (ak, sk) pair, or None."""
        creds = self._state.credentials
        return (creds[0].ak, creds[0].sk) if creds else None

    @property
    def project_id(self) -> str:
        return self._state.project_id

    @property
    def auth_required(self) -> bool:
        return self._state.auth.required

    @property
    def behaviour(self) -> Behaviour:
        return self._state.behaviour

    def settle(self) -> None:
        """Apply finished jobs up to the clock's now (requests do this themselves)."""
        with self._state.lock:
            self._state.settle(self._clock())
