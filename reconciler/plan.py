"""The ``Plan`` value, its JSON document (``plan -o FILE``) and the checks before applying one.

A plan carries the state lineage and serial it was made from, the manifest files it was made from
(each with its digest, relative to the manifest root), the settings (which hold no secrets:
credentials only ever come from the environment) and the groups it acts for, so ``apply FILE``
needs nothing else. The checksum covers the whole document; with a plan key the document is also
signed (``reconciler.plan_signing``). Reads and writes plan files; everything else is pure.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import time
from pathlib import Path
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.files import write_atomically
from reconciler.model import (
    CHANGING_ACTIONS,
    WEEKDAYS,
    Action,
    ApiSettings,
    Change,
    DesktopGroup,
    FailureBudget,
    Image,
    Location,
    Reason,
    Rollout,
    SafetySettings,
    Selector,
    Settings,
    StateSettings,
    Window,
)
from reconciler.plan_signing import PlanKey, canonical, signature
from reconciler.safety import mass_rebuild

PLAN_FORMAT_VERSION = 1
PLAN_KIND = "reconciler-plan"


class PlanFileError(ReconcilerError):
    """A plan file that cannot be applied: unreadable, modified, stale or from elsewhere."""


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    groups: tuple[DesktopGroup, ...]
    lineage: str | None
    serial: int
    refreshed: bool
    targets: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    ignore_window: bool = False
    refresh_only: bool = False  # apply --refresh-only: records live images, rebuilds nothing
    journal_digest: str | None = None
    manifest_digest: str = ""
    manifest_directory: str | None = None  # absolute; recorded in plan files
    # The manifest root (the Settings directory) relative to where `plan` ran, the paths `plan`
    # was given and each file's digest, both relative to the root: `apply PLANFILE` re-reads them.
    manifest_root: str | None = None
    manifest_sources: tuple[str, ...] = ()
    manifest_files: tuple[tuple[str, str], ...] = ()
    settings: Settings | None = None
    created_at: str = ""
    replace: tuple[str, ...] = ()  # --replace: groups and desktops rebuilt even when current
    managed_desktops: int = 0  # what a percentage in safety.max_rebuilds_per_run is taken of

    def summary(self) -> dict[str, int]:
        counts = Counter(c.action.value for c in self.changes)
        return {a.value: counts.get(a.value, 0) for a in Action}

    @property
    def has_actions(self) -> bool:
        """Something to do now: a rebuild, an adoption or a forget."""
        return any(c.action in CHANGING_ACTIONS for c in self.changes)

    @property
    def has_changes(self) -> bool:
        """The fleet differs from the manifests: something to do now, or a rebuild deferred by
        a maintenance window or a connected user (``plan --detailed-exitcode`` exits 2)."""
        return self.has_actions or any(c.pending is not None for c in self.changes)

    def group(self, name: str) -> DesktopGroup:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)


# -- JSON form -------------------------------------------------------------------------------

def _window_json(window: Window | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "days": [WEEKDAYS[d] for d in sorted(window.days)],
        "start": window.start.strftime("%H:%M"),
        "end": window.end.strftime("%H:%M"),
        "timezone": window.timezone,
    }


def group_to_json(group: DesktopGroup) -> dict[str, Any]:
    rollout = asdict(group.rollout)
    rollout["max_failures"] = str(group.rollout.max_failures) if group.rollout.max_failures.percent is not None else group.rollout.max_failures.count
    rollout["window"] = _window_json(group.rollout.window)
    return {
        "name": group.name,
        "source": {"file": group.source.file, "line": group.source.line},
        "labels": dict(group.labels),
        "enterprise_project_id": group.enterprise_project_id,
        "ids": list(group.ids),
        "selector": None if group.selector is None else {**asdict(group.selector), "tags": dict(group.selector.tags)},
        "image": asdict(group.image),
        "rollout": rollout,
    }


def _window_from_json(data: dict[str, Any] | None) -> Window | None:
    if data is None:
        return None
    return Window(
        start=time.fromisoformat(data["start"]),
        end=time.fromisoformat(data["end"]),
        timezone=data["timezone"],
        days=frozenset(WEEKDAYS.index(d) for d in data["days"]),
    )


def _budget_from_json(value: int | str) -> FailureBudget:
    if isinstance(value, str) and value.endswith("%"):
        return FailureBudget(count=None, percent=float(value[:-1]))
    return FailureBudget(count=int(value))


def group_from_json(data: dict[str, Any]) -> DesktopGroup:
    rollout = dict(data["rollout"])
    rollout["max_failures"] = _budget_from_json(rollout["max_failures"])
    rollout["window"] = _window_from_json(rollout["window"])
    selector = data["selector"]
    return DesktopGroup(
        name=data["name"],
        image=Image(**data["image"]),
        rollout=Rollout(**rollout),
        ids=tuple(data["ids"]),
        selector=None if selector is None else Selector(**{**selector, "tags": tuple(sorted(selector["tags"].items()))}),
        labels=tuple(sorted(data["labels"].items())),
        enterprise_project_id=data["enterprise_project_id"],
        source=Location(data["source"]["file"], data["source"]["line"]),
    )


def settings_to_json(settings: Settings) -> dict[str, Any]:
    data = asdict(settings)
    # Webhook URLs may carry tokens, and plans hold no secrets: `apply PLANFILE` notifies
    # the --notify URLs it is given.
    data.pop("notifications", None)
    data["source"] = {"file": settings.source.file, "line": settings.source.line}
    limit = settings.safety.max_rebuilds_per_run
    data["safety"] = {"max_rebuilds_per_run": None if limit is None else budget_to_json(limit)}
    return data


def budget_to_json(budget: FailureBudget) -> int | str:
    """A count or a percentage as manifests write it: ``3`` or ``"10%"``."""
    return str(budget) if budget.percent is not None else budget.count or 0


def _safety_from_json(data: dict[str, Any] | None) -> SafetySettings:
    limit = (data or {}).get("max_rebuilds_per_run")
    return SafetySettings(None if limit is None else _budget_from_json(limit))


def settings_from_json(data: dict[str, Any]) -> Settings:
    data = {k: v for k, v in data.items() if k != "notifications"}
    return Settings(
        **{
            **data,
            "state": StateSettings.from_json(data["state"]),
            "api": ApiSettings(**data["api"]),
            "safety": _safety_from_json(data.get("safety")),
            "source": Location(data["source"]["file"], data["source"]["line"]),
        }
    )


def change_to_json(change: Change) -> dict[str, Any]:
    return {
        "desktop_id": change.desktop_id,
        "desktop_name": change.desktop_name,
        "group": change.group,
        "action": change.action.value,
        "reason": change.reason.value,
        "before": {"image_id": change.before_image},
        "after": {"image_id": change.after_image},
        "wave": change.wave,
        "detail": change.detail,
        "pending_reason": change.pending.value if change.pending else None,
    }


def change_from_json(data: dict[str, Any]) -> Change:
    return Change(
        desktop_id=data["desktop_id"],
        action=Action(data["action"]),
        reason=Reason(data["reason"]),
        group=data["group"],
        desktop_name=data["desktop_name"],
        before_image=data["before"]["image_id"],
        after_image=data["after"]["image_id"],
        wave=data["wave"],
        detail=data["detail"],
        pending=Reason(data["pending_reason"]) if data.get("pending_reason") else None,
    )


def safety_json(plan: Plan) -> dict[str, Any]:
    """The blast-radius guard's view of the plan: how many rebuilds, the limit, over it or not."""
    limit = plan.settings.safety.max_rebuilds_per_run if plan.settings else None
    return {
        "managed_desktops": plan.managed_desktops,
        "rebuilds": sum(1 for c in plan.changes if c.action is Action.REBUILD),
        "max_rebuilds_per_run": None if limit is None else budget_to_json(limit),
        "limit": None if limit is None else limit.limit(plan.managed_desktops),
        "over_limit": mass_rebuild(plan) is not None,
    }


def _checksum(document: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical(document)).hexdigest()


def _manifests_json(plan: Plan) -> dict[str, Any]:
    # `root` and `files` let `apply PLANFILE` find and compare the manifests in any checkout;
    # `directory` (absolute) finds them when `apply` runs elsewhere on the same machine.
    return {
        "digest": plan.manifest_digest,
        "directory": os.path.abspath(plan.settings.base_dir) if plan.settings else None,
        "root": plan.manifest_root,
        "sources": list(plan.manifest_sources),
        "files": dict(plan.manifest_files),
    }


def plan_to_json(plan: Plan, key: PlanKey | None = None) -> dict[str, Any]:
    """The plan file's document; signed when a ``key`` is given."""
    document: dict[str, Any] = {
        "format_version": PLAN_FORMAT_VERSION,
        "kind": PLAN_KIND,
        "created_at": plan.created_at,
        "state": {"lineage": plan.lineage, "serial": plan.serial, "journal_digest": plan.journal_digest},
        "manifests": _manifests_json(plan),
        "refreshed": plan.refreshed,
        "options": {
            "targets": list(plan.targets),
            "excludes": list(plan.excludes),
            "ignore_window": plan.ignore_window,
            "refresh_only": plan.refresh_only,
            "replace": list(plan.replace),
        },
        "safety": safety_json(plan),
        "settings": settings_to_json(plan.settings) if plan.settings else None,
        "groups": [group_to_json(g) for g in plan.groups],
        "summary": plan.summary(),
        "changes": [change_to_json(c) for c in plan.changes],
    }
    if key is not None:
        document["signature"] = signature(key, document)
    document["checksum"] = _checksum(document)
    return document


def plan_from_json(document: Any, source: str) -> Plan:
    """Parse a plan document; PlanFileError when it is not one, or was modified."""
    if not isinstance(document, dict) or document.get("kind") != PLAN_KIND:
        raise PlanFileError(f"{source} is not a reconciler plan file")
    if document.get("format_version") != PLAN_FORMAT_VERSION:
        raise PlanFileError(f"{source} has plan format {document.get('format_version')}; this reconciler reads {PLAN_FORMAT_VERSION}")
    if document.get("checksum") != _checksum(document):
        raise PlanFileError(f"{source} was modified after it was written (checksum mismatch); run `reconciler plan -o` again")
    try:
        state, options, manifests = document["state"], document["options"], document["manifests"]
        return Plan(
            changes=tuple(change_from_json(c) for c in document["changes"]),
            groups=tuple(group_from_json(g) for g in document["groups"]),
            lineage=state["lineage"],
            serial=state["serial"],
            journal_digest=state.get("journal_digest"),
            refreshed=document["refreshed"],
            targets=tuple(options["targets"]),
            excludes=tuple(options["excludes"]),
            ignore_window=options["ignore_window"],
            refresh_only=options.get("refresh_only", False),
            replace=tuple(options.get("replace", ())),
            managed_desktops=(document.get("safety") or {}).get("managed_desktops", 0),
            manifest_digest=manifests["digest"],
            manifest_directory=manifests.get("directory"),
            manifest_root=manifests.get("root"),
            manifest_sources=tuple(manifests.get("sources", ())),
            manifest_files=tuple(sorted(manifests.get("files", {}).items())),
            settings=settings_from_json(document["settings"]) if document["settings"] else None,
            created_at=document["created_at"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"{source} is not a valid plan: {type(exc).__name__}: {exc}") from None


def check_writable(path: str | Path) -> None:
    """Refuse a plan file path whose directory does not exist, before any work is done."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise PlanFileError(f"cannot write the plan to {path}: the directory {parent} does not exist")


def write_plan(document: Mapping[str, Any], path: str | Path) -> None:
    """Write a plan document (``plan_to_json``) atomically (temp file, fsync, rename)."""
    target = Path(path)
    check_writable(target)
    payload = json.dumps(document, indent=1).encode("utf-8") + b"\n"
    try:
        write_atomically(target, payload)
    except OSError as exc:
        raise PlanFileError(f"cannot write the plan to {path}: {exc.strerror or exc}") from None


def read_plan_document(path: str | Path) -> tuple[Plan, dict[str, Any]]:
    """The plan and the document it was read from (for its signature)."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise PlanFileError(f"cannot read the plan {path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PlanFileError(f"{path} is not valid JSON: {exc}") from None
    return plan_from_json(document, str(path)), document


def read_plan(path: str | Path) -> Plan:
    return read_plan_document(path)[0]


def manifest_root(plan: Plan) -> Path | None:
    """Where the plan's manifests are here: the root as `plan` named it, relative to the current
    directory (so ``-C`` and another checkout of the same repository find it), else the absolute
    directory it had (``apply`` run from elsewhere on the same machine); None when neither exists."""
    settings_dir = plan.settings.base_dir if plan.settings else None
    for candidate in (plan.manifest_root, plan.manifest_directory, settings_dir):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def _needs_root(settings: Settings) -> bool:
    """Whether a setting is a path relative to the manifest root (a local state, a fleet file)."""
    relative = [settings.simulator_fleet] + ([settings.state.path] if settings.state.backend == "local" else [])
    return any(path is not None and not os.path.isabs(path) for path in relative)


def settings_for_apply(plan: Plan, source: str, root: Path | None) -> Settings:
    """The plan's settings, with relative paths (state, simulator fleet) resolved against the
    manifest root found here (``manifest_root``)."""
    if plan.settings is None:
        raise PlanFileError(f"{source} carries no settings and cannot be applied")
    if root is not None:
        return replace(plan.settings, base_dir=str(root))
    if not _needs_root(plan.settings):
        return plan.settings
    recorded = plan.manifest_root or plan.manifest_directory or plan.settings.base_dir
    raise PlanFileError(
        f"{source} was made with its manifests at {recorded!r}, which is not a directory here; "
        "apply it where the manifests are checked out (or point -C at that directory)"
    )


def check_current(plan: Plan, lineage: str | None, serial: int, journal_digest: str | None) -> None:
    """Refuse a plan made from another state, or from this state before it moved on."""
    if plan.lineage is not None and lineage is not None and plan.lineage != lineage:
        raise PlanFileError(
            f"the plan was made for state lineage {plan.lineage}, but this state has lineage {lineage}"
        )
    if (plan.lineage, plan.serial, plan.journal_digest) != (lineage, serial, journal_digest):
        recovering = ", with a journal left by an interrupted run" if journal_digest else ""
        raise PlanFileError(
            f"the plan is stale: it was made from state serial {plan.serial}, and the state has moved on "
            f"(serial {serial}{recovering}); run `reconciler plan -o` again and review the new plan"
        )
