"""A yes/no validator compiled from the manifest schema, for the happy path. No I/O.

jsonschema spends about 150 µs on a small DesktopGroup document (it resolves references and
builds error objects as it goes), which alone would make loading 1,000 groups cost twice what
parsing the YAML does. ``compile_schema`` turns the schema into nested closures once; a valid
document is then accepted in a few microseconds. Anything it rejects is validated again by
jsonschema, which produces the messages, so it only has to be *at least as strict* as jsonschema
(tests check that they agree). It knows only the keywords the manifest schemas use and refuses to
compile any other, so a schema change cannot silently outrun it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], bool]

# Keywords that do not constrain the instance.
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples", "errorMessage", "writeOnly"}
)


class UnsupportedSchema(ValueError):
    """The schema uses a keyword this compiler does not implement."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_TYPES: dict[str, Check] = {
    "null": lambda value: value is None,
    "boolean": lambda value: isinstance(value, bool),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: _is_number(value),
    "string": lambda value: isinstance(value, str),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
}


def _same(one: Any, two: Any) -> bool:
    """Equality as JSON sees it: true is not 1. Strict enough for the scalar enums we use."""
    return type(one) is type(two) and one == two


def _type(names: str | list[str]) -> Check:
    if isinstance(names, str):
        return _TYPES[names]
    checks = [_TYPES[name] for name in names]
    return lambda value: any(check(value) for check in checks)


@functools.cache
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled so that a final ``$`` means the end of the text, as in ECMA-262 (in
    Python it also matches before a final newline)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _string_checks(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if "pattern" in schema:
        search = ecma_regex(schema["pattern"]).search
        checks.append(lambda value: not isinstance(value, str) or search(value) is not None)
    if "minLength" in schema:
        low = schema["minLength"]
        checks.append(lambda value: not isinstance(value, str) or len(value) >= low)
    if "maxLength" in schema:
        high = schema["maxLength"]
        checks.append(lambda value: not isinstance(value, str) or len(value) <= high)
    return checks


def _number_checks(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if "minimum" in schema:
        low = schema["minimum"]
        checks.append(lambda value: not _is_number(value) or value >= low)
    if "maximum" in schema:
        high = schema["maximum"]
        checks.append(lambda value: not _is_number(value) or value <= high)
    if "exclusiveMinimum" in schema:
        above = schema["exclusiveMinimum"]
        checks.append(lambda value: not _is_number(value) or value > above)
    return checks


def _object_checks(schema: Mapping[str, Any], sub: Callable[[Any], Check]) -> list[Check]:
    keywords = ("properties", "required", "minProperties", "additionalProperties", "propertyNames")
    if not any(keyword in schema for keyword in keywords):
        return []
    properties = [(name, sub(subschema)) for name, subschema in schema.get("properties", {}).items()]
    known = frozenset(name for name, _ in properties)
    required = tuple(schema.get("required", ()))
    least = schema.get("minProperties", 0)
    extra = schema.get("additionalProperties", True)
    closed = extra is False  # the common case, checked as one set operation
    extra_check = None if extra is True or closed else sub(extra)
    key_check = sub(schema["propertyNames"]) if "propertyNames" in schema else None

    def check_object(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        if len(value) < least or (closed and not known.issuperset(value)):
            return False
        for name in required:
            if name not in value:
                return False
        for name, check in properties:
            if name in value and not check(value[name]):
                return False
        if extra_check is not None and not all(extra_check(v) for k, v in value.items() if k not in known):
            return False
        return key_check is None or all(map(key_check, value))

    return [check_object]


def _array_checks(schema: Mapping[str, Any], sub: Callable[[Any], Check]) -> list[Check]:
    checks: list[Check] = []
    if "items" in schema:
        item_check = sub(schema["items"])
        checks.append(lambda value: not isinstance(value, list) or all(map(item_check, value)))
    if "minItems" in schema:
        fewest = schema["minItems"]
        checks.append(lambda value: not isinstance(value, list) or len(value) >= fewest)
    if schema.get("uniqueItems"):
        # Strings only: anything else goes to jsonschema, whose equality rules are subtler.
        checks.append(
            lambda value: not isinstance(value, list)
            or (all(isinstance(item, str) for item in value) and len(set(value)) == len(value))
        )
    return checks


def _value_checks(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if "type" in schema:
        checks.append(_type(schema["type"]))
    if "enum" in schema:
        options = list(schema["enum"])
        checks.append(lambda value: any(_same(value, option) for option in options))
    if "const" in schema:
        constant = schema["const"]
        checks.append(lambda value: _same(value, constant))
    return checks


def _combinators(schema: Mapping[str, Any], sub: Callable[[Any], Check]) -> list[Check]:
    checks: list[Check] = [sub(part) for part in schema.get("allOf", [])]
    if "anyOf" in schema:
        options = [sub(part) for part in schema["anyOf"]]
        checks.append(lambda value: any(option(value) for option in options))
    if "oneOf" in schema:
        choices = [sub(part) for part in schema["oneOf"]]
        checks.append(lambda value: sum(1 for choice in choices if choice(value)) == 1)
    if "if" in schema:
        condition = sub(schema["if"])
        then, otherwise = sub(schema.get("then", True)), sub(schema.get("else", True))
        checks.append(lambda value: then(value) if condition(value) else otherwise(value))
    return checks


KNOWN = ANNOTATIONS | {
    "type", "enum", "const", "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "properties", "required", "minProperties", "additionalProperties", "propertyNames", "items", "minItems", "uniqueItems",
    "allOf", "anyOf", "oneOf", "if", "then", "else", "$ref",
}


@dataclass(frozen=True)
class Resolved:
    contents: Any
    resolver: LocalResolver


@dataclass(frozen=True)
class LocalResolver:
    """Resolves ``$ref`` between the packaged schema files by file name and JSON pointer: all
    the fast check needs, without importing ``referencing`` on every run."""

    documents: Mapping[str, Any]
    base: str

    def lookup(self, ref: str) -> Resolved:
        target, _, pointer = ref.partition("#")
        name = target or self.base
        node = self.documents[name]
        for part in pointer.split("/")[1:] if pointer else ():
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return Resolved(node, LocalResolver(self.documents, name))


def compile_schema(schema: Any, resolver: LocalResolver) -> Check:
    """A function telling whether a value is valid against ``schema`` (relative references are
    looked up with ``resolver``)."""
    if schema is True:
        return lambda value: True
    if schema is False:
        return lambda value: False
    unknown = set(schema) - KNOWN
    if unknown:
        raise UnsupportedSchema(f"fastcheck cannot compile keywords {sorted(unknown)}")

    def sub(subschema: Any) -> Check:
        return compile_schema(subschema, resolver)

    checks = _value_checks(schema) + _string_checks(schema) + _number_checks(schema)
    checks += _object_checks(schema, sub) + _array_checks(schema, sub) + _combinators(schema, sub)
    if "$ref" in schema:
        resolved = resolver.lookup(schema["$ref"])
        checks.append(compile_schema(resolved.contents, resolved.resolver))
    return checks[0] if len(checks) == 1 else _every(checks)


def _every(checks: list[Check]) -> Check:
    def check_all(value: Any) -> bool:
        return all(check(value) for check in checks)

    return check_all
