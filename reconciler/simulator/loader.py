"""Read and validate fleet files: YAML with line numbers, the JSON Schema, then semantic checks.

I/O: reads the fleet file and the packaged schema. Every problem is reported, not just the
first, each as ``<file>:<line>: <field.path>: <problem>``. A fleet path comes from manifests,
which may come from a pull request: the file may be anything (``.env``, a key), so a message
names keys, positions and kinds of values, never a value or any other text of the file.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match

from reconciler.errors import ReconcilerError
from reconciler.simulator import spec

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PathKey = tuple[str | int, ...]
MAX_DESKTOPS = 1_000_000
_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "number": "a number",
    "boolean": "true or false", "array": "a list", "object": "a mapping", "null": "null",
}


class FleetError(ReconcilerError, ValueError):
    """An invalid fleet; ``problems`` holds one ``<file>:<line>: <path>: <problem>`` per issue."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Problem:
    path: PathKey
    message: str
    line: int | None = None  # when known better than the path's own line (duplicate keys)


@functools.cache
def fleet_schema() -> dict[str, Any]:
    """The packaged fleet JSON Schema (read once)."""
    text = resources.files("reconciler").joinpath("schemas/fleet.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(pointer: str | None) -> jsonschema.Draft202012Validator:
    root = fleet_schema()
    schema = root if pointer is None else {"$defs": root["$defs"], "$ref": pointer}
    return jsonschema.Draft202012Validator(schema)


# Keys are named in messages only when they look like field names.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")
# Quoted text in a YAML parser message is text of the file (a character, an alias name).
_QUOTED = re.compile(r"\s*'(?!<)[^']*'")


def _key(part: str | int) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    return part if _PLAIN_KEY.fullmatch(part) else "<key>"


def format_path(path: PathKey) -> str:
    text = ""
    for part in path:
        shown = _key(part)
        text += shown if isinstance(part, int) else (f".{shown}" if text else shown)
    return text or "(top level)"


# --- schema problems -------------------------------------------------------------------------

def _show(value: Any) -> str:
    """What kind of value was found, never the value: the file may be a secret."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    names = {str: "a string", list: "a list", dict: "a mapping", type(None): "null"}
    return names.get(type(value), "a value of another type")



def _describe(error: ValidationError) -> list[Problem]:
    path: PathKey = tuple(error.absolute_path)
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "required":
        return [Problem(path + (name,), "is required") for name in expected if name not in value]
    if kind == "additionalProperties" and expected is False:
        allowed = sorted(error.schema.get("properties", {}))
        return [
            Problem(path + (key,), f"unknown key (expected one of: {', '.join(allowed)})")
            for key in value if key not in allowed
        ]
    if kind == "anyOf" and error.context:
        return _describe(best_match(error.context))
    return [Problem(path, _simple_message(kind, expected, value))]


def _simple_message(kind: str, expected: Any, value: Any) -> str:
    if kind == "type":
        words = [_TYPE_WORDS.get(t, t) for t in ([expected] if isinstance(expected, str) else expected)]
        return f"must be {' or '.join(words)} (got {_show(value)})"
    if kind == "enum":
        return f"must be one of {', '.join(map(str, expected))} (got {_show(value)})"
    messages = {
        "minimum": f"must be at least {expected}",
        "maximum": f"must be at most {expected}",
        "exclusiveMinimum": f"must be greater than {expected}",
        "minLength": "must not be empty" if expected == 1 else f"must be at least {expected} characters long",
        "maxLength": f"must be at most {expected} characters long",
        "minItems": f"must hold at least {expected} items",
        "maxItems": f"must hold at most {expected} items",
        "pattern": f"must match {expected}",
        "propertyNames": "has a key that is not allowed",
    }
    if kind == "pattern" and isinstance(value, str) and value == "":
        return "must not be empty"
    # jsonschema's own messages quote the value: never used.
    return messages.get(kind, f"is not valid ({kind})")


def schema_problems(instance: Any, pointer: str | None = None) -> list[Problem]:
    """Problems of `instance` against the fleet schema, or the subschema at `pointer` (a `#/...` ref)."""
    seen: dict[tuple[PathKey, str], Problem] = {}
    for error in _validator(pointer).iter_errors(instance):
        for problem in _describe(error):
            seen.setdefault((problem.path, problem.message), problem)
    return list(seen.values())


# --- defaults --------------------------------------------------------------------------------

def _resolve(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s; keywords next to a `$ref` win over the target's."""
    merged = dict(schema)
    while "$ref" in merged:
        target = fleet_schema()["$defs"][merged.pop("$ref").rsplit("/", 1)[-1]]
        merged = {**target, **merged}
    return merged


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """Fill in schema defaults, in place, for a value that already validated."""
    resolved = _resolve(schema)
    if isinstance(value, dict):
        for name, sub in resolved.get("properties", {}).items():
            sub_resolved = _resolve(sub)
            if name not in value and "default" in sub_resolved:
                value[name] = copy.deepcopy(sub_resolved["default"])
            if name in value:
                value[name] = apply_defaults(value[name], sub)
    elif isinstance(value, list) and "items" in resolved:
        for index, item in enumerate(value):
            value[index] = apply_defaults(item, resolved["items"])
    return value


def defaults_for(pointer: str) -> dict[str, Any]:
    """A defaults-filled empty object of the subschema at `pointer`."""
    filled: dict[str, Any] = apply_defaults({}, {"$ref": pointer})
    return filled


# --- YAML with line numbers ------------------------------------------------------------------

class _Lines:
    """Line of every key and list item of a YAML document, walked from its node graph."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[PathKey, int] = {}
        self.problems: list[Problem] = []
        if root is not None:
            self.lines[()] = root.start_mark.line + 1
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: PathKey) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key_node.start_mark.line + 1
                if key_node.tag != "tag:yaml.org,2002:str":
                    self.problems.append(Problem(path, "keys must be strings", line))
                    continue
                key = key_node.value
                self.lines.setdefault(path + (key,), line)
                if key in seen:
                    self.problems.append(Problem(path + (key,), "duplicate key", line))
                seen.add(key)
                self._walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = item.start_mark.line + 1
                self._walk(item, path + (index,))

    def line(self, path: PathKey) -> int | None:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _parse_yaml(text: str, source: str) -> tuple[Any, _Lines]:
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        lines = _Lines(node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = mark.line + 1 if mark else 1
        reason = _QUOTED.sub("", exc.problem or exc.context or "syntax error")
        raise FleetError([f"{source}:{where}: (top level): invalid YAML: {reason}"]) from None
    except yaml.YAMLError:
        raise FleetError([f"{source}:1: (top level): not readable as YAML text"]) from None
    finally:
        loader.dispose()
    return data, lines


# --- semantic checks -------------------------------------------------------------------------

def _unique(items: list[Mapping[str, Any]], section: str, key: Callable[[Any], Any], field: str) -> list[Problem]:
    problems: list[Problem] = []
    first: dict[Any, int] = {}
    for index, item in enumerate(items):
        value = key(item)
        if value in first:
            message = f"duplicate {section[:-1]} {field} (also {section}[{first[value]}])"
            problems.append(Problem((section, index, field), message))
        first.setdefault(value, index)
    return problems


def _semantic_problems(data: Mapping[str, Any]) -> list[Problem]:
    problems = _unique(data["images"], "images", lambda i: i["id"], "id")
    problems += _unique(data["credentials"], "credentials", lambda c: c["ak"], "ak")
    problems += _unique(data["users"], "users", lambda u: (u["domain"], u["name"]), "name")
    images = {image["id"] for image in data["images"]}
    names: dict[str, PathKey] = {}
    ids: dict[str, PathKey] = {}
    for index, desktop in enumerate(data["desktops"]):
        path: PathKey = ("desktops", index)
        if desktop["image_id"] not in images:
            problems.append(Problem(path + ("image_id",), "names an image that is not declared in images"))
        desktop_id = desktop["id"] or spec.derived_desktop_id(data["project_id"], desktop["name"])
        # A duplicate name implies a duplicate derived id: report the cause only.
        problems += _claim(names, desktop["name"], path + ("name",), "name") or _claim(
            ids, desktop_id, path + ("id",), "id"
        )
    problems += _generate_problems(data, images, names, ids)
    return problems


def _claim(owners: dict[str, PathKey], value: str, path: PathKey, what: str) -> list[Problem]:
    if value in owners:
        return [Problem(path, f"duplicate desktop {what} (also {format_path(owners[value])})")]
    owners[value] = path
    return []


def _generate_problems(
    data: Mapping[str, Any], images: set[str], names: dict[str, PathKey], ids: dict[str, PathKey]
) -> list[Problem]:
    problems: list[Problem] = []
    total = len(data["desktops"])
    for index, entry in enumerate(data["generate"]):
        total += entry["count"]
        if total > MAX_DESKTOPS:
            return [Problem(("generate", index, "count"), f"a fleet holds at most {MAX_DESKTOPS} desktops")]
    for index, entry in enumerate(data["generate"]):
        path: PathKey = ("generate", index)
        if entry["image_id"] not in images:
            problems.append(Problem(path + ("image_id",), "names an image that is not declared in images"))
        for name in spec.generated_names(entry):
            clash = _claim(names, name, path + ("name_prefix",), "name") or _claim(
                ids, spec.derived_desktop_id(data["project_id"], name), path + ("name_prefix",), "id"
            )
            if clash:
                problems += clash
                break
    return problems


# --- building --------------------------------------------------------------------------------

def _build(data: dict[str, Any], source: str) -> spec.FleetSpec:
    desktops = [spec.desktop_from_dict(data["project_id"], entry) for entry in data["desktops"]]
    for entry in data["generate"]:
        desktops.extend(spec.generated_desktops(data["project_id"], entry))
    return spec.FleetSpec(
        project_id=data["project_id"],
        credentials=tuple(spec.Credential(c["ak"], c["sk"]) for c in data["credentials"]),
        users=tuple(spec.User(u["name"], u["password"], u["domain"]) for u in data["users"]),
        images=tuple(spec.image_from_dict(image) for image in data["images"]),
        desktops=tuple(desktops),
        behaviour=spec.behaviour_from_dict(data["behaviour"]),
        source=source,
    )


def _raise(problems: list[Problem], source: str, lines: _Lines | None) -> None:
    def where(problem: Problem) -> tuple[int, str]:
        line = problem.line or (lines.line(problem.path) if lines else None)
        return (line or 0, format_path(problem.path))

    rendered = []
    for problem in sorted(problems, key=where):
        line, path = where(problem)
        prefix = f"{source}:{line}" if line else source
        rendered.append(f"{prefix}: {path}: {problem.message}")
    raise FleetError(rendered)


def _load(data: Any, source: str, lines: _Lines | None) -> spec.FleetSpec:
    if lines is not None and lines.problems:
        _raise(lines.problems, source, lines)
    if not isinstance(data, dict):
        _raise([Problem((), f"must be a mapping with at least project_id (got {_show(data)}): is this a fleet file?")], source, lines)
    problems = schema_problems(data)
    if problems:
        _raise(problems, source, lines)
    apply_defaults(data, fleet_schema())
    problems = _semantic_problems(data)
    if problems:
        _raise(problems, source, lines)
    return _build(data, source)


def load_fleet_data(data: Mapping[str, Any], source: str = "<fleet>") -> spec.FleetSpec:
    """Validate an already-parsed fleet (no line numbers: problems read ``<source>: <path>: ...``)."""
    return _load(copy.deepcopy(dict(data)) if isinstance(data, Mapping) else data, source, None)


def load_fleet(path: str | Path) -> spec.FleetSpec:
    """Read, parse and validate a fleet YAML file; FleetError on any problem, OSError if unreadable."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FleetError([f"{source}:1: (top level): not UTF-8 text ({exc.reason})"]) from None
    data, lines = _parse_yaml(text, source)
    if data is None:
        raise FleetError([f"{source}:1: (top level): the file is empty; a fleet needs at least project_id"])
    return _load(data, source, lines)
