"""The watch loop: cycles one after another until stopped, the latest results on a board the
HTTP server reads. Threads and waiting; the I/O is in ``cycle``.

A stop request (SIGTERM/SIGINT, set by the CLI) ends the wait between cycles at once and, during
an apply, lets the calls in flight return, journals them, and releases the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.session import utc_now
from reconciler.watch.cycle import Cycle, Outcome
from reconciler.watch.metrics import WatchMetrics
from reconciler.watch.policy import ApplyMode, next_cycle
from reconciler.watch.status import CycleReport, FleetStatus, status_json

# /readyz: the last cycle succeeded and finished at most this many intervals ago.
READY_INTERVALS = 3


@dataclass(frozen=True)
class Board:
    """What the last cycle found, as the HTTP server shows it."""

    report: CycleReport | None = None
    fleet: FleetStatus = FleetStatus()
    finished: float | None = None  # monotonic
    next_cycle: str | None = None


class Watcher:
    def __init__(self, cycle: Cycle, metrics: WatchMetrics, *, interval: float, mode: ApplyMode,
                 stop: threading.Event, on_cycle: Callable[[CycleReport], None] = lambda report: None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.cycle = cycle
        self.metrics = metrics
        self.interval = interval
        self.mode = mode
        self.stop = stop
        self.on_cycle = on_cycle
        self.clock = clock
        self._board = Board()
        self._lock = threading.Lock()

    @property
    def board(self) -> Board:
        with self._lock:
            return self._board

    def ready(self) -> tuple[bool, str]:
        board = self.board
        if board.report is None or board.finished is None:
            return False, "no cycle has finished yet"
        if not board.report.ok:
            return False, f"the last cycle failed: {board.report.error}"
        age = time.monotonic() - board.finished
        if age > READY_INTERVALS * self.interval:
            return False, f"the last cycle finished {age:.0f}s ago (more than {READY_INTERVALS} intervals)"
        return True, "ready"

    def status(self) -> dict[str, Any]:
        board = self.board
        document = status_json(board.fleet, board.report, self.ready()[0], self.interval)
        document["next_cycle"] = board.next_cycle
        return document

    def run(self, *, once: bool = False) -> CycleReport | None:
        """Cycle until stopped (or once); the last cycle's report."""
        report = None
        while not self.stop.is_set():
            outcome = self.cycle.run()
            report = outcome.report
            wake = next_cycle(outcome.plan, self.mode, self.clock(), self.interval)
            self._publish(outcome, wake)
            self.on_cycle(report)
            if once:
                break
            self.stop.wait(max(0.0, (wake - self.clock()).total_seconds()))
        return report

    def _publish(self, outcome: Outcome, wake: datetime) -> None:
        if outcome.fleet is not None:
            self.metrics.fleet(outcome.fleet)
        self.metrics.cycle(outcome.report, time.time())
        with self._lock:
            fleet = outcome.fleet if outcome.fleet is not None else self._board.fleet
            self._board = Board(outcome.report, fleet, time.monotonic(), wake.isoformat(timespec="seconds"))
