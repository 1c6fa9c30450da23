"""Real state backends for tests: a schema of its own in the test PostgreSQL database, and an
S3 server (moto's, in-process on 127.0.0.1) behind a recording proxy.

PostgreSQL comes from ``RECONCILER_TEST_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
When it cannot be reached, the tests that need it skip — except under ``CI=true``, where they
fail: CI must never pass by silently testing less.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_DSN = os.environ.get("RECONCILER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_unavailable() -> str | None:
    """Why the test database cannot be used, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    try:
        with psycopg.connect(PG_DSN, connect_timeout=5):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_DSN} is unreachable: {' '.join(str(exc).split())}"


def require_postgres() -> None:
    reason = postgres_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run must start PostgreSQL)")
    pytest.skip(reason)


@contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A fresh schema name, dropped (with everything in it) afterwards."""
    require_postgres()
    import psycopg
    from psycopg import sql

    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    try:
        yield schema
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
