"""The simulator's WSGI application: routing, the Workspace and IAM endpoints, faults and limits.

No I/O of its own beyond reading request bodies; the only side effect besides the model is
``sleep`` for injected latency. Every request takes the model lock twice at most: once to draw
its faults, once to be processed; sleeping for latency happens outside the lock.

Order of checks for a /v2 call: route (404 APIG.0101 / 405) -> drop_before -> latency ->
error_rate (500) -> authentication (401 APIG.0301) -> rate limit and throttle_rate (429
APIG.0308) -> project (404 WKS.00010404) -> the endpoint itself -> drop_after.

Behaviour worth knowing (where Huawei documents nothing, the conservative choice):

- Authentication: AK/SK signature or an ``X-Auth-Token`` issued by ``POST /v3/auth/tokens``
  on this same server. A fleet with neither credentials nor users is open: auth headers are
  ignored. An ``X-Project-Id`` header that differs from the path's project is 401; a path
  project that is not the fleet's is 404. Calls that fail authentication spend no rate tokens.
- desktops/detail: filters combine with AND, values of one filter (``desktop_id``,
  ``pool_id``, ``computer_names``, ``user_names``: comma-joined and/or repeated keys) with OR;
  ``tag`` pairs must all match; ``computer_name`` and ``user_name`` match exactly; the order is
  creation order (``sort_type=DESC`` reverses it). SDK filters the simulator does not model
  (``desktop_ip``, ``subnet_id`` ...) are refused with 400 rather than silently ignored.
- Rebuild: 400 for bad input (every problem listed) or an image that is unknown or of another
  image_type, 404 naming unknown desktops, 409 WKS.00010032 naming busy ones; the whole
  request is refused in each case. Accepted desktops get ``task_status`` ``rebuilding`` until
  their sub-job ends; success changes the image (an ERROR desktop becomes ACTIVE), failure
  (WKS.00010508) leaves image and status alone. ``delay_time`` only delays the job with the
  ``honour_delay_time`` knob.
- Rebuilds of frozen desktops (``is_freeze``) or desktops in maintenance mode are refused
  with 409 WKS.00010032 like busy ones.
- Images: ``images`` lists the gold and private images (filters AND-ed, ``limit`` up to 100),
  ``market-images`` the market images among ``image_ids``; ids it does not know are left out.
- Jobs: ``end_time``, ``error_code`` and ``fail_reason`` are null until a sub-job ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.simulator import catalogue, render
from reconciler.simulator.admin import AdminApi
from reconciler.simulator.limits import Faults, draw_faults
from reconciler.simulator.state import NOT_FOUND, SimState
from reconciler.simulator.validation import parse_list_query, parse_rebuild, parse_sub_job_query
from reconciler.simulator.wsgi import ApiError, ConnectionDropped, Request, Response, start

THROTTLED = "APIG.0308"
INTERNAL_ERROR = "WKS.00010500"
NO_SUCH_API = "APIG.0101"
IAM_TOKENS_PATH = "/v3/auth/tokens"

Handler = Callable[[Request, dict[str, str], float], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str


_SEGMENT = r"(?P<{}>[^/]+)"
_ROUTES = (
    Route("POST", re.compile(rf"^/v2/{_SEGMENT.format('project')}/desktops/rebuild$"), "rebuild"),
    Route("GET", re.compile(rf"^/v2/{_SEGMENT.format('project')}/desktops/detail$"), "list_desktops"),
    Route("GET", re.compile(rf"^/v2/{_SEGMENT.format('project')}/desktops/{_SEGMENT.format('desktop_id')}$"), "show_desktop"),
    Route("GET", re.compile(rf"^/v2/{_SEGMENT.format('project')}/workspace-jobs/{_SEGMENT.format('job_id')}$"), "show_job"),
    Route("GET", re.compile(rf"^/v2/{_SEGMENT.format('project')}/workspace-sub-jobs$"), "list_sub_jobs"),
    Route("GET", re.compile(rf"^/v2/{_SEGMENT.format('project')}/images$"), "list_images"),
    Route("GET", re.compile(rf"^/v2/{_SEGMENT.format('project')}/market-images$"), "list_market_images"),
)


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for a /v2 path; 404 when no API has that path, 405 when the method differs."""
    allowed = []
    for route in _ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict()
        allowed.append(route.method)
    allowed = sorted(set(allowed))
    if allowed:
        raise ApiError(405, "WKS.00010405", f"method {method} is not allowed here (use {', '.join(allowed)})",
                       headers=[("Allow", ", ".join(allowed))])
    raise ApiError(404, NO_SUCH_API, f"no API {method} {path}: the API does not exist or has not been published")


class WorkspaceApp:
    """WSGI callable serving Workspace /v2 endpoints, IAM tokens and the admin API."""

    def __init__(self, state: SimState, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.state = state
        self.clock = clock
        self.sleep = sleep
        self.admin = AdminApi(state, clock)
        self._handlers: dict[str, Handler] = {
            "rebuild": self._rebuild, "list_desktops": self._list_desktops, "show_desktop": self._show_desktop,
            "show_job": self._show_job, "list_sub_jobs": self._list_sub_jobs,
            "list_images": self._list_images, "list_market_images": self._list_market_images,
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request.from_environ(environ)
        request_id = self.state.next_request_id()
        try:
            response = self._dispatch(request)
        except ApiError as error:
            response = error.response()
        return start(response, start_response, request_id)

    def _dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_simulator/"):
            return self.admin.handle(request)
        if request.path == IAM_TOKENS_PATH:
            return self._issue_token(request)
        if request.path.startswith("/v2/"):
            return self._v2(request)
        raise ApiError(404, NO_SUCH_API, f"no API {request.method} {request.path}")

    # --- /v2 pipeline --------------------------------------------------------------------------

    def _v2(self, request: Request) -> Response:
        route, params = match_route(request.method, request.path)
        try:
            response = self._v2_route(request, route, params)
        except ConnectionDropped:
            self.state.count(route.name, "dropped")
            raise
        self.state.count(route.name, str(response.status))
        return response

    def _v2_route(self, request: Request, route: Route, params: dict[str, str]) -> Response:
        with self.state.lock:
            faults = draw_faults(self.state.rng_faults, self.state.behaviour)
            latency = self.state.behaviour.latency_seconds
        if faults.drop_before:
            raise ConnectionDropped("drop_before_rate: request not processed")
        if latency > 0:
            self.sleep(latency)
        with self.state.lock:
            now = self.clock()
            self.state.settle(now)
            try:
                response = self._guarded(request, route, params, faults, now)
            except ApiError as error:
                response = error.response()
        if faults.drop_after:
            raise ConnectionDropped("drop_after_rate: request processed, response not sent")
        return response

    def _guarded(self, request: Request, route: Route, params: dict[str, str], faults: Faults, now: float) -> Response:
        state = self.state
        if faults.error:
            raise ApiError(500, INTERNAL_ERROR, "internal error (injected by the simulator's error_rate)")
        state.auth.authenticate(request, now, state.behaviour, params["project"])
        wait = state.bucket.take(now)
        if wait is not None:
            raise ApiError(429, THROTTLED, "the API request rate exceeds the limit; retry later",
                           headers=[("Retry-After", str(wait))])
        if faults.throttle:
            raise ApiError(429, THROTTLED, "the API request rate exceeds the limit (injected by throttle_rate)",
                           headers=[("Retry-After", "1")])
        if params["project"] != state.project_id:
            raise ApiError(404, NOT_FOUND, f"project {params['project']} not found")
        return self._handlers[route.name](request, params, now)

    # --- endpoints -----------------------------------------------------------------------------

    def _rebuild(self, request: Request, params: dict[str, str], now: float) -> Response:
        job = self.state.accept_rebuild(parse_rebuild(request.json()), now)
        return Response(200, {"job_id": job.id})

    def _list_desktops(self, request: Request, params: dict[str, str], now: float) -> Response:
        query = parse_list_query(request.query)
        fleet = self.state.fleet
        ordinals = fleet.query(query.query)
        total = len(ordinals)
        chosen: Sequence[int]
        if query.descending:
            start_at = max(total - query.offset - query.limit, 0)
            chosen = list(reversed(ordinals[start_at:max(total - query.offset, 0)]))
        else:
            chosen = ordinals[query.offset:query.offset + query.limit]
        images = self.state.images
        desktops = [render.desktop(fleet.desktops[i], images, now) for i in chosen]
        return Response(200, {"desktops": desktops, "total_count": total})

    def _show_desktop(self, request: Request, params: dict[str, str], now: float) -> Response:
        record = self.state.fleet.by_id.get(params["desktop_id"])
        if record is None:
            raise ApiError(404, NOT_FOUND, f"desktop {params['desktop_id']} not found")
        return Response(200, {"desktop": render.desktop(record, self.state.images, now)})

    def _show_job(self, request: Request, params: dict[str, str], now: float) -> Response:
        job = self.state.jobs.jobs.get(params["job_id"])
        if job is None:
            raise ApiError(404, NOT_FOUND, f"job {params['job_id']} not found")
        return Response(200, render.job(job, self.state.project_id, now))

    def _list_sub_jobs(self, request: Request, params: dict[str, str], now: float) -> Response:
        query = parse_sub_job_query(request.query)
        subs = [] if query.pool_filtered else self.state.jobs.sub_jobs(query.job_id, query.job_type, query.status, now)
        page = subs[query.offset:query.offset + query.limit]
        jobs = [render.sub_job(sub, self.state.project_id, now) for sub in page]
        return Response(200, {"total_count": len(subs), "jobs": jobs})

    def _list_images(self, request: Request, params: dict[str, str], now: float) -> Response:
        page, total = catalogue.list_images(self.state.images.values(), catalogue.parse_image_query(request.query))
        return Response(200, {"images": [catalogue.image_info(i) for i in page], "total_count": total})

    def _list_market_images(self, request: Request, params: dict[str, str], now: float) -> Response:
        images = self.state.images
        found = [images[i] for i in catalogue.parse_market_ids(request.query) if i in images and images[i].type == "market"]
        return Response(200, {"images": [catalogue.market_image(i) for i in found]})

    # --- IAM -----------------------------------------------------------------------------------

    def _issue_token(self, request: Request) -> Response:
        if request.method != "POST":
            raise ApiError(405, "IAM.0405", f"method {request.method} is not allowed here (use POST)",
                           headers=[("Allow", "POST")], iam=True)
        body = request.json(iam=True)
        with self.state.lock:
            token, payload = self.state.auth.issue_token(body, self.clock(), self.state.behaviour.seed)
        return Response(201, payload, (("X-Subject-Token", token),))
