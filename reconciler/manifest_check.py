"""The manifest check of ``apply PLANFILE``: the manifests the plan was made from must still be
the manifests here, byte for byte. Reads the manifest files (directory listings and contents).

A plan records the paths ``plan`` was given and every file's digest, relative to the manifest
root (the Settings directory). Applying re-lists those paths under the root found here and
compares: a file edited, added or removed since the plan was made means the plan no longer
describes the manifests, and is refused.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from reconciler.manifest.discovery import discover
from reconciler.manifest.sets import Collected
from reconciler.plan import Plan, PlanFileError

SHOWN_FILES = 5  # more changed files than this are counted, not listed


class ManifestsChanged(PlanFileError):
    """The manifests differ from those the plan was made from."""


class ManifestsAbsent(PlanFileError):
    """The manifests the plan was made from are not here to compare."""


def recorded_sources(paths: Sequence[str], root: str) -> tuple[str, ...]:
    """The paths ``plan`` was given (none: the current directory), relative to the root."""
    base = os.path.abspath(root)
    return tuple(Path(os.path.relpath(os.path.abspath(p), base)).as_posix() for p in (paths or ["."]))


def root_as_named(root: str) -> str:
    """The manifest root relative to the current directory (absolute only across drives)."""
    try:
        return Path(os.path.relpath(os.path.abspath(root))).as_posix()
    except ValueError:
        return os.path.abspath(root)


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def current_digests(root: Path, sources: Sequence[str], skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """Digest per manifest file under ``root`` that ``sources`` name (``skip``: real paths that
    are not manifests, such as a simulator fleet file), keyed by path relative to the root."""
    base = os.path.abspath(root)
    found: dict[str, str] = {}
    for file in discover([root / source for source in sources], Collected()):
        if os.path.realpath(file) in skip:
            continue
        relative = Path(os.path.relpath(os.path.abspath(file), base)).as_posix()
        try:
            found[relative] = _sha256(file)
        except OSError:
            continue  # unreadable counts as absent: it differs from the recorded digest
    return found


def differences(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """The files edited, added or removed, sorted."""
    return sorted(path for path in recorded.keys() | current.keys() if recorded.get(path) != current.get(path))


def _skip(plan: Plan, root: Path) -> frozenset[str]:
    fleet = plan.settings.simulator_fleet if plan.settings else None
    return frozenset({os.path.realpath(root / fleet)}) if fleet else frozenset()


def _listed(paths: list[str]) -> str:
    shown = ", ".join(paths[:SHOWN_FILES])
    more = len(paths) - SHOWN_FILES
    return shown + (f" and {more} more" if more > 0 else "")


def check_manifests(plan: Plan, root: Path | None, source: str) -> None:
    """Refuse ``plan`` when its manifests changed since it was made, or are not here."""
    skip_hint = "or pass --no-manifest-check to apply it without comparing them"
    if not plan.manifest_files:
        raise ManifestsAbsent(f"{source} records no manifest files to compare (made by an older reconciler); "
                              f"plan again, {skip_hint}")
    recorded = dict(plan.manifest_files)
    current = current_digests(root, plan.manifest_sources or ["."], _skip(plan, root)) if root is not None else {}
    if not current.keys() & recorded.keys():
        where = plan.manifest_root or plan.manifest_directory or "."
        raise ManifestsAbsent(f"the manifests {source} was made from are not here (none of its files under {where}/); "
                              f"apply it in a checkout of the commit it was planned from (or with -C DIR), {skip_hint}")
    changed = differences(recorded, current)
    if changed:
        raise ManifestsChanged(f"the manifests changed since {source} was made ({_listed(changed)})")
