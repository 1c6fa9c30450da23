"""The journal and the in-memory state, kept in step. Journal I/O through a ``StateStore``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from reconciler.state.state import State, StateBuilder
from reconciler.state.store import StateStore

# Journal records that mark a run's start and end and change nothing in the state.
RUN_MARKERS = frozenset({"begin", "end"})


class Recorder:
    """The journal and the in-memory state, kept in step: each record is made durable, then
    folded. Thread-safe; worker threads record their own calls."""

    def __init__(self, store: StateStore, state: State, now: Callable[[], datetime]) -> None:
        self._store = store
        self._builder = StateBuilder(state)
        self._lock = threading.Lock()
        self.now = now
        self.changed = False  # anything besides run markers recorded: the state must be written

    def at(self) -> str:
        return self.now().astimezone(UTC).isoformat(timespec="seconds")

    def record(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._store.append(record)
            self._builder.apply(record)
            self.changed = self.changed or record.get("type") not in RUN_MARKERS

    def state(self) -> State:
        with self._lock:
            return self._builder.build()


