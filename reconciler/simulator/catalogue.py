"""The simulated image catalogue: ``GET images`` (ListImages, the gold and private images) and
``GET market-images`` (ListMarketImages), shaped as the SDK's ``ImageInfo`` and ``Image``.

No I/O. Query problems are collected into one 400, like the other endpoints. Filters the SDK can
send that the simulator does not model (``platform``, ``package_type``) are refused rather
than ignored, since ignoring them would answer images the caller did not ask for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.simulator.fleet import BASE_CREATED
from reconciler.simulator.render import created_time
from reconciler.simulator.spec import Image
from reconciler.simulator.validation import bad_request

LISTED_TYPES = ("gold", "private")  # what ListImages answers; market images have their own API
MAX_IMAGE_LIMIT = 100
MAX_MARKET_IDS = 100
# Desktops report "Others", the catalogue "Other" (ImageInfo.os_type: Linux, Windows, Other).
_CATALOGUE_OS = {"Others": "Other"}
_UNSUPPORTED = ("platform", "package_type")


@dataclass(frozen=True)
class ImageQuery:
    filters: tuple[tuple[str, str], ...]  # (Image attribute, value): every one must match
    offset: int
    limit: int
    sort_field: str | None
    descending: bool


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


def _one(grouped: Mapping[str, list[str]], key: str, problems: list[str], allowed: Iterable[str] | None = None) -> str | None:
    values = [v for v in grouped.get(key, []) if v != ""]
    if len(values) > 1:
        problems.append(f"{key}: give at most one value")
    value = values[-1] if values else None
    choices = tuple(allowed) if allowed is not None else None
    if value is not None and choices is not None and value not in choices:
        problems.append(f"{key}: must be one of {', '.join(choices)} (got {value!r})")
        return None
    return value


def _number(grouped: Mapping[str, list[str]], key: str, high: int | None, problems: list[str]) -> int | None:
    text = _one(grouped, key, problems)
    if text is None:
        return None
    if not text.isdigit() or (high is not None and int(text) > high):
        problems.append(f"{key}: must be an integer from 0 to {high} (got {text!r})" if high is not None
                        else f"{key}: must be an integer >= 0 (got {text!r})")
        return None
    return int(text)


def parse_image_query(pairs: Sequence[tuple[str, str]]) -> ImageQuery:
    """ListImages query parameters; 400 ApiError listing every problem."""
    grouped, problems = _grouped(pairs), list[str]()
    filters = []
    for key, attribute, allowed in (
        ("image_id", "id", None),
        ("image_type", "type", LISTED_TYPES),
        ("os_type", "os_type", ("Windows", "Linux", "Other")),
        ("architecture", "architecture", ("x86", "arm")),
    ):
        value = _one(grouped, key, problems, allowed)
        if value is not None:
            filters.append((attribute, value))
    problems += [f"{key}: filter not supported by the simulator" for key in _UNSUPPORTED if key in grouped]
    sort_field = _one(grouped, "sort_field", problems, ("name", "created_at"))
    sort_type = _one(grouped, "sort_type", problems, ("asc", "desc", "ASC", "DESC"))
    offset = _number(grouped, "offset", None, problems)
    limit = _number(grouped, "limit", MAX_IMAGE_LIMIT, problems)
    if problems:
        raise bad_request(problems)
    return ImageQuery(tuple(filters), offset or 0, MAX_IMAGE_LIMIT if limit is None else limit, sort_field,
                      (sort_type or "").lower() == "desc")


def parse_market_ids(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """ListMarketImages' ``image_ids``: 1 to 100 ids, comma-joined (the SDK's csv) or repeated."""
    ids = [item for key, value in pairs if key == "image_ids" for item in value.split(",") if item]
    if not 1 <= len(ids) <= MAX_MARKET_IDS:
        raise bad_request([f"image_ids: give 1 to {MAX_MARKET_IDS} image ids (got {len(ids)})"])
    return list(dict.fromkeys(ids))


def _value(image: Image, attribute: str) -> str:
    value = str(getattr(image, attribute))
    return _CATALOGUE_OS.get(value, value) if attribute == "os_type" else value


def list_images(images: Iterable[Image], query: ImageQuery) -> tuple[list[Image], int]:
    """The page of gold and private images the query asks for, and how many match in all."""
    matching = [
        image for image in images
        if image.type in LISTED_TYPES and all(_value(image, a) == v for a, v in query.filters)
    ]
    if query.sort_field == "name":
        matching.sort(key=lambda image: image.name)
    if query.descending:
        matching.reverse()
    return matching[query.offset:query.offset + query.limit], len(matching)


def image_info(image: Image) -> dict[str, Any]:
    """An image as ListImages returns it (the SDK's ImageInfo)."""
    return {
        "id": image.id,
        "image_type": image.type,
        "os_type": _value(image, "os_type"),
        "architecture": image.architecture,
        "os_version": image.os_version,
        "disk_format": "zvhd2",
        "name": image.name,
        "min_ram": image.min_ram,
        "min_disk": image.min_disk,
        "product_code": "",
        "created_at": created_time(BASE_CREATED),
        "kms_id": None,
    }


def market_image(image: Image) -> dict[str, Any]:
    """A market image as ListMarketImages returns it (the SDK's Image)."""
    created = created_time(BASE_CREATED)
    return {
        "image_id": image.id,
        "name": image.name,
        "os_type": _value(image, "os_type"),
        "os_version": image.os_version,
        "os_bit": "64",
        "platform": image.os_type,
        "image_type": image.type,
        "min_disk": image.min_disk,
        "min_ram": image.min_ram,
        "max_ram": "0",
        "image_size": "0",
        "product_code": "",
        "market_resource_type_code": "",
        "market_service_type_code": "",
        "tags": [],
        "status": "active",
        "created_at": created,
        "updated_at": created,
    }
