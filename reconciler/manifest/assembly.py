"""Checks across a manifest set's documents, and building its ``ManifestSet``. Pure except
for the path rules (``reconciler.manifest.paths``), which look at the file system.

One Settings, unique names and a desktop in one group only are checked here, over the results
of every file (``reconciler.manifest.parsing``); the rare problems found re-parse the file for
the line. Every problem is collected and reported together in one ``ManifestError``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from reconciler.manifest import build
from reconciler.manifest.paths import settings_path_problems
from reconciler.manifest.problems import ManifestError, Problem
from reconciler.manifest.sets import Collected, Declared, set_problems, simulator_fleets
from reconciler.model import DesktopGroup, Location, ManifestSet, Note, Settings


def _relative(file: str, base: str) -> str:
    path = os.path.abspath(file)
    inside = path.startswith(base) and path[len(base) : len(base) + 1] == os.sep
    return Path(path[len(base) + 1 :] if inside else os.path.relpath(path, base)).as_posix()


def digest(collected: Collected, base_dir: str) -> str:
    """sha256 over every file's path (relative to the Settings directory, so it does not depend
    on where reconciler runs) and bytes."""
    total = hashlib.sha256()
    contents = collected.contents
    base = os.path.abspath(base_dir)
    for relative, file in sorted((_relative(file, base), file) for file in contents):
        content = contents[file]
        total.update(f"{relative}\0{len(content)}\0".encode())
        total.update(content)
    return "sha256:" + total.hexdigest()


def file_digests(collected: Collected, base_dir: str) -> tuple[tuple[str, str], ...]:
    """Each file's path (relative to the Settings directory) and the sha256 of its bytes."""
    base = os.path.abspath(base_dir)
    return tuple(sorted(
        (_relative(file, base), "sha256:" + hashlib.sha256(content).hexdigest())
        for file, content in collected.contents.items()
    ))


def _settings(collected: Collected) -> Settings:
    (declared,) = collected.settings
    return settings_of(declared)


def _groups(collected: Collected, settings: Settings) -> tuple[DesktopGroup, ...]:
    groups = (
        build.build_group(declared.value, Location(declared.file, declared.line), settings.enterprise_project_id)
        for declared in collected.groups
    )
    return tuple(sorted(groups, key=lambda group: group.name))


def settings_of(declared: Declared) -> Settings:
    """The model value of a valid Settings document."""
    base_dir = str(Path(declared.file).parent)
    return build.build_settings(declared.value, Location(declared.file, declared.line), base_dir)


def finish(collected: Collected) -> ManifestSet:
    """Cross-document checks over every file read, then the manifest set."""
    fleets = simulator_fleets(collected)
    if fleets:
        collected.results = [result for result in collected.results if os.path.realpath(result.file) not in fleets]
    # Skipped files stay in the digests: a saved plan compares every file it could have read.
    skipped = [Note(result.file, result.note) for result in collected.results if result.note]
    collected.notes += skipped
    problems = collected.problems
    if collected.results and len(skipped) == len(collected.results):
        problems.append(Problem(skipped[0].file, 0, 0, "", "no reconciler manifests here: every file was skipped"))
    else:
        problems += set_problems(collected)
    if problems:
        raise ManifestError(problems, notes=collected.notes)
    settings = _settings(collected)
    path_problems = settings_path_problems(settings)
    if path_problems:
        raise ManifestError(path_problems, notes=collected.notes)
    groups = _groups(collected, settings)
    return ManifestSet(
        settings=settings,
        groups=groups,
        files=tuple(result.file for result in collected.results if not result.note),
        digest=digest(collected, settings.base_dir),
        file_digests=file_digests(collected, settings.base_dir),
        notes=tuple(collected.notes),
        group_index={group.name: group for group in groups},
    )
