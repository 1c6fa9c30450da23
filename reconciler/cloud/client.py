"""``WorkspaceClient``: the Workspace API calls reconciler makes, on httpx. Does network I/O.

The transport is injectable (``transport=``), so tests and the embedded quickstart run the same
code against the simulator's WSGI app; pacing is a transport too (``reconciler.cloud.transport``),
wrapped around either. Retries cover throttling, server errors and connections
that never carried the request; a rebuild whose answer was lost is reported as
``UnknownOutcome`` and never re-sent here, because only the caller can check what happened.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import httpx

from reconciler.cloud import errors
from reconciler.cloud.endpoints import (  # noqa: F401 - re-exported: the client's public helpers
    ID_PATTERN,
    iam_endpoint_for,
    is_loopback,
    region_endpoint,
    validate_endpoint,
)
from reconciler.cloud.models import (
    DESKTOP_PAGE_LIMIT,
    CatalogueImage,
    Desktop,
    DesktopPage,
    ImagePage,
    RebuildRequest,
    SubJob,
)
from reconciler.cloud.pacing import RetryPolicy, parse_retry_after
from reconciler.cloud.signing import canonical_query
from reconciler.cloud.transport import HOLD
from reconciler.model import DEFAULT_LOST_CALL_HORIZON

log = logging.getLogger("reconciler.cloud")

USER_AGENT = "reconciler/0.1"
SUB_JOB_PAGE_LIMIT = 1000
IMAGE_PAGE_LIMIT = 100  # ListImages: limit 0..100
MARKET_IMAGE_IDS_PER_CALL = 100  # ListMarketImages: 1..100 image_ids
DESKTOP_FILTERS = frozenset(
    {"desktop_id", "tag", "image_id", "pool_id", "status", "computer_name", "enterprise_project_id", "user_name"}
)
# Transport failures that happen before a single byte of the request left this machine.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
STATUS_ERRORS: dict[int, type[errors.WorkspaceError]] = {
    400: errors.BadRequest,
    401: errors.AuthFailure,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Busy,
    429: errors.Throttled,
}


def validate_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise errors.BadRequest(f"invalid {kind} {value!r}: expected letters, digits, '-', '_', '.', ':'")
    return value


def _csv(kind: str, values: str | Iterable[str]) -> str:
    items = [values] if isinstance(values, str) else list(values)
    return ",".join(validate_id(kind, v) for v in items)


def _tag_filter(tags: str | Mapping[str, str]) -> str:
    if isinstance(tags, str):
        return tags
    return ",".join(f"{key}={value}" for key, value in sorted(tags.items()))


def desktop_filter_pairs(filters: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Turn keyword filters into query pairs the way the official SDK encodes them."""
    unknown = set(filters) - DESKTOP_FILTERS
    if unknown:
        raise ValueError(f"unknown desktop filters: {', '.join(sorted(unknown))}")
    pairs = []
    for name, value in filters.items():
        if value is None:
            continue
        if name == "desktop_id":
            value = _csv("desktop id", value)
        elif name == "pool_id":
            value = _csv("pool id", value)
        elif name == "tag":
            value = _tag_filter(value)
        pairs.append((name, str(value)))
    return pairs


def _error_fields(body: Any) -> tuple[str | None, str | None]:
    """``error_code``/``error_msg`` in any of the shapes the services use."""
    if not isinstance(body, dict):
        return None, None
    nested = body.get("error")
    if isinstance(nested, dict):
        body = nested
    for code_key, msg_key in (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message")):
        if body.get(code_key) is not None or body.get(msg_key) is not None:
            code = body.get(code_key)
            return (None if code is None else str(code)), body.get(msg_key)
    return None, None


def _request_id(response: httpx.Response) -> str | None:
    request_id: str | None = response.headers.get("X-Request-Id") or response.headers.get("X-Openstack-Request-Id")
    return request_id


def error_from_response(response: httpx.Response, what: str) -> errors.WorkspaceError:
    try:
        body = response.json()
    except ValueError:
        body = None
    code, msg = _error_fields(body)
    status = response.status_code
    cls = STATUS_ERRORS.get(status) or (errors.ServerError if status >= 500 else errors.WorkspaceError)
    if status < 400:
        cls = errors.OperationFailed
    detail = msg or response.reason_phrase or "no error message"
    return cls(f"{what} failed: {detail}", status=status, error_code=code, error_msg=msg, request_id=_request_id(response))


class WorkspaceClient:
    """The Workspace API calls reconciler needs, with retries and typed results (pacing: pass a
    ``PacedTransport``)."""

    def __init__(
        self,
        endpoint: str,
        project_id: str,
        auth: httpx.Auth,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        lost_call_horizon: float = DEFAULT_LOST_CALL_HORIZON,
        retry: RetryPolicy | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.endpoint = validate_endpoint(endpoint)
        self.project_id = validate_id("project id", project_id)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout  # seconds one request may take
        # Seconds after which a rebuild call whose outcome is unknown is taken never to reach the
        # service: a gateway that answered (504) or a connection that was cut may still deliver
        # the request later. Until then its desktops are neither looked up nor sent again.
        self.lost_call_horizon = lost_call_horizon
        # Called with the number of desktops of each desktops/detail page read (progress on a terminal).
        self.on_desktop_page: Callable[[int], None] | None = None
        self._http = httpx.Client(
            auth=auth,
            transport=transport,
            timeout=timeout,
            verify=True,
            follow_redirects=False,
            headers={"User-Agent": user_agent, "Content-Type": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def on_response(self, hook: Callable[[httpx.Response], None]) -> None:
        """Have ``hook`` see every HTTP response, retries included (``watch`` counts API calls
        with it). It runs on the calling thread and must not raise."""
        hooks = self._http.event_hooks
        hooks["response"] = [*hooks.get("response", []), hook]
        self._http.event_hooks = hooks

    def __enter__(self) -> WorkspaceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- API calls ---------------------------------------------------------------------------

    def rebuild_desktops(self, request: RebuildRequest) -> str:
        """Send one rebuild call; return its ``job_id``.

        Raises ``UnknownOutcome`` unless the answer proves the call was refused (a 4xx, or a
        200 carrying an ``error_code``): a 5xx, a redirect, a lost connection, or a 200 that is
        not the API's JSON or carries no ``job_id`` may all come after the job was created.
        """
        for desktop_id in request.desktop_ids:
            validate_id("desktop id", desktop_id)
        data = self._call("POST", "desktops/rebuild", body=request.to_body(), idempotent=False, require="job_id")
        return str(data["job_id"])

    def list_desktops(self, *, offset: int = 0, limit: int = DESKTOP_PAGE_LIMIT, **filters: Any) -> DesktopPage:
        """One page of ``desktops/detail``."""
        query = [("offset", str(offset)), ("limit", str(limit)), *desktop_filter_pairs(filters)]
        data = self._call("GET", "desktops/detail", query=query)
        desktops = tuple(Desktop.from_api(d) for d in data.get("desktops") or ())
        if self.on_desktop_page is not None:
            self.on_desktop_page(len(desktops))
        total = data.get("total_count")
        return DesktopPage(desktops, int(total) if isinstance(total, int) else len(desktops))

    def iter_desktops(self, *, page_size: int = DESKTOP_PAGE_LIMIT, **filters: Any) -> Iterator[Desktop]:
        """Every desktop matching ``filters``, fetched page by page as the caller consumes them.

        A desktop seen on an earlier page is not yielded again if the fleet shifts under the
        offsets while paging.
        """
        seen: set[str] = set()
        offset = 0
        while True:
            page = self.list_desktops(offset=offset, limit=page_size, **filters)
            for desktop in page.desktops:
                if desktop.id not in seen:
                    seen.add(desktop.id)
                    yield desktop
            offset += len(page.desktops)
            if not page.desktops or offset >= page.total_count:
                return

    def list_images(
        self,
        *,
        image_id: str | None = None,
        image_type: str | None = None,
        os_type: str | None = None,
        architecture: str | None = None,
        limit: int = IMAGE_PAGE_LIMIT,
        offset: int = 0,
    ) -> ImagePage:
        """One page of ``GET images`` (ListImages): the project's gold and private images."""
        filters = [("os_type", os_type), ("image_type", image_type), ("architecture", architecture),
                   ("image_id", image_id and validate_id("image id", image_id))]
        query = [(k, v) for k, v in filters if v] + [("limit", str(limit)), ("offset", str(offset))]
        data = self._call("GET", "images", query=query)
        images = tuple(CatalogueImage.from_api(i) for i in data.get("images") or () if isinstance(i, dict))
        total = data.get("total_count")
        return ImagePage(images, int(total) if isinstance(total, int) else len(images))

    def list_market_images(self, image_ids: Iterable[str]) -> tuple[CatalogueImage, ...]:
        """``GET market-images`` (ListMarketImages) for up to 100 ids, sent comma-separated as
        the SDK's ``csv`` collection format does."""
        ids = list(image_ids)
        if not 1 <= len(ids) <= MARKET_IMAGE_IDS_PER_CALL:
            raise ValueError(f"list_market_images takes 1 to {MARKET_IMAGE_IDS_PER_CALL} image ids (got {len(ids)})")
        data = self._call("GET", "market-images", query=[("image_ids", _csv("image id", ids))])
        return tuple(CatalogueImage.from_api(i) for i in data.get("images") or () if isinstance(i, dict))

    def get_desktop(self, desktop_id: str) -> Desktop:
        data = self._call("GET", f"desktops/{validate_id('desktop id', desktop_id)}")
        return Desktop.from_api(data.get("desktop") or {})

    def iter_sub_jobs(
        self, *, job_id: str | None = None, job_type: str | None = None, status: str | None = None
    ) -> Iterator[SubJob]:
        """Sub-jobs (one per desktop) matching the filters, page by page."""
        filters = [("job_id", job_id and validate_id("job id", job_id)), ("job_type", job_type), ("status", status)]
        base = [(k, v) for k, v in filters if v]
        offset = 0
        while True:
            query = [*base, ("limit", str(SUB_JOB_PAGE_LIMIT)), ("offset", str(offset))]
            data = self._call("GET", "workspace-sub-jobs", query=query)
            jobs = data.get("jobs") or ()
            yield from (SubJob.from_api(j) for j in jobs)
            offset += len(jobs)
            total = data.get("total_count")
            if not jobs or not isinstance(total, int) or offset >= total:
                return

    # -- transport ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        idempotent: bool = True,
        require: str | None = None,
    ) -> Any:
        """One API call with retries; returns the decoded JSON body (an object that holds an id
        at key ``require``, when given)."""
        # The query goes out in canonical form, as the SDK sends it, so the gateway and the
        # signer cannot disagree about encodings.
        url = f"{self.endpoint}/v2/{self.project_id}/{path}"
        if query:
            url += "?" + canonical_query(query)
        content = json.dumps(body).encode("utf-8") if body is not None else None
        what = f"{method} {path}"
        for attempt in itertools.count(1):
            try:
                return self._attempt(method, url, content, what, idempotent, require)
            except _Retryable as retryable:
                if attempt >= self.retry.max_attempts:
                    raise retryable.error from None
                if retryable.paced:
                    continue  # the pacing transport holds the retry back, with every other call
                delay = self.retry.delay(attempt, retryable.retry_after)
                log.info("%s: %s; retrying in %.1fs (attempt %d)", what, retryable.error, delay, attempt + 1)
                self.retry.sleep(delay)
        raise AssertionError("unreachable")

    def _attempt(self, method: str, url: str, content: bytes | None, what: str, idempotent: bool, require: str | None) -> Any:
        """Send once and return the decoded body; raise ``_Retryable`` for what may be retried."""
        started = time.monotonic()
        try:
            response = self._http.request(method, url, content=content)
        except NOT_SENT as exc:
            raise _Retryable(errors.ConnectionFailed(f"{what}: cannot reach {self.endpoint}: {exc}")) from None
        except httpx.RequestError as exc:  # also a body that fails to decode (DecodingError)
            if not idempotent:
                raise errors.UnknownOutcome(
                    f"{what}: no answer after sending ({type(exc).__name__}); it may have been processed"
                ) from None
            raise _Retryable(errors.ConnectionFailed(f"{what}: connection lost ({type(exc).__name__})")) from None
        # Every call at info: RECONCILER_LOG=info is how an operator sees what was sent and answered.
        log.info("%s -> HTTP %d in %.0f ms (request id %s)", what, response.status_code,
                 (time.monotonic() - started) * 1000, _request_id(response))
        return self._outcome(response, what, idempotent, require)

    def _outcome(self, response: httpx.Response, what: str, idempotent: bool, require: str | None) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            return _answer(response, what, idempotent, require)
        error = error_from_response(response, what)
        # Only a 4xx proves that the service refused the call. A server error says nothing about
        # what the service did before failing (a gateway that timed out, a backend that created
        # the job and then crashed), nor does a redirect: a call that changes something is never
        # retried blindly, its outcome is looked up instead.
        if not idempotent and not 400 <= status < 500:
            raise _unknown(f"{error.args[0]}; it may have been processed", response, error.error_code, error.error_msg)
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise _Retryable(error, retry_after, paced=status == 429 and HOLD in response.extensions)
        raise error


def _answer(response: httpx.Response, what: str, idempotent: bool, require: str | None) -> Any:
    """The decoded body of a 2xx answer. One that is not JSON, or lacks the id it must carry,
    is an unknown outcome for a call that changes something, unless it names an error."""
    try:
        data = response.json() if response.content else {}
    except ValueError:  # also bytes that are not UTF-8
        problem = "is not JSON"
    else:
        value = data.get(require) if require and isinstance(data, dict) else None
        if require is None or (isinstance(value, str) and ID_PATTERN.fullmatch(value)):
            return data
        code, msg = _error_fields(data)
        if code is not None:  # some Workspace errors come back as 200 with an error_code
            raise errors.OperationFailed(f"{what} failed: {msg or code}", status=response.status_code,
                                         error_code=code, error_msg=msg, request_id=_request_id(response))
        problem = f"carries no {require}"
    if idempotent:
        raise errors.ServerError(f"{what}: the answer {problem}", status=response.status_code, request_id=_request_id(response))
    raise _unknown(f"{what}: the answer {problem}; the call may have been processed", response)


def _unknown(message: str, response: httpx.Response, code: str | None = None, msg: str | None = None) -> errors.UnknownOutcome:
    return errors.UnknownOutcome(message, status=response.status_code, error_code=code, error_msg=msg, request_id=_request_id(response))


class _Retryable(Exception):
    """Internal: an attempt failed in a way that another attempt may fix."""

    def __init__(self, error: errors.WorkspaceError, retry_after: float | None = None, *, paced: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.paced = paced  # a pacing transport already holds the retry back
