"""The local backend: a JSON state file, a lock file and a JSONL journal beside it. File I/O.

- ``state.json`` is replaced atomically (temp file, fsync, rename, fsync of the directory), mode 0600.
  A write first checks that the file is still the one this handle read (same inode, size and
  modification time): a run whose lock was broken cannot silently overwrite another's state.
- ``state.json.lock`` holds the lock info; the lock itself is an ``flock`` on that file, so a run
  killed with SIGKILL releases it, and a live holder is always detected.
- ``state.json.journal`` is append-only; each record is one line, fsynced before ``append`` returns.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.files import fsync_dir, write_atomically
from reconciler.state.state import State, StateError, state_from_json, state_to_json
from reconciler.state.store import LockInfo, LockMismatch, StateConflict, StateLocked, StateStore

LOCK_POLL_SECONDS = 0.2
TAIL_CHUNK = 1 << 16
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
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        self.location = str(self.path)
        self._lock_fd: int | None = None
        self._lock_id: str | None = None
        self._journal_fd: int | None = None
        self._seen: FileVersion = UNSEEN

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
            raise StateError(f"cannot read the state {self.path}: {exc.strerror}") from None
        self._seen = (found.st_ino, found.st_size, found.st_mtime_ns)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateError(f"{self.path} is not valid JSON: {exc}") from None
        return state_from_json(data, str(self.path))

    def write(self, state: State) -> None:
        self._ensure_dir()
        payload = encode_state(state_to_json(state))
        if self._seen != UNSEEN and self._version() != self._seen:
            raise StateConflict(self.location)
        write_atomically(self.path, payload)  # mode 0600: the state is never readable by others
        self._seen = self._version()

    # -- lock --------------------------------------------------------------------------------

    def lock(self, operation: str, timeout: float = 0.0) -> LockInfo:
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
        if self._journal_fd is None:
            self._ensure_dir()
            self._journal_fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            self._cut_torn_tail(self._journal_fd)
        line = json.dumps(record, separators=(",", ":"), sort_keys=True).encode("utf-8") + b"\n"
        written = 0
        while written < len(line):  # a short write (a full disk) must not pass for a record
            written += os.write(self._journal_fd, line[written:])
        os.fsync(self._journal_fd)

    @staticmethod
    def _cut_torn_tail(fd: int) -> None:
        """Drop a last record a killed run was still writing (a kill can cut a multi-page write
        short). ``replay`` already ignores it, and its run never acted on it; appending after it
        would glue the next record to it and make the journal unreadable for every later run."""
        end = os.fstat(fd).st_size
        if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
            return
        keep, position = 0, end
        while position > 0:  # find the last complete record, reading backwards
            start = max(0, position - TAIL_CHUNK)
            newline = os.pread(fd, position - start, start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            position = start
        os.ftruncate(fd, keep)
        os.fsync(fd)

    def replay(self) -> list[dict[str, Any]]:
        try:
            raw = self.journal_path.read_bytes()
        except FileNotFoundError:
            return []
        records = []
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                if number >= len(lines) - 1:
                    break  # torn last record: the run died while writing it, before acting on it
                raise StateError(f"{self.journal_path}:{number}: unreadable journal record") from None
        return records

    def discard(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None
        self.journal_path.unlink(missing_ok=True)
        if self.path.parent.exists():
            fsync_dir(self.path.parent)

    def journal_digest(self) -> str | None:
        try:
            return "sha256:" + hashlib.sha256(self.journal_path.read_bytes()).hexdigest()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None
