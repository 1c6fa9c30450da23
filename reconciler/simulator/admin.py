"""The admin API under ``/_simulator/`` (not part of Huawei's API): inspect and steer the fake cloud.

No I/O. Loopback clients only (403 otherwise), no authentication, no faults, no rate limit.

    GET   /_simulator/desktops          every desktop: id, name, image_id, status, task_status,
                                        login_status, rebuild_count, tags, pool_id,
                                        enterprise_project_id, user_name, fail_rebuilds, created,
                                        architecture, system_disk_size, frozen, in_maintenance_mode
    GET   /_simulator/desktops/{id}     one of them
    POST  /_simulator/desktops          add a desktop (fields of a fleet file desktop) -> 201
    PATCH /_simulator/desktops/{id}     change image_id, status, login_status, task_status, fail_rebuilds,
                                        frozen, in_maintenance_mode, architecture, system_disk_size
    GET   /_simulator/faults            the current behaviour knobs
    PUT   /_simulator/faults            change any behaviour knob but seed; returns the behaviour
    GET   /_simulator/jobs              every job with its request fields and exact sub-job times
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.simulator import loader, render, spec
from reconciler.simulator.state import SimState
from reconciler.simulator.wsgi import ApiError, Request, Response

ADMIN_PREFIX = "/_simulator/"
PATCHABLE = (
    "image_id", "status", "login_status", "task_status", "fail_rebuilds", "frozen", "in_maintenance_mode",
    "architecture", "system_disk_size",
)


def _bad(problems: list[str] | str) -> ApiError:
    return ApiError(400, "SIM.0400", problems if isinstance(problems, str) else "; ".join(problems))


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def _object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    return body


class AdminApi:
    def __init__(self, state: SimState, clock: Callable[[], float]) -> None:
        self.state = state
        self.clock = clock

    def handle(self, request: Request) -> Response:
        if not is_loopback(request.remote_addr):
            raise ApiError(403, "SIM.0403", "the simulator admin API only answers loopback clients")
        parts = request.path[len(ADMIN_PREFIX):].split("/")
        with self.state.lock:
            now = self.clock()
            self.state.settle(now)
            return self._route(request, parts, now)

    def _route(self, request: Request, parts: list[str], now: float) -> Response:
        method = request.method
        if parts == ["desktops"]:
            if method == "GET":
                return Response(200, {"desktops": [render.admin_desktop(r) for r in self.state.fleet]})
            if method == "POST":
                return self._add_desktop(_object(request), now)
            raise self._not_allowed(method, "GET, POST")
        if len(parts) == 2 and parts[0] == "desktops":
            record = self.state.fleet.by_id.get(parts[1])
            if record is None:
                raise ApiError(404, "SIM.0404", f"desktop {parts[1]} not found")
            if method == "GET":
                return Response(200, render.admin_desktop(record))
            if method == "PATCH":
                return self._patch_desktop(record.id, _object(request))
            raise self._not_allowed(method, "GET, PATCH")
        if parts == ["faults"]:
            if method == "GET":
                return Response(200, self.state.behaviour.to_dict())
            if method == "PUT":
                return self._put_faults(_object(request), now)
            raise self._not_allowed(method, "GET, PUT")
        if parts == ["stats"]:
            if method == "GET":
                return Response(200, self._stats())
            raise self._not_allowed(method, "GET")
        if parts == ["jobs"]:
            if method == "GET":
                return Response(200, {"jobs": [render.admin_job(j, now) for j in self.state.jobs.jobs.values()]})
            raise self._not_allowed(method, "GET")
        raise ApiError(404, "SIM.0404", f"no admin API {method} {request.path}")

    def _stats(self) -> dict[str, Any]:
        """Workspace API calls served so far, by API and outcome (HTTP status or ``dropped``)."""
        calls: dict[str, dict[str, int]] = {}
        for (api, outcome), count in sorted(self.state.stats.items()):
            calls.setdefault(api, {})[outcome] = count
        total = sum(self.state.stats.values())
        throttled = sum(n for (_, outcome), n in self.state.stats.items() if outcome == "429")
        return {"calls": calls, "total": total, "throttled": throttled}

    @staticmethod
    def _not_allowed(method: str, allowed: str) -> ApiError:
        return ApiError(405, "SIM.0405", f"method {method} is not allowed here (use {allowed})",
                        headers=[("Allow", allowed)])

    def _patch_desktop(self, desktop_id: str, body: Mapping[str, Any]) -> Response:
        problems = [f"{key}: unknown field (patchable: {', '.join(PATCHABLE)})" for key in body if key not in PATCHABLE]
        checks: dict[str, tuple[Callable[[Any], bool], str]] = {
            "image_id": (lambda v: isinstance(v, str) and v in self.state.images, "must be an image of the fleet"),
            "status": (lambda v: isinstance(v, str) and v in spec.DESKTOP_STATUSES, f"must be one of {', '.join(spec.DESKTOP_STATUSES)}"),
            "login_status": (lambda v: isinstance(v, str) and v in spec.LOGIN_STATUSES, f"must be one of {', '.join(spec.LOGIN_STATUSES)}"),
            "task_status": (lambda v: isinstance(v, str) and len(v) <= 64, "must be a string of at most 64 characters"),
            "fail_rebuilds": (lambda v: isinstance(v, bool), "must be true or false"),
            "frozen": (lambda v: isinstance(v, bool), "must be true or false"),
            "in_maintenance_mode": (lambda v: isinstance(v, bool), "must be true or false"),
            "architecture": (lambda v: v in ("x86", "arm"), "must be x86 or arm"),
            "system_disk_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 32768,
                                 "must be an integer from 1 to 32768 (GB)"),
        }
        for key, (valid, rule) in checks.items():
            if key in body and not valid(body[key]):
                problems.append(f"{key}: {rule} (got {body[key]!r})")
        if problems:
            raise _bad(problems)
        changes = dict(body)
        if "task_status" in changes:
            # The admin takes over the task status: a running rebuild no longer clears it.
            changes["rebuild"] = None
        record = self.state.fleet.by_id[desktop_id]
        self.state.fleet.update(record, **changes)
        return Response(200, render.admin_desktop(record))

    def _add_desktop(self, body: dict[str, Any], now: float) -> Response:
        problems = [f"{loader.format_path(p.path)}: {p.message}" for p in loader.schema_problems(body, "#/$defs/desktop")]
        if problems:
            raise _bad(problems)
        loader.apply_defaults(body, {"$ref": "#/$defs/desktop"})
        desktop = spec.desktop_from_dict(self.state.project_id, body)
        fleet = self.state.fleet
        if desktop.image_id not in self.state.images:
            problems.append(f"image_id: image {desktop.image_id!r} is not an image of the fleet")
        if desktop.id in fleet.by_id:
            problems.append(f"id: a desktop with id {desktop.id!r} already exists")
        if desktop.name in fleet.by_name:
            problems.append(f"name: a desktop named {desktop.name!r} already exists")
        if problems:
            raise _bad(problems)
        record = fleet.add_spec(desktop, fleet.next_created(now))
        return Response(201, render.admin_desktop(record))

    def _put_faults(self, body: dict[str, Any], now: float) -> Response:
        if "seed" in body:
            raise _bad("seed: cannot be changed at run time (it is fixed by the fleet file)")
        problems = [f"{loader.format_path(p.path)}: {p.message}" for p in loader.schema_problems(body, "#/$defs/behaviour")]
        if problems:
            raise _bad(problems)
        self.state.set_behaviour(self.state.behaviour.replace(body), now)
        return Response(200, self.state.behaviour.to_dict())
