"""The local backend: a JSON state file, a lock file and a JSONL journal beside it. File I/O.

- ``state.json`` is replaced atomically (temp file, fsync, rename, fsync of the directory), mode 0600.
  A write first checks that the file is still the one this handle read (same inode, size and
  modification time): a run whose lock was broken cannot silently overwrite another's state.
- ``state.json.lock`` holds the lock info; the lock itself is an ``flock`` on that file, so a run
  killed with SIGKILL releases it, and a live holder is always detected.
- ``state.json.journal`` is append-only; each record is one checksummed line, fsynced before
  ``append`` returns; a failed append is cut back off (see ``reconciler.state.journal``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reconciler.files import fsync_dir, write_atomically
from reconciler.state.journal import JournalFile, UndoFailed, encode_record, read_lines
from reconciler.state.state import State, StateError, state_from_json, state_to_json
from reconciler.state.store import (
    JournalWriteError,
    LockInfo,
    LockMismatch,
    Salvage,
    StateConflict,
    StateLocked,
    StateStore,
    StateWriteError,
)

LOCK_POLL_SECONDS = 0.2
# The file a handle last read or wrote: (inode, size, mtime in ns), ABSENT, or UNSEEN (no read yet).
FileVersion = tuple[int, int, int] | str
ABSENT, UNSEEN = "absent", "unseen"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode_state(document: Mapping[str, Any]) -> bytes:
    """The state file's text: one line per desktop and per job. As readable in a diff as an
    indented file, but written by json's C encoder — ``indent=`` makes json fall back to its
    pure-Python encoder, twice as slow on 100,000 desktops."""
    lines = ["{"]
    for key, value in document.items():
        if isinstance(value, dict) and value:
            records = ",\n".join(f"  {_compact(k)}: {_compact(v)}" for k, v in value.items())
            lines.append(f" {_compact(key)}: {{\n{records}\n }},")
        else:
            lines.append(f" {_compact(key)}: {_compact(value)},")
    lines[-1] = lines[-1].rstrip(",")
    return ("\n".join(lines) + "\n}\n").encode("utf-8")


class LocalStateStore(StateStore):
    def __init__(self, path: str | os.PathLike[str], open_journal: Callable[[Path], JournalFile] = JournalFile.open) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        self.location = str(self.path)
        self._lock_fd: int | None = None
        self._lock_id: str | None = None
        self._seen: FileVersion = UNSEEN
        self._open_journal_file = open_journal
        self._journal: JournalFile | None = None
        self._journal_end = 0  # the journal's size after the last complete record
        self._journal_broken: str | None = None  # why appending must stop (an undo failed)
        self._append_lock = threading.Lock()

    def _ensure_dir(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- read / write ------------------------------------------------------------------------

    def _version(self) -> FileVersion:
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return ABSENT
        return (found.st_ino, found.st_size, found.st_mtime_ns)

    def read(self) -> State:
        try:
            with open(self.path, "rb") as handle:
                found = os.fstat(handle.fileno())
                text = handle.read()
        except FileNotFoundError:
            self._seen = ABSENT
            return State()
        except OSError as exc:
            raise StateError(f"cannot read the state {self.path}: {_reason(exc)}") from None
        self._seen = (found.st_ino, found.st_size, found.st_mtime_ns)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateError(f"{self.path} is not valid JSON: {exc}") from None
        return state_from_json(data, str(self.path))

    def write(self, state: State) -> None:
        payload = encode_state(state_to_json(state))
        if self._seen != UNSEEN and self._version() != self._seen:
            raise StateConflict(self.location)
        try:
            self._ensure_dir()
            write_atomically(self.path, payload)  # mode 0600: the state is never readable by others
        except OSError as exc:
            raise StateWriteError(str(self.path), _reason(exc), str(self.journal_path)) from None
        self._seen = self._version()

    # -- lock --------------------------------------------------------------------------------

    def lock(self, operation: str, timeout: float = 0.0) -> LockInfo:
        try:
            return self._lock(operation, timeout)
        except OSError as exc:
            raise StateError(f"cannot lock the state at {self.location} ({self.lock_path}): {_reason(exc)}; nothing was changed") from None

    def _lock(self, operation: str, timeout: float) -> LockInfo:
        self._ensure_dir()
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise StateLocked(self.lock_info(), self.location) from None
                time.sleep(LOCK_POLL_SECONDS)
                continue
            if self._same_file(fd):
                self._remove_stale_temps()
                return self._claim(fd, operation)
            os.close(fd)  # the file was replaced (force-unlock) between open and flock: retry

    def _remove_stale_temps(self) -> None:
        """Temp states of writers killed before their rename: only a lock holder writes, so
        with the lock held, any that exist are dead copies (of the state, mode 0600)."""
        for stale in self.path.parent.glob(self.path.name + ".*.tmp"):
            stale.unlink(missing_ok=True)

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
        except FileNotFoundError:
            return False

    def _claim(self, fd: int, operation: str) -> LockInfo:
        info = LockInfo.new(operation)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info.to_json()).encode("utf-8"), 0)
        os.fsync(fd)
        self._lock_fd, self._lock_id = fd, info.id
        self._journal_broken = None  # a new holder reopens the journal, cutting any torn tail first
        return info

    def lock_info(self) -> LockInfo | None:
        try:
            data = json.loads(self.lock_path.read_text() or "null")
        except FileNotFoundError:
            return None
        except ValueError:
            return None
        if not data:
            return None
        if self._lock_fd is None and not self._held_by_someone():
            return None  # a leftover file from a run that died: nobody holds the flock
        return LockInfo.from_json(data)

    def _held_by_someone(self) -> bool:
        try:
            fd = os.open(self.lock_path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the probe's flock, if it got one
        return False

    def unlock(self, lock_id: str) -> None:
        if self._lock_fd is None or lock_id != self._lock_id:
            raise LockMismatch(f"this run does not hold lock {lock_id} on {self.location}")
        self.close()  # only a lock holder appends: a journal kept after a failure is not left open
        fd, self._lock_fd, self._lock_id = self._lock_fd, None, None
        if self._same_file(fd):
            os.ftruncate(fd, 0)
        os.close(fd)

    def force_unlock(self, lock_id: str) -> None:
        info = self.lock_info()
        if info is None:
            raise LockMismatch(f"the state at {self.location} is not locked")
        if info.id != lock_id:
            raise LockMismatch(f"the lock on {self.location} has ID {info.id}, not {lock_id}")
        # The holder keeps its flock on the old inode; removing the file lets a new run create
        # and lock a fresh one. That is what "force" means, and why a human must decide it.
        self.lock_path.unlink(missing_ok=True)

    # -- journal -----------------------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> None:
        line = encode_record(record)
        with self._append_lock:  # one record at a time: a failed one is undone before the next
            if self._journal_broken is not None:
                raise JournalWriteError(str(self.journal_path), self._journal_broken, intact=False)
            journal = self._open_journal()
            try:
                journal.append(line, self._journal_end)
            except UndoFailed as exc:
                self._journal_broken = f"an append failed ({exc.failure.strerror}) and could not be undone ({exc.undo.strerror})"
                raise JournalWriteError(str(self.journal_path), self._journal_broken, intact=False) from None
            except OSError as exc:
                raise JournalWriteError(str(self.journal_path), _reason(exc), intact=True) from None
            self._journal_end += len(line)

    def _open_journal(self) -> JournalFile:
        if self._journal is None:
            try:
                self._ensure_dir()
                journal = self._open_journal_file(self.journal_path)
            except OSError as exc:
                raise JournalWriteError(str(self.journal_path), _reason(exc), intact=True) from None
            try:
                self._journal_end = journal.cut_torn_tail()
            except OSError as exc:
                journal.close()
                raise JournalWriteError(str(self.journal_path), _reason(exc), intact=True) from None
            self._journal = journal
        return self._journal

    def _read_journal(self) -> bytes | None:
        try:
            return self.journal_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read the journal {self.journal_path}: {_reason(exc)}") from None

    def replay(self) -> list[dict[str, Any]]:
        raw = self._read_journal()
        if raw is None:
            return []
        read = read_lines(raw)
        if read.bad:
            number, reason = read.bad[0]
            others = f" (and {len(read.bad) - 1} more such lines)" if len(read.bad) > 1 else ""
            raise StateError(
                f"{self.journal_path}:{number}: unreadable journal record: {reason}{others}. Keep the file: its other "
                f"{len(read.records)} records may hold job ids. `reconciler state repair-journal` folds them into the state "
                "and sets the unreadable lines aside, without deleting anything"
            )
        return read.records

    def salvage_journal(self) -> tuple[list[dict[str, Any]], Salvage]:
        raw = self._read_journal()
        if raw is None:
            return [], Salvage(0, (), None, None)
        read = read_lines(raw)
        if not read.bad:
            return read.records, Salvage(len(read.records), (), None, None)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        backup = self.journal_path.with_name(f"{self.journal_path.name}.{stamp}.orig")
        aside = self.journal_path.with_name(f"{self.journal_path.name}.{stamp}.rejected")
        lines = raw.split(b"\n")
        rejected = b"".join(b"%d: %s\n" % (number, lines[number - 1]) for number, _ in read.bad)
        try:
            write_atomically(backup, raw)
            write_atomically(aside, rejected)
        except OSError as exc:
            raise StateError(f"cannot set the unreadable journal lines aside next to {self.journal_path}: {_reason(exc)}") from None
        numbers = tuple(number for number, _ in read.bad)
        return read.records, Salvage(len(read.records), numbers, str(aside), str(backup))

    def discard(self) -> None:
        self.close()
        try:
            self.journal_path.unlink(missing_ok=True)
            if self.path.parent.exists():
                fsync_dir(self.path.parent)
        except OSError as exc:
            raise StateError(f"cannot remove the journal {self.journal_path} (its records are in the state now): {_reason(exc)}") from None
        self._journal_broken = None

    def journal_digest(self) -> str | None:
        raw = self._read_journal()
        return None if raw is None else "sha256:" + hashlib.sha256(raw).hexdigest()

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _reason(exc: OSError) -> str:
    """The OS's words for ``exc`` (the file is named by the message around it)."""
    return exc.strerror or type(exc).__name__
