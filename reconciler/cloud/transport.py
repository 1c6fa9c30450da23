"""``PacedTransport``: an httpx transport that paces Workspace API calls before handing them to
the transport it wraps. No I/O of its own besides sleeping.

It composes like httpx's own transports::

    httpx.Client(transport=PacedTransport(httpx.HTTPTransport(), RateLimiter(100)))

Every Workspace call (a path under ``/v2/``) first takes a token from the limiter of its
operation — ``list`` (desktops), ``rebuild``, ``jobs`` (job and sub-job queries) — because
gateways throttle those APIs separately; an operation without a limiter of its own shares the
general one. Calls to other services (IAM tokens, fetched by the auth flow through the same
client) pass unpaced. A 429 answer holds every caller of that limiter back and slows its pace
(``RateLimiter.throttled``); the hold is put in ``response.extensions[HOLD]`` so the caller
knows it may retry at once: the limiter enforces the hold on the next call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import httpx

from reconciler.cloud.pacing import RateLimiter, parse_retry_after

log = logging.getLogger("reconciler.cloud")

HOLD = "reconciler.pacing_hold"
OPERATIONS = ("list", "rebuild", "jobs")
_JOB_PATHS = ("/workspace-jobs", "/workspace-sub-jobs")


def operation_of(request: httpx.Request) -> str | None:
    """``list``, ``rebuild``, ``jobs``, ``other`` for a Workspace call; None for other services."""
    path = request.url.path
    if not path.startswith("/v2/"):
        return None
    if request.method == "POST" and path.endswith("/desktops/rebuild"):
        return "rebuild"
    if any(part in path for part in _JOB_PATHS):
        return "jobs"
    if "/desktops" in path:
        return "list"
    return "other"


class PacedTransport(httpx.BaseTransport):
    """Waits for the operation's limiter, then sends through ``inner``."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        limiter: RateLimiter | None,
        *,
        per_operation: Mapping[str, RateLimiter] | None = None,
    ) -> None:
        unknown = set(per_operation or ()) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"unknown operations: {', '.join(sorted(unknown))}")
        self.inner = inner
        self.limiter = limiter
        self.per_operation = dict(per_operation or {})

    def limiter_for(self, request: httpx.Request) -> RateLimiter | None:
        operation = operation_of(request)
        if operation is None:
            return None
        return self.per_operation.get(operation, self.limiter)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        limiter = self.limiter_for(request)
        if limiter is not None:
            limiter.acquire()
        response = self.inner.handle_request(request)
        if limiter is not None and response.status_code == 429:
            # One hold for every thread, enforced by the limiter on the next acquire: callers
            # retrying each on their own would come back together and get 429 again.
            hold = limiter.throttled(parse_retry_after(response.headers.get("Retry-After")))
            response.extensions[HOLD] = hold
            log.info("%s %s: throttled; its calls hold back %.1fs", request.method, request.url.path, hold)
        return response

    def close(self) -> None:
        self.inner.close()
