"""Find, read and check a manifest set, and build its ``ManifestSet``. Reads the manifest files.

Each file is read whole (up to ``MAX_FILE_BYTES``), parsed one document at a time, and each
document is validated while its YAML node tree is still at hand, so a problem's line costs
nothing when there are no problems. Checks that span documents (one Settings, unique names, a
desktop in one group only) run at the end; the rare problems they find re-parse the file for
the line. Every problem is collected and reported together in one ``ManifestError``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml
from yaml.nodes import Node

from reconciler.manifest import build, yamlsafe
from reconciler.manifest.messages import Finding, describe
from reconciler.manifest.problems import ManifestError, Problem, format_path
from reconciler.manifest.schema import validation_errors
from reconciler.manifest.sets import Collected, Declared, FileResult, set_problems, simulator_fleets
from reconciler.model import DesktopGroup, Location, ManifestSet, Settings

MAX_FILE_BYTES = 8 * 1024 * 1024
SUFFIXES = (".yaml", ".yml")
# Unquoted text YAML reads as something else: 22:00 is the number 1320, 0 a number, no false.
MISREAD_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("int", "float", "bool", "timestamp"))


# --- finding files -------------------------------------------------------------------------------

def _walk(root: Path) -> list[Path]:
    found = []
    for directory, dirnames, filenames in os.walk(root):
        # Hidden directories hold state (.reconciler/), VCS data (.git/) and tool caches.
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        found += [
            Path(directory, name) for name in filenames if name.endswith(SUFFIXES) and not name.startswith(".")
        ]
    return sorted(found, key=lambda path: path.parts)


def discover(paths: Iterable[str | os.PathLike[str]], collected: Collected) -> list[Path]:
    """The manifest files ``paths`` name, each once, in order: directories are searched
    recursively, files are taken whatever their name."""
    files: list[Path] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            candidates = _walk(path)
            if not candidates:
                collected.path_problems.append(Problem(str(path), 0, 0, "", "no manifest files (*.yaml, *.yml) here"))
        elif path.exists():
            candidates = [path]
        else:
            collected.path_problems.append(Problem(str(path), 0, 0, "", "no such file or directory"))
            continue
        for candidate in candidates:
            # A file named twice (a directory and a file in it) is read once. Plain path
            # arithmetic, not realpath: a system call per file is measurable with 1,000 files.
            absolute = os.path.abspath(candidate)
            if absolute not in seen:
                seen.add(absolute)
                files.append(candidate)
    return files


def read_limited(path: Path) -> bytes:
    """The file's bytes; ``ValueError`` when it is larger than ``MAX_FILE_BYTES`` (checked
    before parsing, and without trusting the size the file system reports)."""
    with open(path, "rb") as stream:
        data = stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; split it into several files")
    return data


# --- one file ------------------------------------------------------------------------------------

def _yaml_problem(file: str, data: bytes, error: yaml.YAMLError) -> Problem:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = str(error.problem or error.context)
        if error.context and error.context_mark and error.problem_mark:
            message += f" ({error.context} at line {error.context_mark.line + 1})"
        if not isinstance(error, yaml.constructor.ConstructorError):  # scanner, parser, composer
            message = "syntax error: " + message
        return Problem(file, line, column, "", message)
    # ReaderError: undecodable or forbidden characters, located by offset.
    offset = getattr(error, "position", 0)
    line = data[:offset].count(b"\n") + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return Problem(file, line, column, "", f"not readable as YAML text: {getattr(error, 'reason', error)}")


def locate(file: str, root: Node, finding: Finding) -> Problem:
    node = yamlsafe.find_node(root, finding.path, key=finding.at_key)
    line, column = yamlsafe.position(node)
    message = finding.message
    if finding.quote_hint and node.tag in MISREAD_TAGS:
        message += f"; to give it as text, quote it: \"{node.value}\""
    field_path = finding.path if finding.field is None else finding.field
    return Problem(file, line, column, format_path(field_path), message)


def _check(document: yamlsafe.Document) -> tuple[list[Finding], bool]:
    """The document's findings, and whether the schema passed (the semantic checks assume it)."""
    value = document.value
    if not isinstance(value, dict):
        kind = "a list" if isinstance(value, list) else "a single value"
        return [Finding((), f"expected a mapping with apiVersion, kind and spec, got {kind}")], False
    findings = [finding for error in validation_errors(value) for finding in describe(error)]
    if findings:
        return findings, False
    if value["kind"] == "Settings":
        return build.settings_findings(value), True
    return build.group_findings(value), True


def _duplicates(file: str, document: yamlsafe.Document) -> list[Problem]:
    problems = []
    for duplicate in document.duplicates:
        path = yamlsafe.path_of(document.node, duplicate.node) or ()
        line, column = yamlsafe.position(duplicate.node)
        message = f"duplicate key {duplicate.key!r} (first at line {duplicate.first_line})"
        problems.append(Problem(file, line, column, format_path(path), message))
    return problems


def _take(result: FileResult, document: yamlsafe.Document) -> None:
    value = document.value
    if value is None:  # an empty document, such as after a trailing ---
        return
    file = result.file
    line, column = yamlsafe.position(document.node)
    result.first_document = result.first_document or Location(file, line)
    problems = _duplicates(file, document)
    findings, schema_ok = _check(document)
    problems += [locate(file, document.node, finding) for finding in findings]
    result.problems += problems
    declared = Declared(file, document.index, line, column, value, valid=schema_ok and not problems)
    if isinstance(value, dict) and value.get("kind") == "Settings":
        result.settings.append(declared)  # invalid ones too: each counts for "exactly one"
    elif declared.valid:
        declared.name_at = yamlsafe.position(yamlsafe.find_node(document.node, ("metadata", "name")))
        result.groups.append(declared)


def load_file(path: Path) -> FileResult:
    """Read, parse and check one file's documents."""
    result = FileResult(str(path))
    try:
        result.content = read_limited(path)
    except (OSError, ValueError) as exc:
        line = 1 if isinstance(exc, ValueError) else 0
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        result.problems.append(Problem(result.file, line, line, "", reason))
        result.complete = False
        return result
    try:
        for document in yamlsafe.documents(result.content):
            _take(result, document)
    except yaml.YAMLError as exc:
        result.problems.append(_yaml_problem(result.file, result.content, exc))
        result.complete = False
    except RecursionError:  # only the pure-Python parser recurses per nesting level
        result.problems.append(Problem(result.file, 1, 1, "", "the YAML is nested too deeply"))
        result.complete = False
    return result


# --- the set -------------------------------------------------------------------------------------

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


def _settings(collected: Collected) -> Settings:
    (declared,) = collected.settings
    return settings_of(declared)


def _groups(collected: Collected, settings: Settings) -> tuple[DesktopGroup, ...]:
    groups = (
        build.build_group(declared.value, Location(declared.file, declared.line), settings.enterprise_project_id)
        for declared in collected.groups
    )
    return tuple(sorted(groups, key=lambda group: group.name))


def load_manifests(paths: Sequence[str | os.PathLike[str]] = ()) -> ManifestSet:
    """Read and check the manifest set at ``paths`` (directories and files; none means the
    current directory). Raises ``ManifestError`` listing every problem found. A large set is
    parsed by two processes (see ``reconciler.manifest.reading``)."""
    from reconciler.manifest.reading import ManifestReading

    return ManifestReading(paths).result()


def settings_of(declared: Declared) -> Settings:
    """The model value of a valid Settings document."""
    base_dir = str(Path(declared.file).parent)
    return build.build_settings(declared.value, Location(declared.file, declared.line), base_dir)


def _check_fleet(settings: Settings) -> None:
    """The embedded simulator's fleet file must exist (validate checks it without the network)."""
    fleet = settings.simulator_fleet
    if fleet is not None and not settings.resolve(fleet).is_file():
        source = settings.source
        problem = f"no such file: {settings.resolve(fleet)}"
        raise ManifestError([Problem(source.file, source.line, source.column, "spec.simulator.fleet", problem)])


def finish(collected: Collected) -> ManifestSet:
    """Cross-document checks over every file read, then the manifest set."""
    fleets = simulator_fleets(collected)
    if fleets:
        collected.results = [result for result in collected.results if os.path.realpath(result.file) not in fleets]
    problems = collected.problems + set_problems(collected)
    if problems:
        raise ManifestError(problems)
    settings = _settings(collected)
    _check_fleet(settings)
    groups = _groups(collected, settings)
    return ManifestSet(
        settings=settings,
        groups=groups,
        files=tuple(collected.files),
        digest=digest(collected, settings.base_dir),
        group_index={group.name: group for group in groups},
    )
