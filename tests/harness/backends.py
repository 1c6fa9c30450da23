"""Real state backends for tests: a schema of its own in the test PostgreSQL database, and an
S3 server (moto's, in-process on 127.0.0.1) behind a recording proxy.

PostgreSQL comes from ``RECONCILER_TEST_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
When it cannot be reached, the tests that need it skip — except under ``CI=true``, where they
fail: CI must never pass by silently testing less.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from reconciler.state import StateStore

# How long PostgreSQL may take to end the session of a client killed with SIGKILL (it notices the
# closed socket at once unless the session was in the middle of a statement).
DEAD_SESSION_SECONDS = 10.0
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


# -- S3 ----------------------------------------------------------------------------------------

# Headers that make a PutObject conditional; the "ignoring" proxy drops them, as some stores do.
CONDITIONAL_HEADERS = frozenset({"if-none-match", "if-match"})
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"})


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 in front of the S3 server: it records every request's method,
    path and headers as the server receives them, and, when told to, drops conditional headers
    (a store that silently ignores them)."""

    def __init__(self, upstream: tuple[str, int], *, drop_conditions: bool = False) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str, dict[str, str]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if drop_conditions:
                    headers = {k: v for k, v in headers.items() if k.lower() not in CONDITIONAL_HEADERS}
                proxy.requests.append((self.command, self.path, {k.lower(): v for k, v in headers.items()}))
                upstream_conn = http.client.HTTPConnection(*upstream, timeout=60)
                try:
                    upstream_conn.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream_conn.getresponse()
                    data = answer.read()
                finally:
                    upstream_conn.close()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class S3Server:
    """moto's S3 server in this process on 127.0.0.1 (port chosen by the OS), with a recording
    proxy in front of it and, for refusal tests, one that drops conditional headers."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        self.address = self.moto.get_host_and_port()
        self.recording = RecordingProxy(self.address)
        self.ignoring = RecordingProxy(self.address, drop_conditions=True)

    @property
    def url(self) -> str:
        """Through the recording proxy."""
        return self.recording.url

    def new_bucket(self) -> str:
        import boto3

        bucket = f"state-{uuid.uuid4().hex[:20]}"
        client = boto3.client("s3", endpoint_url=f"http://{self.address[0]}:{self.address[1]}", region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket=bucket)
        client.close()
        return bucket

    def stop(self) -> None:
        self.recording.stop()
        self.ignoring.stop()
        self.moto.stop()


S3_ENV = {"RECONCILER_S3_ACCESS_KEY": "AKIATESTSTATE0000001", "RECONCILER_S3_SECRET_KEY": "s3-test-secret-key"}


def s3_settings(url: str, bucket: str, key: str = "acme-prod/state.json") -> dict[str, str]:
    """The ``spec.state.s3`` block for a bucket on the test server."""
    return {"bucket": bucket, "key": key, "endpoint": url, "region": "us-east-1", "addressing_style": "path"}


_shared_s3: S3Server | None = None


def shared_s3_server() -> S3Server:
    """One S3 server per process, started on first use (pytest's fixture and bench share it)."""
    global _shared_s3
    if _shared_s3 is None:
        _shared_s3 = S3Server()
    return _shared_s3


# -- harness trials on any backend ---------------------------------------------------------------


class StateView:
    """What a harness trial checks, read straight from a backend: the stored document, a
    leftover journal, the lock. Local: the files beside the manifests."""

    kind = "local"
    keeps_dead_locks = False

    def __init__(self, manifests: Path) -> None:
        self.manifests = manifests
        self.state_path = manifests / ".reconciler" / "state.json"

    def store(self) -> StateStore:
        from reconciler.state import LocalStateStore

        return LocalStateStore(self.state_path)

    def document_text(self) -> str | None:
        try:
            return self.state_path.read_text()
        except FileNotFoundError:
            return None

    def journal_exists(self) -> bool:
        return self.state_path.with_name("state.json.journal").exists()

    def stale_temp_files(self) -> list[str]:
        return sorted(p.name for p in self.state_path.parent.glob("state.json.*.tmp"))

    def release_dead_lock(self, pid: int) -> None:
        """After a kill: what an operator does about the dead run's lock (nothing, here)."""

    def close(self) -> None:
        """Drop what the view holds open."""


class StoreView(StateView):
    """A shared backend, through a reconciler store opened from the trial's manifests."""

    def __init__(self, manifests: Path, env: dict[str, str], kind: str) -> None:
        super().__init__(manifests)
        self.env, self.kind = env, kind
        self.keeps_dead_locks = kind == "s3"
        self._store: StateStore | None = None

    def store(self) -> StateStore:
        if self._store is None:
            from reconciler.manifest import load_manifests
            from reconciler.state import open_store

            self._store = open_store(load_manifests([self.manifests]).settings, self.env)
        return self._store

    def document_text(self) -> str | None:
        store: Any = self.store()
        if self.kind == "postgres":
            row = store._db().execute(store._sql("SELECT document::text FROM {schema}.states WHERE name = %s"), (store.name,)).fetchone()
            return str(row[0]) if row else None
        found = store._get(store.key, "reading the state")
        return found[0].decode("utf-8") if found else None

    def journal_exists(self) -> bool:
        return bool(self.store().replay())

    def stale_temp_files(self) -> list[str]:
        return []

    def close(self) -> None:
        if self._store is not None:
            self._store.close()  # type: ignore[attr-defined]
            self._store = None

    def release_dead_lock(self, pid: int) -> None:
        """s3: the operator's force-unlock of the dead run's lock. postgres: nothing to do but
        let the server notice the dropped connection (it ends that session within moments)."""
        info = self.store().lock_info()
        if info is None or info.pid != pid:
            return
        if self.keeps_dead_locks:
            self.store().force_unlock(info.id)
            return
        deadline = time.monotonic() + DEAD_SESSION_SECONDS
        while time.monotonic() < deadline and (info := self.store().lock_info()) is not None and info.pid == pid:
            time.sleep(0.01)


class RemoteRun:
    """``kills.RunFiles`` for a shared backend: the journal records one run appends, its lock,
    the state's serial and version, polled through the backend."""

    def __init__(self, view: StoreView) -> None:
        self.view = view
        self.records: list[str] = []
        self._after: Any = None  # the last journal row (postgres seq) or object key (s3) seen
        self._holders: set[int] = set()
        self._skip_existing()
        self.start_serial = self.serial()
        self._version = self._state_version()

    def _skip_existing(self) -> None:
        self._new_records(remember=False)

    def _new_records(self, remember: bool = True) -> list[str]:
        store: Any = self.view.store()
        kinds: list[str] = []
        if self.view.kind == "postgres":
            rows = store._db().execute(
                store._sql("SELECT seq, record->>'type' FROM {schema}.journal WHERE name = %s AND seq > %s ORDER BY seq"),
                (store.name, self._after or 0),
            ).fetchall()
            for seq, kind in rows:
                self._after = seq
                kinds.append(str(kind))
        else:
            extra = {"StartAfter": self._after} if self._after else {}
            listed = store._client.list_objects_v2(Bucket=store.bucket, Prefix=store.journal_prefix, **extra)
            for item in sorted(listed.get("Contents", []), key=lambda o: o["Key"]):
                self._after = item["Key"]
                if remember:
                    found = store._get(item["Key"], "reading the journal")
                    kinds.append(json.loads(found[0])["type"] if found else "?")
        return kinds if remember else []

    def poll(self) -> list[str]:
        self.records += self._new_records()
        return self.records

    def _state_version(self) -> Any:
        store: Any = self.view.store()
        if self.view.kind == "postgres":
            row = store._db().execute(store._sql("SELECT generation FROM {schema}.states WHERE name = %s"), (store.name,)).fetchone()
            return row[0] if row else None
        try:
            return store._client.head_object(Bucket=store.bucket, Key=store.key)["ETag"]
        except Exception:  # noqa: BLE001 - no state yet
            return None

    def state_replaced(self) -> bool:
        return self._state_version() != self._version

    def serial(self) -> int:
        text = self.view.document_text()
        return int(json.loads(text)["serial"]) if text else 0

    def locked_by(self, pid: int) -> bool:
        """Whether ``pid`` holds the lock, or was seen holding it: a killed run's postgres
        lock goes with its session, so afterwards only the watch remembers it."""
        if pid in self._holders:
            return True
        info = self.view.store().lock_info()
        if info is not None:
            self._holders.add(info.pid)
        return info is not None and info.pid == pid

    def journal_exists(self) -> bool:
        return self.view.journal_exists()

    def new_temp_files(self) -> set[Path]:
        return set()

    def keep_evidence(self, directory: Path) -> None:
        records = self.view.store().replay()
        if records:
            number = len(list(directory.glob("kill-*.journal"))) + 1
            (directory / f"kill-{number}.journal").write_text("".join(json.dumps(r) + "\n" for r in records))


@dataclass
class TrialBackend:
    """Where a trial keeps its state: ``settings`` is the manifests' ``spec.state`` block and
    ``env`` what the runs need to reach it. ``close`` removes what ``create`` made."""

    kind: str = "local"
    settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    _cleanup: Any = None
    _views: list[StateView] = field(default_factory=list)

    @classmethod
    def create(cls, kind: str) -> TrialBackend:
        if kind == "local":
            return cls()
        if kind == "postgres":
            require_postgres()
            schema_cm = postgres_schema("crash")
            schema = schema_cm.__enter__()
            return cls("postgres", {"backend": "postgres", "name": "harness", "postgres": {"schema": schema}},
                       {"RECONCILER_PG_CONN_STR": PG_DSN}, schema_cm)
        if kind == "s3":
            server = shared_s3_server()
            return cls("s3", {"backend": "s3", "s3": s3_settings(server.url, server.new_bucket())}, dict(S3_ENV))
        raise ValueError(f"unknown backend {kind!r}")

    def view(self, manifests: Path) -> StateView:
        self._views.append(StateView(manifests) if self.kind == "local" else StoreView(manifests, self.env, self.kind))
        return self._views[-1]

    def close(self) -> None:
        for view in self._views:
            view.close()
        if self._cleanup is not None:
            self._cleanup.__exit__(None, None, None)
