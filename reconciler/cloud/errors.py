"""Errors raised by the Workspace client. No I/O.

Every API error carries the HTTP status, the service's ``error_code`` and ``error_msg``, and the
``X-Request-Id`` of the response, which is what Huawei support asks for.
"""

from __future__ import annotations

from reconciler.errors import ReconcilerError


class WorkspaceError(ReconcilerError):
    """A Workspace API call failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        error_msg: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id

    def __str__(self) -> str:
        text = super().__str__()
        details = [f"HTTP {self.status}" if self.status is not None else None, self.error_code]
        if self.request_id:
            details.append(f"request id {self.request_id}")
        shown = ", ".join(d for d in details if d)
        return f"{text} ({shown})" if shown else text


class BadRequest(WorkspaceError):
    """400: the service rejected the request's fields."""


class AuthFailure(WorkspaceError):
    """401: bad or expired token, or an AK/SK signature the gateway refused."""


class Forbidden(WorkspaceError):
    """403: the credentials lack the permission (e.g. ``workspace:desktops:rebuild``)."""


class NotFound(WorkspaceError):
    """404: unknown desktop, job or project."""


class Busy(WorkspaceError):
    """409 (``WKS.00010032``): a desktop's current state refuses the operation."""


class Throttled(WorkspaceError):
    """429 (``APIG.0308``) after every retry was used."""


class ServerError(WorkspaceError):
    """5xx after every retry was used, or a response that is not the API's JSON."""


class OperationFailed(WorkspaceError):
    """HTTP 200 that carries an ``error_code`` instead of a result (some WKS errors do)."""


class ConnectionFailed(WorkspaceError):
    """The request never reached the service (DNS, refused connection, connect timeout)."""


class UnknownOutcome(WorkspaceError):
    """The request was sent and no answer proves what became of it: none came back, or a 5xx,
    a redirect, or a 200 without the API's JSON and ``job_id``. It may have been processed, and
    a gateway may still deliver it later.

    Raised only for calls that change something (rebuild). They are never re-sent blindly:
    the caller must first find out from the live API what happened.
    """
