"""The journal and the in-memory state, kept in step. Journal I/O through a ``StateStore``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from reconciler.state.builder import StateBuilder
from reconciler.state.records import RUN_MARKERS, JournalRecord, RecordKind
from reconciler.state.state import State
from reconciler.state.store import JournalWriteError, StateStore

log = logging.getLogger("reconciler.state")


class Recorder:
    """The journal and the in-memory state, kept in step: each record is made durable, then
    folded. Thread-safe: worker threads record their own calls, one append at a time, so a
    record is never interleaved with another and a failed append is undone before the next."""

    def __init__(self, store: StateStore, state: State, now: Callable[[], datetime]) -> None:
        self._store = store
        self._builder = StateBuilder(state)
        self._known_jobs = frozenset(state.jobs)
        self._lock = threading.Lock()
        self.now = now
        self.changed = False  # anything besides run markers recorded: the state must be written

    def at(self) -> str:
        return self.now().astimezone(UTC).isoformat(timespec="seconds")

    def record(self, record: JournalRecord) -> None:
        with self._lock:
            try:
                self._store.append(record)
            except JournalWriteError as exc:
                exc.unrecorded = record  # a job id only this record held is named in the message
                raise
            self._builder.apply(record)
            self.changed = self.changed or RecordKind(record["type"]) not in RUN_MARKERS

    def state(self) -> State:
        with self._lock:
            return self._builder.build()

    def new_jobs(self) -> list[str]:
        """Job ids this run recorded (each is in the journal): for messages after a failure."""
        with self._lock:
            return sorted(set(self._builder.jobs) - self._known_jobs)
