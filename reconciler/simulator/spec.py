"""The fleet definition as immutable values: what a fleet file declares, defaults applied.

No I/O. `loader.py` builds these from YAML; `state.py` turns them into the mutable simulated cloud.
Defaults are not repeated here: the loader fills them in from the JSON Schema, the one place
they are written down.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Statuses in which the real service accepts a rebuild; anything else is "busy" (409).
REBUILDABLE_STATUSES = frozenset({"ACTIVE", "SHUTOFF", "ERROR"})
DESKTOP_STATUSES = (
    "ACTIVE", "SHUTOFF", "ERROR", "HIBERNATED", "STARTING", "STOPPING", "RESTARTING",
    "HIBERNATING", "AWAKENING",
)
LOGIN_STATUSES = ("UNREGISTER", "REGISTERED", "CONNECTED", "DISCONNECTED")
IMAGE_TYPES = ("gold", "private", "market")


@dataclass(frozen=True)
class Credential:
    ak: str
    sk: str


@dataclass(frozen=True)
class User:
    name: str
    password: str
    domain: str


@dataclass(frozen=True)
class Image:
    id: str
    type: str
    os_type: str
    name: str
    os_version: str
    # Defaults let a simulator state saved before these existed load again.
    architecture: str = "x86"
    min_disk: int = 40
    min_ram: int = 0


@dataclass(frozen=True)
class DesktopSpec:
    id: str
    name: str
    image_id: str
    tags: tuple[tuple[str, str], ...]
    pool_id: str | None
    status: str
    login_status: str
    task_status: str
    enterprise_project_id: str
    user_name: str | None
    fail_rebuilds: bool
    architecture: str = "x86"
    system_disk_size: int = 80
    frozen: bool = False
    in_maintenance_mode: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tags"] = dict(self.tags)
        return data


@dataclass(frozen=True)
class Behaviour:
    seed: int
    job_seconds: float
    failure_rate: float
    rate_limit_per_minute: float | None
    rate_limit_burst: int | None
    latency_seconds: float
    error_rate: float
    throttle_rate: float
    drop_before_rate: float
    drop_after_rate: float
    honour_delay_time: bool
    auth_lockout_failures: int
    auth_lockout_seconds: float

    @property
    def burst(self) -> int | None:
        """Bucket capacity: the explicit burst, else one minute's worth of calls (at least 1)."""
        if self.rate_limit_per_minute is None:
            return None
        if self.rate_limit_burst is not None:
            return self.rate_limit_burst
        return max(1, int(self.rate_limit_per_minute))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, changes: Mapping[str, Any]) -> Behaviour:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FleetSpec:
    project_id: str
    credentials: tuple[Credential, ...]
    users: tuple[User, ...]
    images: tuple[Image, ...]
    desktops: tuple[DesktopSpec, ...]
    behaviour: Behaviour
    source: str

    @property
    def auth_required(self) -> bool:
        return bool(self.credentials or self.users)


def derived_desktop_id(project_id: str, name: str) -> str:
    """Deterministic desktop id for a name: the same fleet file always yields the same ids."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"reconciler-simulator:{project_id}:{name}"))


def image_from_dict(data: Mapping[str, Any]) -> Image:
    return Image(
        id=data["id"],
        type=data["type"],
        os_type=data["os_type"],
        name=data["name"] if data.get("name") is not None else data["id"],
        os_version=data["os_version"],
        architecture=data["architecture"],
        min_disk=data["min_disk"],
        min_ram=data["min_ram"],
    )


def desktop_from_dict(project_id: str, data: Mapping[str, Any]) -> DesktopSpec:
    """A desktop from a defaults-filled fleet entry (or admin API body)."""
    return DesktopSpec(
        id=data.get("id") or derived_desktop_id(project_id, data["name"]),
        name=data["name"],
        image_id=data["image_id"],
        tags=tuple(sorted(data["tags"].items())),
        pool_id=data["pool_id"],
        status=data["status"],
        login_status=data["login_status"],
        task_status=data.get("task_status", ""),
        enterprise_project_id=data["enterprise_project_id"],
        user_name=data["user_name"],
        fail_rebuilds=data["fail_rebuilds"],
        **_fit(data),
    )


def _fit(data: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes that decide which images fit a desktop and whether it can be rebuilt."""
    return {name: data[name] for name in ("architecture", "system_disk_size", "frozen", "in_maintenance_mode")}


def generated_names(entry: Mapping[str, Any]) -> Iterator[str]:
    """`{name_prefix}{index}` zero-padded to the width of the largest index."""
    start, count = entry["start"], entry["count"]
    width = len(str(start + count - 1))
    prefix = entry["name_prefix"]
    for index in range(start, start + count):
        yield f"{prefix}{index:0{width}d}"


def generated_desktops(project_id: str, entry: Mapping[str, Any]) -> Iterator[DesktopSpec]:
    tags = tuple(sorted(entry["tags"].items()))
    for name in generated_names(entry):
        yield DesktopSpec(
            id=derived_desktop_id(project_id, name),
            name=name,
            image_id=entry["image_id"],
            tags=tags,
            pool_id=entry["pool_id"],
            status=entry["status"],
            login_status=entry["login_status"],
            task_status="",
            enterprise_project_id=entry["enterprise_project_id"],
            user_name=entry["user_name"],
            fail_rebuilds=entry["fail_rebuilds"],
            **_fit(entry),
        )


def behaviour_from_dict(data: Mapping[str, Any]) -> Behaviour:
    names = [field.name for field in dataclasses.fields(Behaviour)]
    return Behaviour(**{name: data[name] for name in names})
