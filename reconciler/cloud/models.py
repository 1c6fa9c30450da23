"""Typed values for what the Workspace API returns and accepts. No I/O.

The parsers are tolerant of fields they do not know and of ``null`` where a string is expected:
the service adds fields over time and the client must not break on them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

IMAGE_METADATA_KEY = "metering.image_id"
# desktops/detail pages: the documented maximum (the API definition allows 1000; stay at 500).
DESKTOP_PAGE_LIMIT = 500
REBUILD_JOB_TYPE = "rebuildDesktops"
FINISHED_JOB_STATUSES = frozenset({"SUCCESS", "FAILED"})


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Desktop:
    """One desktop as ``desktops/detail`` reports it, reduced to what reconciling needs."""

    id: str
    name: str
    status: str
    task_status: str
    login_status: str
    image_id: str | None
    image_name: str | None
    os_type: str | None
    tags: tuple[tuple[str, str], ...] = ()
    enterprise_project_id: str = "0"
    user_name: str = ""
    created: str = ""
    # What decides whether an image fits the desktop, and whether it can be rebuilt now.
    architecture: str | None = None  # product.architecture: x86 | arm
    system_disk_gb: int | None = None  # root_volume.size, else product.system_disk_size
    frozen: bool = False  # is_freeze
    in_maintenance_mode: bool = False

    @property
    def is_rebuilding(self) -> bool:
        """True while a rebuild runs (``rebuilding``, ``rebuild_spawning``, …)."""
        return self.task_status.startswith("rebuild")

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Desktop:
        # Positional and with few calls: a refresh of a large fleet builds one per desktop.
        # Values most desktops share (statuses, images, tags, project) are interned, so 100,000
        # desktops hold one copy of each rather than 100,000 (about 0.5 KB a desktop).
        metadata = data.get("metadata") or {}
        product = data.get("product")
        product = product if isinstance(product, dict) else {}
        raw_tags = data.get("tags")
        tags = tuple(sorted((_shared(t.get("key", "")), _shared(t.get("value"))) for t in raw_tags)) if raw_tags else ()
        return cls(
            _text(data, "desktop_id"),
            _text(data, "computer_name"),
            _shared(data.get("status")),
            _shared(data.get("task_status")),
            _shared(data.get("login_status")),
            _shared(metadata.get(IMAGE_METADATA_KEY)) or None,
            _shared(metadata.get("image_name")) or None,
            _shared(metadata.get("os_type")) or None,
            tags,
            _shared(data.get("enterprise_project_id")) or "0",
            _shared(data.get("user_name")),
            _text(data, "created"),
            _shared(product.get("architecture")) or None,
            _disk_size(data.get("root_volume"), product),
            data.get("is_freeze") is True,
            data.get("in_maintenance_mode") is True,
        )


def _shared(value: Any) -> str:
    """``value`` as text, one copy per distinct text (``sys.intern``)."""
    return "" if value is None else sys.intern(value if type(value) is str else str(value))


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _disk_size(root_volume: Any, product: Mapping[str, Any]) -> int | None:
    """The system disk in GB: ``root_volume.size`` (int), else ``product.system_disk_size``
    (a string in the SDK's ProductInfo)."""
    size = _int_or_none(root_volume.get("size")) if isinstance(root_volume, Mapping) else None
    return size if size is not None else _int_or_none(product.get("system_disk_size"))


@dataclass(frozen=True, slots=True)
class DesktopPage:
    """One page of ``desktops/detail``; ``total_count`` counts every match, not the page."""

    desktops: tuple[Desktop, ...]
    total_count: int


@dataclass(frozen=True, slots=True)
class SubJob:
    """The part of a job that concerns one desktop."""

    id: str
    job_id: str
    job_type: str
    status: str
    desktop_id: str
    desktop_name: str = ""
    begin_time: str = ""
    end_time: str = ""
    error_code: str = ""
    fail_reason: str = ""
    process: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> SubJob:
        entities = data.get("entities") or {}
        process = data.get("process")
        return cls(
            id=_text(data, "id"),
            job_id=_text(data, "job_id"),
            job_type=_text(data, "job_type"),
            status=_text(data, "status"),
            desktop_id=_text(entities, "desktop_id"),
            desktop_name=_text(entities, "desktop_name"),
            begin_time=_text(data, "begin_time"),
            end_time=_text(data, "end_time"),
            error_code=_text(data, "error_code"),
            fail_reason=_text(data, "fail_reason"),
            process=int(process) if isinstance(process, (int, float)) else None,
        )


@dataclass(frozen=True, slots=True)
class RebuildRequest:
    """The body of ``POST /v2/{project_id}/desktops/rebuild``.

    ``extra`` carries newer optional fields (``encrypt_type``, ``kms_id``, ``handle_type``)
    through unchanged.
    """

    desktop_ids: tuple[str, ...]
    image_id: str
    image_type: str
    os_type: str | None = None
    delay_time: int | None = None
    message: str | None = None
    order_id: str | None = None
    enterprise_project_id: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "desktop_ids": list(self.desktop_ids),
            "image_type": self.image_type,
            "image_id": self.image_id,
        }
        optional = {
            "os_type": self.os_type,
            "delay_time": self.delay_time,
            "message": self.message,
            "order_id": self.order_id,
            "enterprise_project_id": self.enterprise_project_id,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        body.update(dict(self.extra))
        return body


@dataclass(frozen=True, slots=True)
class CatalogueImage:
    """An image as the catalogue describes it: ``ImageInfo`` of ``GET images`` or ``Image`` of
    ``GET market-images`` (which reports no architecture)."""

    id: str
    image_type: str
    os_type: str | None = None
    architecture: str | None = None
    min_disk: int | None = None  # GB
    min_ram: int | None = None  # MB
    name: str = ""
    os_version: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> CatalogueImage:
        """Either shape: ``id`` (ImageInfo) or ``image_id`` (market Image)."""
        return cls(
            id=_text(data, "id") or _text(data, "image_id"),
            image_type=_text(data, "image_type"),
            os_type=data.get("os_type") or None,
            architecture=data.get("architecture") or None,
            min_disk=_int_or_none(data.get("min_disk")),
            min_ram=_int_or_none(data.get("min_ram")),
            name=_text(data, "name"),
            os_version=_text(data, "os_version"),
        )


@dataclass(frozen=True, slots=True)
class ImagePage:
    """One page of ``GET images``; ``total_count`` counts every match."""

    images: tuple[CatalogueImage, ...]
    total_count: int
