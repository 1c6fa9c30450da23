"""Serve a simulator over HTTP: a threading wsgiref server whose handler can drop connections.

Does network I/O. One thread per connection, one request per connection (HTTP/1.0 responses,
which HTTP/1.1 clients accept). When the app raises ``ConnectionDropped`` (an injected fault)
nothing at all is written: the socket is closed, so the client sees the server disconnect
without a response (httpx: ``RemoteProtocolError``; requests: ``ConnectionError``).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from reconciler.simulator.wsgi import ConnectionDropped


class _DroppingServerHandler(ServerHandler):
    """wsgiref's handler, except that a ConnectionDropped from the app writes nothing."""

    dropped = False

    def handle_error(self) -> None:
        if isinstance(sys.exc_info()[1], ConnectionDropped):
            self.dropped = True
            return
        super().handle_error()


class _RequestHandler(WSGIRequestHandler):
    def handle(self) -> None:
        # wsgiref's WSGIRequestHandler.handle, with the dropping ServerHandler.
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _DroppingServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True  # type: ignore[arg-type]
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: a test run makes thousands of calls."""


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs under a burst of parallel clients, which
    # then wait a whole second to retry: far from what a cloud endpoint does.
    request_queue_size = 128


class ThreadingWSGIServer6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(app: Any, host: str, port: int) -> ThreadingWSGIServer:
    """Bind (port 0 picks a free port: read it from ``server.server_port``)."""
    server_class = ThreadingWSGIServer6 if ":" in host else ThreadingWSGIServer
    server = server_class((host, port), _RequestHandler)
    server.set_app(app)
    return server


def base_url(server: ThreadingWSGIServer, host: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{server.server_port}"
