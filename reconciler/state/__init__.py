"""Recorded state: the ``State`` value, the ``StateStore`` interface and its backends."""

from __future__ import annotations

from pathlib import Path

from reconciler.state.local import LocalStateStore
from reconciler.state.state import (
    DesktopRecord,
    JobRecord,
    JobRef,
    State,
    StateBuilder,
    StateError,
    fold,
    state_from_json,
    state_to_json,
)
from reconciler.state.store import LockInfo, LockMismatch, StateLocked, StateStore

__all__ = [
    "DesktopRecord",
    "JobRecord",
    "JobRef",
    "LocalStateStore",
    "LockInfo",
    "LockMismatch",
    "State",
    "StateBuilder",
    "StateError",
    "StateLocked",
    "StateStore",
    "fold",
    "open_store",
    "state_from_json",
    "state_to_json",
]


def open_store(backend: str, path: str | Path) -> StateStore:
    """The store for a ``Settings.spec.state`` block (``path`` already resolved)."""
    if backend == "local":
        return LocalStateStore(path)
    raise StateError(f"unknown state backend {backend!r} (available: local)")
