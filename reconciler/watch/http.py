"""The watch process's HTTP face: ``/metrics``, ``/healthz``, ``/readyz``, ``/api/status`` and the
status page ``/``, served by a threading wsgiref server. Network I/O.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST

from reconciler.watch.loop import Watcher
from reconciler.watch.page import render_page

StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: Prometheus scrapes every few seconds."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def _reply(start: StartResponse, status: str, body: bytes, content_type: str) -> list[bytes]:
    start(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
    return [body]


def make_app(watcher: Watcher) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start, "405 Method Not Allowed", b"only GET\n", "text/plain; charset=utf-8")
        if path == "/metrics":
            return _reply(start, "200 OK", watcher.metrics.render(), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            return _reply(start, "200 OK", b"ok\n", "text/plain; charset=utf-8")
        if path == "/readyz":
            ready, why = watcher.ready()
            return _reply(start, "200 OK" if ready else "503 Service Unavailable", f"{why}\n".encode(), "text/plain; charset=utf-8")
        if path == "/api/status":
            body = json.dumps(watcher.status(), indent=2, ensure_ascii=False).encode("utf-8")
            return _reply(start, "200 OK", body, "application/json")
        if path in ("/", "/index.html"):
            return _reply(start, "200 OK", render_page(watcher.status()).encode("utf-8"), "text/html; charset=utf-8")
        return _reply(start, "404 Not Found", b"not found\n", "text/plain; charset=utf-8")

    return app


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9108`` for IPv6); ValueError when it is not."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class StatusServer:
    """Serves in a daemon thread; ``port`` is the bound one (``--listen 127.0.0.1:0`` picks)."""

    def __init__(self, watcher: Watcher, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), _QuietHandler)
        self._server.set_app(make_app(watcher))
        self.host, self.port = host, self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="watch-http", daemon=True)

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
