"""HTTP plumbing for the simulator: request parsing from a WSGI environ, responses, API errors.

No I/O beyond reading the request body from ``wsgi.input``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from reconciler.cloud.signing import query_pairs

MAX_BODY_BYTES = 1 << 20
JSON_TYPE = "application/json;charset=UTF-8"


class ConnectionDropped(Exception):
    """Raised by the app to close the connection without writing a response (a fault)."""


def _utf8(text: str) -> str:
    """WSGI hands over latin-1 decoded text; undo that for UTF-8 senders (PEP 3333).

    httpx's WSGITransport passes already-decoded text, which is left alone.
    """
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        if value == "" and key == "CONTENT_LENGTH":
            continue
        headers[name.replace("_", "-").lower()] = _utf8(str(value))
    return headers


def _read_body(environ: Mapping[str, Any]) -> bytes:
    # Always drain the body: a socket closed with unread input is reset by the kernel, which
    # would turn our clean responses (and our deliberate drops) into connection resets.
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    if length <= 0 or stream is None:
        return b""
    return bytes(stream.read(length))


@dataclass(frozen=True)
class Request:
    """What the handlers need of one HTTP request."""

    method: str
    path: str
    raw_query: str
    headers: Mapping[str, str]
    body: bytes
    remote_addr: str
    scheme: str
    host: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> Request:
        headers = _headers(environ)
        host = headers.get("host") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
        return cls(
            method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
            path=_utf8(str(environ.get("PATH_INFO", "") or "/")),
            raw_query=str(environ.get("QUERY_STRING", "")),
            headers=headers,
            body=_read_body(environ),
            remote_addr=str(environ.get("REMOTE_ADDR", "")),
            scheme=str(environ.get("wsgi.url_scheme", "http")),
            host=host,
        )

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @functools.cached_property
    def query(self) -> list[tuple[str, str]]:
        return query_pairs(self.raw_query)

    def signing_url(self) -> str:
        """The URL as the client signed it: path re-encoded, query exactly as sent."""
        url = f"{self.scheme}://{self.host}{quote(self.path, safe='/~')}"
        return f"{url}?{self.raw_query}" if self.raw_query else url

    def json(self, iam: bool = False) -> Any:
        if len(self.body) > MAX_BODY_BYTES:
            raise ApiError(400, "WKS.00010400", f"the request body exceeds {MAX_BODY_BYTES} bytes", iam=iam)
        if not self.body.strip():
            raise ApiError(400, "WKS.0001", "The request message input by the interface is empty.", iam=iam)
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "WKS.00010400", f"the request body is not valid JSON: {exc}", iam=iam) from None


@dataclass(frozen=True)
class Response:
    status: int
    body: Any = None
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class ApiError(Exception):
    """An error response: Workspace's ``{error_code, error_msg}`` or IAM's ``{error: {...}}``."""

    def __init__(
        self, status: int, code: str, message: str,
        headers: Iterable[tuple[str, str]] = (), iam: bool = False,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = tuple(headers)
        self.iam = iam

    def response(self) -> Response:
        if self.iam:
            title = HTTPStatus(self.status).phrase
            body: dict[str, Any] = {"error": {"code": self.status, "message": self.message, "title": title}}
        else:
            body = {"error_code": self.code, "error_msg": self.message}
        return Response(self.status, body, self.headers)


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def start(response: Response, start_response: Any, request_id: str) -> list[bytes]:
    """Send a response through a WSGI start_response; every response carries X-Request-Id."""
    payload = response.encoded()
    headers = [("Content-Type", JSON_TYPE), ("Content-Length", str(len(payload))), ("X-Request-Id", request_id)]
    headers += list(response.headers)
    start_response(status_line(response.status), headers)
    return [payload]
