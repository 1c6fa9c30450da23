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


def _submitted_text(submitted: list[str], holder: str) -> str:
    if not submitted:
        return "Nothing was submitted in this run."
    return (
        f"This run submitted {len(submitted)} job{'s' if len(submitted) != 1 else ''} ({', '.join(submitted)}); "
        f"{holder} holds {'them' if len(submitted) != 1 else 'it'}: keep it, the next command folds it into the state."
    )


class JournalWriteError(StateError):
    """Appending to the journal failed. ``intact``: the journal was put back as it was before the
    append (the failed record is not in it); otherwise even that failed and the run must stop.
    ``unrecorded`` is the record that could not be appended; ``submitted`` the job ids this run
    had recorded before (filled in by the state transaction), for the message."""

    def __init__(self, journal: str, reason: str, *, intact: bool) -> None:
        self.journal = journal
        self.reason = reason
        self.intact = intact
        self.unrecorded: Mapping[str, Any] | None = None
        self.submitted: list[str] = []
        super().__init__(journal, reason)

    def __str__(self) -> str:
        parts = [f"cannot append to the journal {self.journal}: {self.reason}."]
        if not self.intact:
            parts.append("Its last line could not be cut back and may be torn (the next run drops a torn last line).")
        parts.append(_submitted_text(self.submitted, "the journal"))
        lost = self.unrecorded
        if lost is not None and lost.get("type") == "submitted":
            parts.append(
                f"Job {lost.get('job_id')} was accepted but could not be journaled: its desktops are recorded as sent, "
                "and the next run finds the job from the live API."
            )
        parts.append("Free space or fix the file system, then run `reconciler jobs --refresh` or the next plan.")
        return " ".join(parts)


class StateWriteError(StateError):
    """Writing the state failed; the old state is intact and the journal still holds every
    record of the run (it is removed only after the state is written)."""

    def __init__(self, location: str, reason: str, journal: str) -> None:
        self.location = location
        self.reason = reason
        self.journal = journal
        self.submitted: list[str] = []
        super().__init__(location, reason)

    def __str__(self) -> str:
        return (
            f"cannot write the state {self.location}: {self.reason}. The previous state is unchanged. "
            + _submitted_text(self.submitted, f"the journal {self.journal}")
        )


@dataclass(frozen=True)
class Salvage:
    """What ``salvage_journal`` did: ``kept`` records folded, ``set_aside`` unreadable lines
    (line numbers) moved to ``aside``, the original journal copied to ``backup``."""

    kept: int
    set_aside: tuple[int, ...]
    aside: str | None
    backup: str | None


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

    def salvage_journal(self) -> tuple[list[dict[str, Any]], Salvage]:
        """For ``state repair-journal``, with the lock held: the readable records of a journal
        ``replay`` refuses, after setting its unreadable lines aside (nothing is deleted).
        Backends whose journal cannot be torn keep this default."""
        records = self.replay()
        return records, Salvage(kept=len(records), set_aside=(), aside=None, backup=None)


class StateStore(StateReader, StateWriter, Locker, Journal, abc.ABC):
    """A complete backend. ``location`` names it in messages."""

    location: str
