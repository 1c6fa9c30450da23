"""Recorded state: the ``State`` value, the ``StateStore`` interface and its backends."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from reconciler.state.builder import StateBuilder, fold
from reconciler.state.local import LocalStateStore
from reconciler.state.records import JobStatus, JournalRecord, RecordKind
from reconciler.state.state import (
    DesktopRecord,
    JobRecord,
    JobRef,
    State,
    StateError,
    state_from_json,
    state_to_json,
)
from reconciler.state.store import BackendError, LockInfo, LockMismatch, StateConflict, StateLocked, StateStore

if TYPE_CHECKING:
    from reconciler.model import Settings

__all__ = [
    "BackendError",
    "DesktopRecord",
    "JobRecord",
    "JobRef",
    "JobStatus",
    "JournalRecord",
    "LocalStateStore",
    "LockInfo",
    "LockMismatch",
    "RecordKind",
    "State",
    "StateBuilder",
    "StateConflict",
    "StateError",
    "StateLocked",
    "StateStore",
    "fold",
    "open_store",
    "state_from_json",
    "state_to_json",
]


def open_store(settings: Settings, env: Mapping[str, str] | None = None) -> StateStore:
    """The store a manifest set's ``Settings`` name. Secrets come from ``env`` (default: the
    process environment); the postgres and s3 libraries are imported only when used."""
    env = os.environ if env is None else env
    config = settings.state
    name = config.name or settings.project_id
    if config.backend == "local":
        return LocalStateStore(settings.state_file)
    if config.backend == "postgres":
        from reconciler.state.postgres import PostgresStateStore

        conn_str = env.get("RECONCILER_PG_CONN_STR") or config.postgres.conn_str
        if not conn_str:
            raise BackendError(
                "postgres state backend: no database given. Fix: set spec.state.postgres.conn_str "
                "or the environment variable RECONCILER_PG_CONN_STR"
            )
        return PostgresStateStore(conn_str, config.postgres.schema, name)
    if config.backend == "s3":
        from reconciler.state.s3 import S3StateStore

        return S3StateStore.from_settings(config.s3, name, env)
    raise StateError(f"unknown state backend {config.backend!r} (available: local, postgres, s3)")
