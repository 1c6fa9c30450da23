"""Checks the schema cannot express for one document, and building the model values from a
document that passed them. No I/O.

Defaults live in the model's dataclasses (and, documented, in the schema): a value is built by
passing only the fields the manifest sets, so nothing here restates a default.
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.cloud.endpoints import validate_endpoint
from reconciler.manifest.messages import Finding
from reconciler.model import (
    WEEKDAYS,
    ApiSettings,
    DesktopGroup,
    FailureBudget,
    Image,
    Location,
    NotificationTarget,
    Rollout,
    SafetySettings,
    Selector,
    Settings,
    StateSettings,
    Window,
)

DAYS = WEEKDAYS
WINDOW = ("spec", "rollout", "window")


# --- checks --------------------------------------------------------------------------------------

def settings_findings(document: Mapping[str, Any]) -> list[Finding]:
    """What the schema cannot say of the Settings: a comparison between two fields. (Exactly
    one of region, endpoint or simulator, the endpoint's form and exactly one of a
    notification's url or url_env are in the schema.)"""
    return _horizon_findings(document["spec"].get("api") or {})


def _horizon_findings(api: Mapping[str, Any]) -> list[Finding]:
    """A lost call cannot be taken never to land before the client itself gave up on it."""
    horizon, timeout = api.get("lost_call_horizon_seconds"), api.get("timeout_seconds", ApiSettings().timeout_seconds)
    if horizon is None or horizon >= timeout:
        return []
    message = f"lost_call_horizon_seconds ({horizon:g}) must be at least timeout_seconds ({timeout:g})"
    return [Finding(("spec", "api", "lost_call_horizon_seconds"), message)]


def group_findings(document: Mapping[str, Any]) -> list[Finding]:
    """What the schema cannot say of a group: that its time zone exists (the list of zones is
    the installed tz database's). Some desktops and a usable selector are in the schema."""
    window = document["spec"].get("rollout", {}).get("window")
    return _window_findings(window) if window is not None else []


def zone_exists(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # malformed key, not found, a directory such as "Asia"
        return False
    return True


def _window_findings(window: Mapping[str, Any]) -> list[Finding]:
    findings = []
    if not zone_exists(window["timezone"]):
        message = f"unknown time zone {window['timezone']!r} (use an IANA name such as Europe/Paris or UTC)"
        findings.append(Finding(WINDOW + ("timezone",), message))
    return findings


# --- building ------------------------------------------------------------------------------------

def _pairs(mapping: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(mapping.items()))


def _time(text: str) -> datetime.time:
    hours, minutes = text.split(":")
    return datetime.time(int(hours), int(minutes))


def _window(window: Mapping[str, Any] | None) -> Window | None:
    if window is None:
        return None
    fields: dict[str, Any] = {
        "start": _time(window["start"]), "end": _time(window["end"]), "timezone": window["timezone"],
    }
    if "days" in window:
        fields["days"] = frozenset(DAYS.index(day) for day in window["days"])
    return Window(**fields)


def _budget(value: int | str) -> FailureBudget:
    if isinstance(value, str):
        return FailureBudget(count=None, percent=float(value[:-1]))
    return FailureBudget(count=value)


def _rollout(rollout: Mapping[str, Any]) -> Rollout:
    converters: dict[str, Callable[[Any], Any]] = {"max_failures": _budget, "window": _window}
    return Rollout(**{name: converters.get(name, _same)(value) for name, value in rollout.items()})


def _same(value: Any) -> Any:
    return value


def _selector(selector: Mapping[str, Any]) -> Selector:
    fields = dict(selector)
    if "tags" in fields:
        fields["tags"] = _pairs(fields["tags"])
    return Selector(**fields)


def build_group(document: Mapping[str, Any], source: Location, enterprise_project_id: str) -> DesktopGroup:
    """The group a checked document declares; ``enterprise_project_id`` is the Settings' one,
    used unless the group sets its own."""
    metadata, spec = document["metadata"], document["spec"]
    desktops = spec["desktops"]
    fields: dict[str, Any] = {
        "name": metadata["name"],
        "image": Image(**spec["image"]),
        "enterprise_project_id": spec.get("enterprise_project_id", enterprise_project_id),
        "source": source,
    }
    if "labels" in metadata:
        fields["labels"] = _pairs(metadata["labels"])
    if "ids" in desktops:
        fields["ids"] = tuple(desktops["ids"])
    if "selector" in desktops:
        fields["selector"] = _selector(desktops["selector"])
    if "rollout" in spec:
        fields["rollout"] = _rollout(spec["rollout"])
    return DesktopGroup(**fields)


def _api(api: Mapping[str, Any]) -> ApiSettings:
    # The schema's "number" admits integers; the model holds floats.
    floats = {field.name for field in dataclasses.fields(ApiSettings) if field.type in ("float", float)}
    fields: dict[str, Any] = {name: float(value) if name in floats else value for name, value in api.items()}
    if "limits" in fields:
        fields["limits"] = tuple(sorted((name, float(rate)) for name, rate in fields["limits"].items()))
    return ApiSettings(**fields)


def build_settings(document: Mapping[str, Any], source: Location, base_dir: str) -> Settings:
    """The settings a checked document declares. Relative paths stay as written: they are
    resolved against ``base_dir`` by whoever opens them."""
    spec = dict(document["spec"])
    fields: dict[str, Any] = {"base_dir": base_dir, "source": source}
    simulator = spec.pop("simulator", None)
    if simulator is not None:
        fields["simulator_fleet"] = simulator["fleet"]
    if spec.get("endpoint") is not None:
        spec["endpoint"] = validate_endpoint(spec["endpoint"])
    if "state" in spec:
        spec["state"] = StateSettings.from_json(spec["state"])
    if "api" in spec:
        spec["api"] = _api(spec["api"])
    if "safety" in spec:
        limit = spec["safety"].get("max_rebuilds_per_run")
        spec["safety"] = SafetySettings(None if limit is None else _budget(limit))
    if "notifications" in spec:
        spec["notifications"] = tuple(_notification(target) for target in spec["notifications"])
    return Settings(**spec, **fields)


def _notification(target: Mapping[str, Any]) -> NotificationTarget:
    fields = dict(target)
    if "events" in fields:
        fields["events"] = tuple(fields["events"])
    return NotificationTarget(**fields)
