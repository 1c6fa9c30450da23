"""Reading, parsing and checking one manifest file into a ``FileResult``. Reads the file.

Each file is read whole (up to ``MAX_FILE_BYTES``), parsed one document at a time, and each
document is validated while its YAML node tree is still at hand, so a problem's line costs
nothing when there are no problems. Checks that span documents run later, over the whole set
(``reconciler.manifest.assembly``).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.nodes import Node

from reconciler.manifest import build, yamlsafe
from reconciler.manifest.messages import Finding, describe
from reconciler.manifest.problems import Problem, format_path
from reconciler.manifest.schema import validation_errors
from reconciler.manifest.sets import Declared, FileResult
from reconciler.manifest.shape import API_VERSION, looks_like_manifest
from reconciler.model import Location

MAX_FILE_BYTES = 8 * 1024 * 1024
# Unquoted text YAML reads as something else: 22:00 is the number 1320, 0 a number, no false.
MISREAD_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("int", "float", "bool", "timestamp"))


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
    if not looks_like_manifest(value):
        result.foreign.append(Location(file, line, column))  # where only: its content is not ours to show
        return
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
    _settle_foreign(result)
    return result


def _settle_foreign(result: FileResult) -> None:
    """A file of foreign documents only is skipped with a note; one mixed into a manifest file
    is a problem (a manifest's indentation gone wrong, say)."""
    if not result.foreign:
        return
    if result.first_document is None and result.complete:
        result.note = f"not a reconciler manifest (no apiVersion: {API_VERSION}): skipped"
        return
    message = f"not a reconciler manifest: expected apiVersion: {API_VERSION} and kind: Settings or DesktopGroup"
    result.problems += [Problem(where.file, where.line, where.column, "", message) for where in result.foreign]

