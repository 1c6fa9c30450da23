"""The postgres backend: the state, its lock and its journal in a PostgreSQL database. Network I/O
(psycopg 3, the extra ``reconciler[postgres]``).

- One row per state ``name`` in ``states`` holds the document (jsonb), its lineage and serial and a
  ``generation`` counted up by every write. A write is a compare-and-swap on the generation this
  handle read (``SELECT … FOR UPDATE``), so a run whose lock was broken cannot overwrite another
  run's state. The 20 states before the current one stay in ``history``.
- The lock is a session advisory lock keyed by (schema, name) — not one id for every state — plus
  a row in ``locks`` telling others who holds it, for what and since when. A holder killed with
  ``kill -9`` loses its connection, and with it the lock, at once; its row is then ignored.
- The journal is a table; ``append`` returns once its insert has committed.

The tables live in their own schema, created on first use by numbered, idempotent migrations.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from reconciler.state.dsn import mask_dsn
from reconciler.state.state import State, state_from_json, state_to_json
from reconciler.state.store import BackendError, LockInfo, LockMismatch, StateConflict, StateLocked, StateStore

if TYPE_CHECKING:
    import psycopg

LOCK_POLL_SECONDS = 0.2
HISTORY_KEPT = 20
CONNECT_TIMEOUT_SECONDS = 10
INSTALL_HINT = "pip install 'reconciler[postgres]'"

# Migration n brings the schema from version n-1 to n. Append only: never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {schema}.states (
        name text PRIMARY KEY,
        lineage text,
        serial bigint NOT NULL,
        generation bigint NOT NULL,
        document jsonb NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE {schema}.history (
        name text NOT NULL,
        generation bigint NOT NULL,
        lineage text,
        serial bigint NOT NULL,
        document jsonb NOT NULL,
        written_at timestamptz NOT NULL,
        PRIMARY KEY (name, generation)
    );
    CREATE TABLE {schema}.locks (
        name text PRIMARY KEY,
        id text NOT NULL,
        info jsonb NOT NULL,
        backend_pid integer NOT NULL
    );
    CREATE TABLE {schema}.journal (
        name text NOT NULL,
        seq bigserial,
        record jsonb NOT NULL,
        PRIMARY KEY (name, seq)
    );
    """,
)


def _key(text: str) -> int:
    """A signed 32-bit advisory-lock key half."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big", signed=True)


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise BackendError(f"the postgres state backend needs psycopg: {INSTALL_HINT}") from None
    return psycopg


class PostgresStateStore(StateStore):
    """``conn_str`` may hold a password (from ``RECONCILER_PG_CONN_STR``); it is only ever shown
    masked. Each handle has one connection, opened on first use: the lock lives as long as it."""

    def __init__(self, conn_str: str, schema: str, name: str) -> None:
        self._psycopg = _import_psycopg()
        self._conn_str = conn_str
        self.schema = schema
        self.name = name
        self.location = f"{mask_dsn(conn_str)} (schema {schema}, state {name})"
        self._lock_keys = (_key(f"reconciler-schema:{schema}"), _key(f"reconciler-state:{name}"))
        self._conn: psycopg.Connection[Any] | None = None
        self._seen: int | None = None  # generation last read or written; 0: no state; None: not read
        self._lock_id: str | None = None
        self._lost_lock_id: str | None = None  # a lock that went with a dropped connection

    # -- connection and errors -----------------------------------------------------------------

    def _sql(self, text: str) -> Any:
        from psycopg import sql

        return sql.SQL(text).format(schema=sql.Identifier(self.schema))

    @contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        """psycopg's errors as one BackendError naming the backend, what failed and the fix."""
        try:
            yield
        except self._psycopg.Error as exc:
            raise BackendError(self._explain(doing, exc)) from None

    def _explain(self, doing: str, exc: Exception) -> str:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        reason = reason.replace(self._conn_str, mask_dsn(self._conn_str))
        text = reason.lower()
        if "password authentication failed" in text or "no password supplied" in text:
            fix = "set the password in RECONCILER_PG_CONN_STR, PGPASSWORD or ~/.pgpass"
        elif "database" in text and "does not exist" in text:
            fix = "create the database, or fix spec.state.postgres.conn_str / RECONCILER_PG_CONN_STR"
        elif "permission denied" in text:
            fix = f"grant the user CREATE on the database (or create schema {self.schema} for it)"
        elif isinstance(exc, self._psycopg.OperationalError):
            fix = "check that the server runs and spec.state.postgres.conn_str (or RECONCILER_PG_CONN_STR)"
        else:
            fix = "see the database's message"
        return f"postgres state backend {self.location}: {doing} failed: {reason}. Fix: {fix}"

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is not None and self._conn.closed and self._lock_id is not None:
            # The lock went with the connection: another run may hold it now. Fence this one off.
            self._lost_lock_id, self._lock_id = self._lock_id, None
            raise BackendError(
                f"postgres state backend {self.location}: the connection holding the state lock was lost "
                "(server restart, network cut, or force-unlock), so this run writes nothing more. Fix: run the command again"
            )
        if self._conn is None or self._conn.closed:
            with self._failures("connecting"):
                conn = self._psycopg.connect(
                    self._conn_str, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name="reconciler"
                )
            with self._failures("creating or upgrading the schema"):
                self._migrate(conn)
            self._conn = conn
        return self._conn

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Bring the schema to the latest version. Concurrent first runs queue on a
        transaction-scoped advisory lock, so each migration runs exactly once. An up-to-date
        schema is only read: a user without CREATE rights (a plan-only job) can use it."""
        if self._schema_version(conn) == len(MIGRATIONS):
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (self._lock_keys[0],))
            conn.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {schema}"))
            conn.execute(self._sql("CREATE TABLE IF NOT EXISTS {schema}.schema_version (version integer NOT NULL)"))
            row = conn.execute(self._sql("SELECT max(version) FROM {schema}.schema_version")).fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            for version in range(current + 1, len(MIGRATIONS) + 1):
                conn.execute(self._sql(MIGRATIONS[version - 1]))
                conn.execute(self._sql("INSERT INTO {schema}.schema_version (version) VALUES (%s)"), (version,))

    def _schema_version(self, conn: psycopg.Connection[Any]) -> int:
        table = conn.execute("SELECT to_regclass(%s)", (f'"{self.schema}".schema_version',)).fetchone()
        if not table or table[0] is None:
            return 0
        row = conn.execute(self._sql("SELECT max(version) FROM {schema}.schema_version")).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._lock_id = None

    # -- read / write --------------------------------------------------------------------------

    def read(self) -> State:
        with self._failures("reading the state"):
            row = self._db().execute(
                self._sql("SELECT document::text, generation FROM {schema}.states WHERE name = %s"), (self.name,)
            ).fetchone()
        if row is None:
            self._seen = 0
            return State()
        self._seen = int(row[1])
        return state_from_json(json.loads(row[0]), self.location)

    def write(self, state: State) -> None:
        document = json.dumps(state_to_json(state), separators=(",", ":"), ensure_ascii=False)
        with self._failures("writing the state"):
            db = self._db()
            with db.transaction():
                row = db.execute(
                    self._sql("SELECT generation FROM {schema}.states WHERE name = %s FOR UPDATE"), (self.name,)
                ).fetchone()
                current = int(row[0]) if row else 0
                if self._seen is not None and current != self._seen:
                    raise StateConflict(self.location, f" (write {current} is there, this run read {self._seen})")
                if row is None:
                    self._insert(db, state, document)
                else:
                    self._replace(db, state, document, current)
        self._seen = current + 1

    def _insert(self, db: psycopg.Connection[Any], state: State, document: str) -> None:
        inserted = db.execute(
            self._sql(
                "INSERT INTO {schema}.states (name, lineage, serial, generation, document) "
                "VALUES (%s, %s, %s, 1, %s::jsonb) ON CONFLICT (name) DO NOTHING"
            ),
            (self.name, state.lineage, state.serial, document),
        )
        if inserted.rowcount != 1:  # a first write by another run got in between
            raise StateConflict(self.location)

    def _replace(self, db: psycopg.Connection[Any], state: State, document: str, current: int) -> None:
        db.execute(
            self._sql(
                "INSERT INTO {schema}.history (name, generation, lineage, serial, document, written_at) "
                "SELECT name, generation, lineage, serial, document, written_at FROM {schema}.states WHERE name = %s"
            ),
            (self.name,),
        )
        db.execute(
            self._sql(
                "UPDATE {schema}.states SET lineage = %s, serial = %s, generation = %s, document = %s::jsonb, "
                "written_at = now() WHERE name = %s"
            ),
            (state.lineage, state.serial, current + 1, document, self.name),
        )
        db.execute(
            self._sql("DELETE FROM {schema}.history WHERE name = %s AND generation <= %s"),
            (self.name, current - HISTORY_KEPT),
        )

    def history(self) -> list[tuple[int, str | None, int]]:
        """(generation, lineage, serial) of the kept previous states, newest first."""
        with self._failures("reading the state history"):
            rows = self._db().execute(
                self._sql("SELECT generation, lineage, serial FROM {schema}.history WHERE name = %s ORDER BY generation DESC"),
                (self.name,),
            ).fetchall()
        return [(int(g), lineage, int(serial)) for g, lineage, serial in rows]

    # -- lock ----------------------------------------------------------------------------------

    def lock(self, operation: str, timeout: float = 0.0) -> LockInfo:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if self._lock_id is None and self._try_lock():
                info = LockInfo.new(operation)
                with self._failures("recording the lock holder"):
                    self._db().execute(
                        self._sql(
                            "INSERT INTO {schema}.locks (name, id, info, backend_pid) VALUES (%s, %s, %s::jsonb, pg_backend_pid()) "
                            "ON CONFLICT (name) DO UPDATE SET id = excluded.id, info = excluded.info, backend_pid = excluded.backend_pid"
                        ),
                        (self.name, info.id, json.dumps(info.to_json())),
                    )
                self._lock_id = info.id
                return info
            if time.monotonic() >= deadline:
                raise StateLocked(self.lock_info(), self.location)
            time.sleep(LOCK_POLL_SECONDS)

    def _try_lock(self) -> bool:
        with self._failures("taking the lock"):
            row = self._db().execute("SELECT pg_try_advisory_lock(%s, %s)", self._lock_keys).fetchone()
        return bool(row and row[0])

    def lock_info(self) -> LockInfo | None:
        """The holder row, if its session still holds the advisory lock (a killed holder's row
        stays behind and means nothing)."""
        classid, objid = (key & 0xFFFFFFFF for key in self._lock_keys)
        with self._failures("reading the lock"):
            row = self._db().execute(
                self._sql(
                    "SELECT l.info::text FROM {schema}.locks l WHERE l.name = %s AND EXISTS ("
                    " SELECT 1 FROM pg_locks p WHERE p.locktype = 'advisory' AND p.granted AND p.pid = l.backend_pid"
                    " AND p.classid = %s::bigint::oid AND p.objid = %s::bigint::oid AND p.objsubid = 2)"
                ),
                (self.name, classid, objid),
            ).fetchone()
        return LockInfo.from_json(json.loads(row[0])) if row else None

    def holds_lock(self) -> bool:
        """Whether this handle still holds its lock: False once its connection dropped (a
        server restart, a network cut, a force-unlock). A long-running holder (a leader) asks
        this before acting on its leadership."""
        if self._lock_id is None or self._conn is None or self._conn.closed:
            return False
        classid, objid = (key & 0xFFFFFFFF for key in self._lock_keys)
        try:
            row = self._conn.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
                " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 2",
                (classid, objid),
            ).fetchone()
        except self._psycopg.Error:
            return False
        return row is not None

    def unlock(self, lock_id: str) -> None:
        if lock_id == self._lost_lock_id and self._lock_id is None:
            return  # released already, with its connection (the error that said so is the one to report)
        if self._lock_id is None or lock_id != self._lock_id:
            raise LockMismatch(f"this run does not hold lock {lock_id} on {self.location}")
        self._lock_id = None
        conn = self._conn
        if conn is None or conn.closed:
            return  # the lock went with its connection
        try:
            conn.execute(self._sql("DELETE FROM {schema}.locks WHERE name = %s AND id = %s"), (self.name, lock_id))
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", self._lock_keys)
        except self._psycopg.OperationalError:
            return  # the connection died (force-unlock, server restart): the lock went with it
        except self._psycopg.Error as exc:
            raise BackendError(self._explain("releasing the lock", exc)) from None

    def force_unlock(self, lock_id: str) -> None:
        """End the holder's database session: that releases its advisory lock, and the holder,
        if it still runs, can write nothing more (its connection is gone)."""
        info = self.lock_info()
        if info is None:
            raise LockMismatch(f"the state at {self.location} is not locked")
        if info.id != lock_id:
            raise LockMismatch(f"the lock on {self.location} has ID {info.id}, not {lock_id}")
        with self._failures("ending the lock holder's session"):
            db = self._db()
            row = db.execute(
                self._sql("SELECT pg_terminate_backend(backend_pid, 10000) FROM {schema}.locks WHERE name = %s AND id = %s"),
                (self.name, lock_id),
            ).fetchone()
            if not row or not row[0]:
                raise BackendError(
                    f"postgres state backend {self.location}: could not end the session holding lock {lock_id}. "
                    "Fix: connect as the same user, or have a database administrator end it (pg_terminate_backend)"
                )
            db.execute(self._sql("DELETE FROM {schema}.locks WHERE name = %s AND id = %s"), (self.name, lock_id))

    # -- journal -------------------------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> None:
        text = json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        with self._failures("appending to the journal"):
            self._db().execute(self._sql("INSERT INTO {schema}.journal (name, record) VALUES (%s, %s::jsonb)"), (self.name, text))

    def replay(self) -> list[dict[str, Any]]:
        with self._failures("reading the journal"):
            rows = self._db().execute(
                self._sql("SELECT record::text FROM {schema}.journal WHERE name = %s ORDER BY seq"), (self.name,)
            ).fetchall()
        return [json.loads(text) for (text,) in rows]

    def discard(self) -> None:
        with self._failures("removing the journal"):
            self._db().execute(self._sql("DELETE FROM {schema}.journal WHERE name = %s"), (self.name,))

    def journal_digest(self) -> str | None:
        with self._failures("reading the journal"):
            row = self._db().execute(
                self._sql(
                    "SELECT encode(sha256(convert_to(string_agg(seq::text || ' ' || record::text, E'\\n' ORDER BY seq), 'UTF8')), 'hex') "
                    "FROM {schema}.journal WHERE name = %s"
                ),
                (self.name,),
            ).fetchone()
        return f"sha256:{row[0]}" if row and row[0] else None
