"""A fault relay: an HTTP server on loopback in front of a served simulator that plays the gateway
between reconciler and the Workspace API, and faults rebuild calls the ways a real gateway can.

Every request is forwarded unchanged (its ``Host`` header too, so AK/SK signatures still verify);
the answer comes back unchanged, and a connection the simulator drops is dropped here too. A
rebuild call picked for a fault gets one of the ``Fault`` modes. What the simulator then did is
the truth the harness checks the state against: a faulted call may well have created its job.
"""

from __future__ import annotations

import random
import select
import threading
import time
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

REBUILD_PATH = "/desktops/rebuild"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"})
# How long a hung call is held at most, waiting for the client to give up on it.
MAX_HOLD_SECONDS = 60.0


class Fault(StrEnum):
    LATE_504 = "late-504"  # answer 504 at once, forward the request a little later
    GARBLED_200 = "garbled-200"  # forward, answer 200 with a body that is not JSON
    NO_JOB_ID_200 = "no-job-id-200"  # forward, answer 200 with JSON that carries no job_id
    HANG = "hang"  # hold the call until the client gives up (its timeout), then forward it
    DROP_BEFORE = "drop-before"  # close the connection without forwarding
    DROP_AFTER = "drop-after"  # forward, then close the connection without an answer


class _Dropped(Exception):
    """The simulator closed the connection without an answer."""


class FaultRelay:
    """The relay, serving on ``url`` until ``close()``. Which rebuild calls are faulted: each with
    probability ``rate`` (seeded), or — with ``every`` — every ``every``-th one, so a short run
    still meets every mode. Modes are dealt round-robin from ``faults``; ``injected`` counts them.
    A LATE_504 call is forwarded ``late_seconds`` after its answer, a HANG call ``hang_seconds``
    after the client gave up on it: both must stay within the lost-call horizon of the runs."""

    def __init__(self, upstream: str, faults: Sequence[Fault] = tuple(Fault), *, rate: float = 0.0, every: int = 0,
                 seed: int = 1, late_seconds: tuple[float, float] = (0.5, 3.0),
                 hang_seconds: tuple[float, float] = (0.1, 1.5)) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults, self.rate, self.every = tuple(faults), rate, every
        self.late_seconds, self.hang_seconds = late_seconds, hang_seconds
        self._closed = False
        self.injected: Counter[Fault] = Counter()
        self._rng = random.Random(seed)
        self._first_mode = seed % len(self.faults) if self.faults else 0  # trials start on different modes
        self._lock = threading.Lock()
        self._rebuilds = 0
        self._pending: set[threading.Thread] = set()
        self._idle = threading.Condition()
        self._active = 0  # connections being served
        self._http = httpx.Client(base_url=self.upstream, timeout=30.0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._serving = threading.Thread(target=self._server.serve_forever, name="fault-relay", daemon=True)
        self._serving.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        """Stop serving, after the calls being served and the late deliveries still under way."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=MAX_HOLD_SECONDS)
        for thread in list(self._pending):
            thread.join(timeout=MAX_HOLD_SECONDS)
        self._http.close()

    def serving(self, delta: int) -> None:
        with self._idle:
            self._active += delta
            self._idle.notify_all()

    def pick(self, method: str, path: str) -> tuple[Fault | None, float]:
        """The fault for this call (None: pass it through) and its delay."""
        if method != "POST" or not path.split("?")[0].endswith(REBUILD_PATH) or not self.faults:
            return None, 0.0
        with self._lock:
            self._rebuilds += 1
            hit = self._rebuilds % self.every == 0 if self.every else self._rng.random() < self.rate
            if not hit:
                return None, 0.0
            fault = self.faults[(self._first_mode + sum(self.injected.values())) % len(self.faults)]
            self.injected[fault] += 1
            return fault, self._rng.uniform(*(self.hang_seconds if fault is Fault.HANG else self.late_seconds))

    def forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> httpx.Response:
        """Send the request on to the simulator as it came; raise _Dropped if it hangs up."""
        kept = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
        try:
            return self._http.request(method, path, headers=kept, content=body)
        except httpx.TransportError:
            raise _Dropped from None

    def later(self, delay: float, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """Forward after ``delay`` seconds, on a thread of its own; the answer goes nowhere."""

        def deliver() -> None:
            time.sleep(delay)
            try:
                self.forward(method, path, headers, body)
            except _Dropped:
                pass
            finally:
                self._pending.discard(threading.current_thread())

        thread = threading.Thread(target=deliver, name="fault-relay-late", daemon=True)
        self._pending.add(thread)
        thread.start()


def _handler_for(relay: FaultRelay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a dropped one is plain to see

        def handle_one_request(self) -> None:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or not self.parse_request():
                self.close_connection = True
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = list(self.headers.items())
            fault, delay = relay.pick(self.command, self.path)
            self.close_connection = True
            relay.serving(+1)
            try:
                self._serve(fault, delay, headers, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first
            finally:
                relay.serving(-1)

        def _serve(self, fault: Fault | None, delay: float, headers: list[tuple[str, str]], body: bytes) -> None:
            if fault is Fault.DROP_BEFORE:
                return
            if fault is Fault.LATE_504:
                self._answer(504, [("Content-Type", "application/json")], b'{"error_code":"APIG.0201","error_msg":"Backend timeout"}')
                relay.later(delay, self.command, self.path, headers, body)
                return
            if fault is Fault.HANG:
                self._until_the_client_gives_up()
                relay.later(delay, self.command, self.path, headers, body)
                return
            try:
                response = relay.forward(self.command, self.path, headers, body)
            except _Dropped:
                if fault is None:
                    return  # as the simulator did
                response = None
            if fault is Fault.DROP_AFTER:
                return
            if fault is Fault.GARBLED_200:
                self._answer(200, [("Content-Type", "text/html")], b"<html><body>OK</body></html>")
            elif fault is Fault.NO_JOB_ID_200:
                self._answer(200, [("Content-Type", "application/json")], b'{"status":"accepted"}')
            elif response is not None:
                kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in HOP_BY_HOP]
                self._answer(response.status_code, kept, response.content)

        def _answer(self, status: int, headers: list[tuple[str, str]], content: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in ("server", "date"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
            self.wfile.flush()

        def _until_the_client_gives_up(self) -> None:
            """Hold the connection until the client closes it (its timeout, or a kill)."""
            deadline = time.monotonic() + MAX_HOLD_SECONDS
            while time.monotonic() < deadline:
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                if readable:
                    try:
                        if not self.connection.recv(4096):
                            return
                    except OSError:
                        return

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            """Quiet: a trial makes thousands of calls."""

    return Handler
