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
        from moto.server import ThreadedMotoServer

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
