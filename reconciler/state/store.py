"""The ``StateStore`` interface: small capabilities (read, write, lock, journal) composed into one
store, as Terraform's statemgr does. No I/O here; backends implement it (``local.py``).

``reconciler.state.conformance`` is the test suite every backend must pass.
"""

from __future__ import annotations

import abc
import getpass
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.state.state import State, StateError


@dataclass(frozen=True, slots=True)
class LockInfo:
    id: str
    operation: str
    who: str
    pid: int
    hostname: str
    created: str

    @classmethod
    def new(cls, operation: str) -> LockInfo:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        host = socket.gethostname()
        return cls(
            id=str(uuid.uuid4()),
            operation=operation,
            who=f"{user}@{host}",
            pid=os.getpid(),
            hostname=host,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LockInfo:
        return cls(
            id=str(data["id"]),
            operation=str(data.get("operation", "")),
            who=str(data.get("who", "")),
            pid=int(data.get("pid", 0)),
            hostname=str(data.get("hostname", "")),
            created=str(data.get("created", "")),
        )

    def describe(self, now: datetime | None = None) -> str:
        return f"ID {self.id}, operation {self.operation}, held by {self.who} (pid {self.pid}) since {self.created}{self._age(now)}"

    def _age(self, now: datetime | None) -> str:
        """ " (12 minutes ago)": a lock that outlived its holder (s3) is easier to judge so."""
        try:
            seconds = ((now or datetime.now(UTC)) - datetime.fromisoformat(self.created)).total_seconds()
        except (ValueError, TypeError):
            return ""
        if seconds < 120:
            return f" ({max(int(seconds), 0)} seconds ago)"
        if seconds < 7200:
            return f" ({int(seconds // 60)} minutes ago)"
        return f" ({int(seconds // 3600)} hours ago)"


class StateLocked(ReconcilerError):
    """Another run holds the state lock (exit code 3)."""

    def __init__(self, info: LockInfo | None, where: str) -> None:
        self.info = info
        holder = info.describe() if info else "holder unknown"
        super().__init__(f"the state at {where} is locked: {holder}")


class LockMismatch(ReconcilerError):
    """Unlocking with an id that is not the current lock's."""


class StateConflict(StateError):
    """A write lost a race: the stored state is no longer the one this handle read. Nothing
    was written."""

    def __init__(self, where: str, detail: str = "") -> None:
        super().__init__(
            f"the state at {where} changed since this run read it{detail}; nothing was written. "
            "Another run wrote it (was its lock broken with force-unlock?): run the command again"
        )


class BackendError(StateError):
    """A backend cannot be used: its library is missing, it cannot be reached, it refuses the
    credentials, or it lacks what reconciler needs. The message names the backend, what failed
    and the fix, and never holds a secret."""


class StateReader(abc.ABC):
    @abc.abstractmethod
    def read(self) -> State:
        """The last written state; an empty ``State()`` (no lineage, serial 0) if none exists."""


class StateWriter(abc.ABC):
    @abc.abstractmethod
    def write(self, state: State) -> None:
        """Persist ``state`` atomically: afterwards ``read()`` returns it, and a crash at any
        moment leaves either the old or the new state, never a mix.

        Compare-and-swap: the write succeeds only if the stored state is still the one this
        handle last read or wrote; otherwise it raises StateConflict and changes nothing. A
        handle that has seen nothing yet writes over whatever is there (``state push --force``)."""


class Locker(abc.ABC):
    @abc.abstractmethod
    def lock(self, operation: str, timeout: float = 0.0) -> LockInfo:
        """Take the exclusive lock, waiting up to ``timeout`` seconds; StateLocked otherwise."""

    @abc.abstractmethod
    def unlock(self, lock_id: str) -> None:
        """Release a lock this store holds; LockMismatch if ``lock_id`` is not it."""

    @abc.abstractmethod
    def lock_info(self) -> LockInfo | None:
        """Who holds the lock now, or None."""

    @abc.abstractmethod
    def force_unlock(self, lock_id: str) -> None:
        """Break a lock held by someone else (after a human checked it is stale)."""


class Journal(abc.ABC):
    @abc.abstractmethod
    def append(self, record: Mapping[str, Any]) -> None:
        """Add one record durably before returning (the applier relies on it after every call)."""

    @abc.abstractmethod
    def replay(self) -> list[dict[str, Any]]:
        """Every record appended since the last ``discard()``, in order; a torn last record is
        ignored."""

    @abc.abstractmethod
    def discard(self) -> None:
        """Drop the journal (after its records were written into the state)."""

    @abc.abstractmethod
    def journal_digest(self) -> str | None:
        """A fingerprint of the journal's content, None when there is none (plans record it)."""


class StateStore(StateReader, StateWriter, Locker, Journal, abc.ABC):
    """A complete backend. ``location`` names it in messages."""

    location: str
