"""Checks across the documents of a manifest set: exactly one Settings, unique group names, each
desktop in one group only. Works on what the parsing collected; no file I/O (a file's bytes are
re-parsed from memory to find the line of a conflicting desktop id).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yaml.nodes import Node

from reconciler.manifest import yamlsafe
from reconciler.manifest.problems import Problem, format_path
from reconciler.model import Location, Note


@dataclass(slots=True)
class Declared:
    """A document that passed its own checks, waiting for the whole set to be read."""

    file: str
    index: int  # document position in the file
    line: int  # where the document starts
    column: int
    value: dict[str, Any]
    valid: bool = True
    name_at: tuple[int, int] = (0, 0)  # line, column of metadata.name (groups)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def name(self) -> str:
        return str(self.value["metadata"]["name"])


@dataclass
class FileResult:
    """What one file holds."""

    file: str
    content: bytes | None = None
    problems: list[Problem] = field(default_factory=list)
    settings: list[Declared] = field(default_factory=list)  # valid or not: each counts
    groups: list[Declared] = field(default_factory=list)  # valid ones only
    first_document: Location | None = None
    complete: bool = True  # False when the file could not be read or parsed to its end
    foreign: list[Location] = field(default_factory=list)  # documents that are not manifests
    note: str | None = None  # why the whole file is skipped, when it is


@dataclass
class Collected:
    """Everything read: one result per file, plus problems with the paths themselves."""

    results: list[FileResult] = field(default_factory=list)
    path_problems: list[Problem] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # files skipped, not errors

    @property
    def files(self) -> list[str]:
        return [result.file for result in self.results]

    @property
    def problems(self) -> list[Problem]:
        return self.path_problems + [problem for result in self.results for problem in result.problems]

    @property
    def settings(self) -> list[Declared]:
        return [declared for result in self.results for declared in result.settings]

    @property
    def groups(self) -> list[Declared]:
        return [declared for result in self.results for declared in result.groups]

    @property
    def contents(self) -> dict[str, bytes]:
        return {result.file: result.content for result in self.results if result.content is not None}

    @property
    def complete(self) -> bool:
        return all(result.complete for result in self.results)

    @property
    def first_document(self) -> Location | None:
        return next((result.first_document for result in self.results if result.first_document), None)


def _settings_count(collected: Collected) -> list[Problem]:
    if not collected.settings:
        # A file that did not parse may hold the Settings: do not guess.
        if not collected.complete or not collected.files:
            return []
        where = collected.first_document or Location(collected.files[0], 1)
        message = "no Settings document: a manifest set needs exactly one (kind: Settings)"
        return [Problem(where.file, where.line, 1, "", message)]
    first = collected.settings[0]
    message = f"a second Settings document (the first is at {first}); a manifest set has exactly one"
    return [Problem(extra.file, extra.line, extra.column, "", message) for extra in collected.settings[1:]]


def _group_names(collected: Collected) -> list[Problem]:
    first: dict[str, Declared] = {}
    problems = []
    for group in collected.groups:
        earlier = first.setdefault(group.name, group)
        if earlier is not group:
            line, column = group.name_at
            message = f"group {group.name!r} is already defined at {earlier}"
            problems.append(Problem(group.file, line, column, "metadata.name", message))
    return problems


class _Lines:
    """Positions of list items in already-read files, by re-parsing only the files asked about."""

    def __init__(self, contents: dict[str, bytes]) -> None:
        self.contents = contents
        self.documents: dict[str, list[Node]] = {}

    def position(self, declared: Declared, path: tuple[object, ...]) -> tuple[int, int]:
        if declared.file not in self.documents:
            self.documents[declared.file] = yamlsafe.compose(self.contents[declared.file])
        roots = self.documents[declared.file]
        if declared.index >= len(roots):
            return declared.line, declared.column
        return yamlsafe.position(yamlsafe.find_node(roots[declared.index], path))


def _shared_desktops(collected: Collected) -> list[Problem]:
    id_lists = [(group, group.value["spec"]["desktops"].get("ids", [])) for group in collected.groups]
    # The common case, no desktop listed twice, costs one set union.
    if len(set().union(*(ids for _, ids in id_lists))) == sum(len(ids) for _, ids in id_lists):
        return []
    owners: dict[str, Declared] = {}
    lines = _Lines(collected.contents)
    problems = []
    for group, ids in id_lists:
        for index, desktop_id in enumerate(ids):
            owner = owners.setdefault(desktop_id, group)
            if owner is group:
                continue
            path = ("spec", "desktops", "ids", index)
            line, column = lines.position(group, path)
            if owner.name == group.name:  # two documents of one name: that name clash is reported too
                message = f"desktop {desktop_id!r} is also listed by the other group named {owner.name!r} ({owner})"
            else:
                message = (
                    f"desktop {desktop_id!r} is in two groups: {owner.name!r} ({owner}) and {group.name!r} ({group});"
                    " a desktop may belong to one group only"
                )
            problems.append(Problem(group.file, line, column, format_path(path), message))
    return problems


def set_problems(collected: Collected) -> list[Problem]:
    """Problems no single document shows."""
    return _settings_count(collected) + _group_names(collected) + _shared_desktops(collected)


def simulator_fleets(collected: Collected) -> set[str]:
    """Real paths of the simulator fleet files the Settings name. A fleet usually sits in the
    manifest directory (``simulator: {fleet: fleet.yaml}``) but is not a manifest. Taken from
    Settings documents even when they are invalid, so their problems do not bury the rest."""
    fleets = set()
    for declared in collected.settings:
        spec = declared.value.get("spec")
        simulator = spec.get("simulator") if isinstance(spec, dict) else None
        # A NUL cannot be in a path (the schema reports it); realpath would raise on it.
        if isinstance(simulator, dict) and isinstance(simulator.get("fleet"), str) and "\0" not in simulator["fleet"]:
            fleets.add(os.path.realpath(Path(declared.file).parent / simulator["fleet"]))
    return fleets
