"""Validation of Workspace API input: desktops/detail and sub-job queries, rebuild bodies.

No I/O. Problems are collected and reported together as one 400 whose error_msg names every
offending field (``desktop_ids: must hold 1 to 100 items; image_type: ...``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from reconciler.simulator.fleet import DesktopQuery
from reconciler.simulator.jobs import JOB_STATUSES
from reconciler.simulator.spec import IMAGE_TYPES
from reconciler.simulator.wsgi import ApiError

BAD_REQUEST = "WKS.00010400"
DEFAULT_DESKTOP_LIMIT = 500
DEFAULT_SUB_JOB_LIMIT = 1000
MAX_LIMIT = 1000
MAX_REBUILD_DESKTOPS = 100
INT32_MAX = 2**31 - 1

# desktops/detail filters the simulator answers, and the query key -> indexed field they use.
_MULTI_FILTERS = {"desktop_id": "id", "pool_id": "pool_id", "computer_names": "name", "user_names": "user_name"}
_SINGLE_FILTERS = {
    "status": "status", "computer_name": "name", "user_name": "user_name", "image_id": "image_id",
    "enterprise_project_id": "enterprise_project_id", "desktop_type": "desktop_type",
}
# Filters the SDK can send that the simulator does not model: refused rather than silently
# ignored, since ignoring a filter would return desktops the caller did not ask for.
_UNSUPPORTED_FILTERS = (
    "user_id", "desktop_ip", "domain_status", "user_attached", "charge_mode", "is_share_desktop",
    "subnet_id", "is_support_internet", "availability_zone", "without_any_tag", "agent_version",
)


def bad_request(problems: Sequence[str]) -> ApiError:
    return ApiError(400, BAD_REQUEST, "; ".join(problems))


@dataclass(frozen=True)
class ListQuery:
    query: DesktopQuery
    offset: int
    limit: int
    descending: bool


@dataclass(frozen=True)
class SubJobQuery:
    job_id: str | None
    job_type: str | None
    status: str | None
    pool_filtered: bool
    offset: int
    limit: int


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


def _single(grouped: Mapping[str, list[str]], key: str, problems: list[str]) -> str | None:
    values = [v for v in grouped.get(key, []) if v != ""]
    if len(values) > 1:
        problems.append(f"{key}: give at most one value")
    return values[-1] if values else None


def _int_param(grouped: Mapping[str, list[str]], key: str, low: int, high: int | None, problems: list[str]) -> int | None:
    text = _single(grouped, key, problems)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        problems.append(f"{key}: must be an integer {bound} (got {text!r})")
        return None
    return value


def _csv(values: list[str]) -> set[str]:
    return {item for value in values for item in value.split(",") if item}


def _tag_pairs(values: list[str], problems: list[str]) -> set[tuple[str, str]]:
    pairs = set()
    for part in (item for value in values for item in value.split(",") if item):
        key, sep, val = part.partition("=")
        if not sep or not key:
            problems.append(f"tag: expected key=value pairs separated by commas (got {part!r})")
            continue
        pairs.add((key, val))
    return pairs


def parse_list_query(pairs: Sequence[tuple[str, str]]) -> ListQuery:
    """desktops/detail query parameters; 400 ApiError listing every problem."""
    grouped, problems = _grouped(pairs), list[str]()
    constraints: list[tuple[str, Any]] = []
    for key, field in _MULTI_FILTERS.items():
        if key in grouped and _csv(grouped[key]):
            constraints.append((field, _csv(grouped[key])))
    for key, field in _SINGLE_FILTERS.items():
        value = _single(grouped, key, problems)
        if value is not None:
            constraints.append((field, {value}))
    constraints += [("tag", {pair}) for pair in _tag_pairs(grouped.get("tag", []), problems)]
    maintenance = _single(grouped, "in_maintenance_mode", problems)
    if maintenance not in (None, "true", "false"):
        problems.append(f"in_maintenance_mode: must be true or false (got {maintenance!r})")
    elif maintenance is not None:
        constraints.append(("in_maintenance_mode", {maintenance == "true"}))
    problems += [f"{key}: filter not supported by the simulator" for key in _UNSUPPORTED_FILTERS if key in grouped]
    descending = _sort_order(grouped, problems)
    offset = _int_param(grouped, "offset", 0, None, problems)
    limit = _int_param(grouped, "limit", 0, MAX_LIMIT, problems)
    if problems:
        raise bad_request(problems)
    return ListQuery(DesktopQuery.of(constraints), offset or 0, limit or DEFAULT_DESKTOP_LIMIT, descending)


def _sort_order(grouped: Mapping[str, list[str]], problems: list[str]) -> bool:
    field = _single(grouped, "sort_field", problems)
    order = _single(grouped, "sort_type", problems)
    if field not in (None, "created"):
        problems.append(f"sort_field: only 'created' is supported by the simulator (got {field!r})")
    if order is not None and order.upper() not in ("ASC", "DESC"):
        problems.append(f"sort_type: must be ASC or DESC (got {order!r})")
    return order is not None and order.upper() == "DESC"


def parse_sub_job_query(pairs: Sequence[tuple[str, str]]) -> SubJobQuery:
    """workspace-sub-jobs query parameters; 400 ApiError listing every problem."""
    grouped, problems = _grouped(pairs), list[str]()
    status = _single(grouped, "status", problems)
    if status is not None and status not in JOB_STATUSES:
        problems.append(f"status: must be one of {', '.join(JOB_STATUSES)} (got {status!r})")
    query = SubJobQuery(
        job_id=_single(grouped, "job_id", problems),
        job_type=_single(grouped, "job_type", problems),
        status=status,
        pool_filtered=_single(grouped, "desktop_pool_id", problems) is not None,
        offset=_int_param(grouped, "offset", 0, None, problems) or 0,
        limit=_int_param(grouped, "limit", 0, MAX_LIMIT, problems) or DEFAULT_SUB_JOB_LIMIT,
    )
    if problems:
        raise bad_request(problems)
    return query


@dataclass(frozen=True)
class RebuildRequest:
    """A validated body of POST desktops/rebuild."""

    desktop_ids: tuple[str, ...]
    image_type: str
    image_id: str
    os_type: str | None = None
    delay_time: int | None = None
    message: str | None = None
    order_id: str | None = None
    enterprise_project_id: str | None = None
    encrypt_type: Any = None
    kms_id: Any = None
    handle_type: Any = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["desktop_ids"] = list(self.desktop_ids)
        return data


def _string(body: Mapping[str, Any], key: str, problems: list[str], required: bool, max_len: int) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            problems.append(f"{key}: is required")
        return None
    if not isinstance(value, str):
        problems.append(f"{key}: must be a string")
    elif required and not value:
        problems.append(f"{key}: must not be empty")
    elif len(value) > max_len:
        problems.append(f"{key}: must be at most {max_len} characters long")
    else:
        return value
    return None


def _desktop_ids(body: Mapping[str, Any], problems: list[str]) -> tuple[str, ...]:
    ids = body.get("desktop_ids")
    if ids is None:
        problems.append("desktop_ids: is required")
        return ()
    if not isinstance(ids, list):
        problems.append("desktop_ids: must be a list of desktop ids")
        return ()
    if not 1 <= len(ids) <= MAX_REBUILD_DESKTOPS:
        problems.append(f"desktop_ids: must hold 1 to {MAX_REBUILD_DESKTOPS} items (got {len(ids)})")
    bad = [i for i, v in enumerate(ids) if not isinstance(v, str) or not 1 <= len(v) <= 255]
    if bad:
        problems.append(f"desktop_ids[{bad[0]}]: must be a string of 1 to 255 characters")
        return ()
    duplicates = sorted(v for v, n in Counter(ids).items() if n > 1)
    if duplicates:
        problems.append(f"desktop_ids: duplicate ids {', '.join(duplicates)}")
    return tuple(ids)


def _delay_time(body: Mapping[str, Any], problems: list[str]) -> int | None:
    value = body.get("delay_time")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT32_MAX:
        problems.append(f"delay_time: must be an integer from 0 to {INT32_MAX} (minutes)")
        return None
    return value


def parse_rebuild(body: Any) -> RebuildRequest:
    """Shape checks of a rebuild body (ids and images are checked against the fleet later)."""
    if not isinstance(body, dict):
        raise bad_request(["the request body must be a JSON object"])
    problems: list[str] = []
    ids = _desktop_ids(body, problems)
    image_type = _string(body, "image_type", problems, True, 64)
    if image_type is not None and image_type not in IMAGE_TYPES:
        problems.append(f"image_type: must be one of {', '.join(IMAGE_TYPES)} (got {image_type!r})")
    image_id = _string(body, "image_id", problems, True, 255)
    os_type = _string(body, "os_type", problems, False, 64)
    delay_time = _delay_time(body, problems)
    message = _string(body, "message", problems, False, 400)
    order_id = _string(body, "order_id", problems, False, 255)
    enterprise_project_id = _string(body, "enterprise_project_id", problems, False, 36)
    if problems or image_type is None or image_id is None:
        raise bad_request(problems)
    return RebuildRequest(
        ids, image_type, image_id, os_type, delay_time, message, order_id, enterprise_project_id,
        encrypt_type=body.get("encrypt_type"), kms_id=body.get("kms_id"), handle_type=body.get("handle_type"),
    )
