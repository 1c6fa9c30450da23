"""The declarative model: what manifests declare and what a plan proposes. Frozen values, no I/O.

Defaults live here (``Rollout``, ``ApiSettings``, ``StateSettings``) and in the manifest schema;
``tests/test_manifest.py`` checks the two agree.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from reconciler.cloud.models import Desktop


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was declared: ``file:line`` (1-based line, 1-based column, 0 = unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    type: str  # gold | private | market
    os_type: str | None = None
    order_id: str | None = None


# Day names as manifests write them; a Window's days are indexes into this (0 = Monday).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Window:
    """Weekly maintenance window. ``days`` are the days the window *opens* (0 = Monday);
    an empty set means every day. ``end <= start`` means the window runs past midnight."""

    start: time
    end: time
    timezone: str
    days: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class FailureBudget:
    """``max_failures``: an absolute count, or a percentage of the group's rebuilds."""

    count: int | None = 0
    percent: float | None = None

    def limit(self, total: int) -> int:
        """How many failed desktops the group tolerates out of ``total``."""
        if self.percent is not None:
            return math.floor(total * self.percent / 100)
        return self.count or 0

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclass(frozen=True, slots=True)
class Rollout:
    batch_size: int = 100
    max_in_flight: int | None = None
    canary: int = 0
    max_failures: FailureBudget = FailureBudget()
    delay_time: int | None = 10
    message: str | None = None
    wait: bool = False
    skip_connected: bool = False
    window: Window | None = None


@dataclass(frozen=True, slots=True)
class Selector:
    """Live desktops a group claims besides its explicit ids. Every given criterion must match."""

    tags: tuple[tuple[str, str], ...] = ()
    pool_id: str | None = None
    enterprise_project_id: str | None = None
    image_id: str | None = None
    name: str | None = None  # glob on computer_name

    def api_filters(self) -> dict[str, Any]:
        """The criteria ``desktops/detail`` can filter on server-side."""
        filters: dict[str, Any] = {}
        if self.tags:
            filters["tag"] = dict(self.tags)
        for key in ("pool_id", "enterprise_project_id", "image_id"):
            value = getattr(self, key)
            if value is not None:
                filters[key] = value
        return filters

    def matches(self, desktop: Desktop) -> bool:
        """The full check, done locally (the name glob has no API filter)."""
        tags = desktop.tag_map
        if any(tags.get(k) != v for k, v in self.tags):
            return False
        if self.enterprise_project_id is not None and desktop.enterprise_project_id != self.enterprise_project_id:
            return False
        if self.image_id is not None and desktop.image_id != self.image_id:
            return False
        return self.name is None or fnmatch.fnmatchcase(desktop.name, self.name)


@dataclass(frozen=True, slots=True)
class DesktopGroup:
    name: str
    image: Image
    rollout: Rollout = Rollout()
    ids: tuple[str, ...] = ()
    selector: Selector | None = None
    labels: tuple[tuple[str, str], ...] = ()
    enterprise_project_id: str = "0"
    source: Location = Location("<unknown>")


# A gateway that answered a rebuild call (504) or lost its connection may still deliver the
# request this long afterwards, by default.
DEFAULT_LOST_CALL_HORIZON = 120.0


@dataclass(frozen=True, slots=True)
class ApiSettings:
    rate_limit_per_minute: float = 100.0
    burst: int = 1  # calls that may go at once after a pause; 1 spreads every call evenly
    # Operations ("list", "rebuild", "jobs") paced by a bucket of their own, calls per minute.
    limits: tuple[tuple[str, float], ...] = ()
    max_concurrent_calls: int = 4
    timeout_seconds: float = 30.0
    poll_interval_seconds: float = 15.0
    lost_call_horizon_seconds: float = DEFAULT_LOST_CALL_HORIZON

    @property
    def lost_call_horizon(self) -> float:
        """Seconds after which a rebuild call whose outcome is unknown is taken never to reach
        the service. Never less than the timeout of one request: a longer timeout raises the
        default (a horizon set below it is refused when the manifests are read)."""
        return max(self.lost_call_horizon_seconds, self.timeout_seconds)


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """``conn_str`` holds no password (``RECONCILER_PG_CONN_STR``, ``PGPASSWORD`` or
    ``~/.pgpass`` supply it); None: ``RECONCILER_PG_CONN_STR`` must be set."""

    conn_str: str | None = None
    schema: str = "reconciler"


@dataclass(frozen=True, slots=True)
class S3Settings:
    """An S3-protocol bucket (OBS, S3, MinIO). ``key`` None: ``<state name>/state.json``."""

    bucket: str | None = None
    key: str | None = None
    endpoint: str | None = None
    region: str | None = None
    addressing_style: str = "virtual"


@dataclass(frozen=True, slots=True)
class StateSettings:
    """``name`` is the state's key in a shared backend (None: the project id)."""

    backend: str = "local"
    path: str = ".reconciler/state.json"
    name: str | None = None
    # Without it, ``path`` must lead inside the manifest directory.
    path_outside_manifests: bool = False
    postgres: PostgresSettings = PostgresSettings()
    s3: S3Settings = S3Settings()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StateSettings:
        """From the manifest's (or a plan's) ``state`` object, nested blocks included."""
        fields = dict(data)
        if "postgres" in fields:
            fields["postgres"] = PostgresSettings(**fields["postgres"])
        if "s3" in fields:
            fields["s3"] = S3Settings(**fields["s3"])
        return cls(**fields)


# What `watch` and `apply` can notify (Settings ``notifications[].events``, all when empty).
NOTIFICATION_EVENTS = ("drift_detected", "apply_started", "apply_finished", "group_halted", "rebuild_failed", "cycle_failed")
NOTIFICATION_FORMATS = ("json", "slack", "feishu", "dingtalk", "wecom")


@dataclass(frozen=True, slots=True)
class NotificationTarget:
    """A webhook to POST events to. Exactly one of ``url`` and ``url_env`` (the name of an
    environment variable holding the URL: robot URLs carry their token). ``format`` None:
    recognised by the URL's host, else plain JSON."""

    url: str | None = None
    url_env: str | None = None
    events: tuple[str, ...] = ()
    format: str | None = None


@dataclass(frozen=True, slots=True)
class SafetySettings:
    # At most this many rebuilds in one run, as a count or a percentage of the managed
    # desktops (the same form as max_failures); None: no limit.
    max_rebuilds_per_run: FailureBudget | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The one ``Settings`` document. ``base_dir`` is the manifest directory that relative
    paths (state, simulator fleet) are resolved against."""

    project_id: str
    region: str | None = None
    endpoint: str | None = None
    simulator_fleet: str | None = None
    enterprise_project_id: str = "0"
    state: StateSettings = StateSettings()
    api: ApiSettings = ApiSettings()
    safety: SafetySettings = SafetySettings()
    notifications: tuple[NotificationTarget, ...] = ()
    base_dir: str = "."
    source: Location = Location("<unknown>")

    def resolve(self, relative: str) -> Path:
        """A path from the settings (state, simulator fleet), resolved against ``base_dir``."""
        return Path(self.base_dir) / relative

    @property
    def state_file(self) -> Path:
        return self.resolve(self.state.path)


class Action(StrEnum):
    REBUILD = "rebuild"
    ADOPT = "adopt"
    FORGET = "forget"
    WAIT = "wait"


# Actions that change something; ``wait`` is reported but is not a change.
CHANGING_ACTIONS = frozenset({Action.REBUILD, Action.ADOPT, Action.FORGET})


class Reason(StrEnum):
    IMAGE_CHANGED = "image_changed"
    NOT_RECORDED = "not_recorded"
    DRIFT = "drift"
    RETRY_FAILED = "retry_failed"
    ALREADY_CURRENT = "already_current"
    LIVE_IMAGE = "live_image"  # apply --refresh-only: the live image recorded as it is
    REMOVED_FROM_MANIFESTS = "removed_from_manifests"
    IN_PROGRESS = "in_progress"
    USER_CONNECTED = "user_connected"
    OUTSIDE_WINDOW = "outside_window"
    REPLACE_REQUESTED = "replace_requested"  # --replace: rebuilt although it runs the desired image
    NOT_REBUILDABLE = "not_rebuildable"  # frozen, in maintenance mode or in a status the API refuses


@dataclass(frozen=True, slots=True)
class Change:
    """One desktop's entry in a plan.

    ``before_image`` is what the desktop runs as far as the plan knows (live when refreshed,
    else recorded); ``after_image`` is the group's desired image (None for ``forget``).
    """

    desktop_id: str
    action: Action
    reason: Reason
    group: str | None
    desktop_name: str | None = None
    before_image: str | None = None
    after_image: str | None = None
    wave: str | None = None
    detail: str | None = None
    pending: Reason | None = None  # for a wait that defers a rebuild (window, user): why it is wanted

    @property
    def drifted(self) -> bool:
        """Changed outside reconciler, whether rebuilt now or deferred."""
        return self.reason is Reason.DRIFT or self.pending is Reason.DRIFT


@dataclass(frozen=True, slots=True)
class Note:
    """A file the manifest reader skipped, and why (not a manifest, a FIFO): told, not an error."""

    file: str
    message: str

    def __str__(self) -> str:
        # A file name is the only text here not ours: it must not split the line.
        file = self.file if self.file.isprintable() else ascii(self.file)
        return f"{file}: {self.message}"


@dataclass(frozen=True, slots=True)
class ManifestSet:
    """Everything a manifest directory declares, validated."""

    settings: Settings
    groups: tuple[DesktopGroup, ...]
    files: tuple[str, ...] = ()
    digest: str = ""
    # (path relative to the Settings directory, "sha256:<hex>") per file: a saved plan records
    # them so `apply PLANFILE` can name the file that changed since.
    file_digests: tuple[tuple[str, str], ...] = ()
    notes: tuple[Note, ...] = ()
    group_index: Mapping[str, DesktopGroup] = field(default_factory=dict, compare=False)

    def group(self, name: str) -> DesktopGroup:
        return self.group_index[name]
