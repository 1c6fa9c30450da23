"""Schema validation errors rephrased for people: which field, what is wrong, in YAML terms.
No I/O.

jsonschema reports one error per keyword with a message written for programmers
(``Additional properties are not allowed ('idd' was unexpected)``); this module turns each into
one ``Finding`` per offending field (``spec.image: unknown field 'idd' (did you mean 'id'?)``),
pointing at the key or value a reader should look at.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only imported when a document has problems to explain
    from jsonschema.exceptions import ValidationError

from reconciler.manifest.problems import PathKey, format_path


@dataclass(frozen=True, slots=True)
class Finding:
    path: PathKey  # where in the document, to find the line
    message: str
    field: PathKey | None = None  # the field the message names, when not ``path``
    at_key: bool = False  # point at the key rather than at its value
    quote_hint: bool = False  # a string was expected: suggest quoting a plain scalar


_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
    "array": "a list", "object": "a mapping", "null": "null",
}


def show(value: Any) -> str:
    """A value as a reader would recognise it from the YAML, kept short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else f"{value[:50]!r}... ({len(value)} characters)"
    if isinstance(value, float) and not math.isfinite(value):
        return {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[str(value)]  # as YAML spells them
    if isinstance(value, (int, float)):
        text = str(value)
        return text if len(text) <= 40 else text[:30] + "..."
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"the date {value}"
    return f"a {type(value).__name__} value"


def _got(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return show(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"the number {show(value)}"
    if isinstance(value, str):
        return f"the string {show(value)}"
    return show(value)


def _type(error: ValidationError, path: PathKey) -> list[Finding]:
    expected = error.validator_value
    names = [expected] if isinstance(expected, str) else list(expected)
    words = " or ".join(_TYPE_WORDS.get(name, name) for name in names)
    return [Finding(path, f"expected {words}, got {_got(error.instance)}", quote_hint="string" in names)]


def _required(error: ValidationError, path: PathKey) -> list[Finding]:
    missing = [name for name in error.validator_value if name not in error.instance]
    return [Finding(path, f"missing required field {name!r}") for name in missing]


def _unknown(error: ValidationError, path: PathKey) -> list[Finding]:
    if error.validator_value is not False:
        return [Finding(path, error.message)]
    allowed = sorted(error.schema.get("properties", {}))
    findings = []
    for key in error.instance:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(allowed)
        findings.append(Finding(path + (key,), f"unknown field {show(key)} ({hint})", field=path, at_key=True))
    return findings


def _unique_key(value: Any) -> object:
    # jsonschema's uniqueness: 1 and true differ, 1 and 1.0 do not.
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str) + ("b" if isinstance(value, bool) else "")


def _unique(error: ValidationError, path: PathKey) -> list[Finding]:
    first: dict[object, int] = {}
    findings = []
    for index, item in enumerate(error.instance):
        key = _unique_key(item)
        if key in first:
            also = format_path(path + (first[key],))
            findings.append(Finding(path + (index,), f"{show(item)} is listed more than once (also at {also})"))
        else:
            first[key] = index
    return findings


def _custom(error: ValidationError) -> str | None:
    message = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    return message if isinstance(message, str) else None


def _simple(error: ValidationError, path: PathKey) -> list[Finding]:
    value, limit, custom = error.instance, error.validator_value, _custom(error)
    messages: dict[str, Callable[[], str]] = {
        "enum": lambda: f"{show(value)} is not one of: {', '.join(map(str, limit))}",
        "const": lambda: f"expected {show(limit)}, got {show(value)}",
        # writeOnly marks a field that may hold a secret by mistake (a password in a URL): not echoed.
        "pattern": lambda: f"{'the value' if error.schema.get('writeOnly') else show(value)} is invalid: "
                           f"{custom or 'it does not match ' + limit}",
        "minimum": lambda: f"{show(value)} is less than the minimum of {limit}",
        "maximum": lambda: f"{show(value)} is greater than the maximum of {limit}",
        "exclusiveMinimum": lambda: f"{show(value)} must be greater than {limit}",
        "exclusiveMaximum": lambda: f"{show(value)} must be less than {limit}",
        "minLength": lambda: "must not be empty" if limit == 1 else f"must be at least {limit} characters long",
        "maxLength": lambda: f"is {len(value)} characters long, more than the maximum of {limit}",
        "minProperties": lambda: custom or "must not be empty",
        "minItems": lambda: f"must hold at least {limit} items",
        "maxItems": lambda: f"holds {len(value)} items, more than the maximum of {limit}",
    }
    make = messages.get(error.validator)
    return [Finding(path, make() if make else error.message)]


def _property_name(error: ValidationError, path: PathKey) -> list[Finding]:
    key = error.instance
    if error.validator == "type":
        reason = f"keys must be strings, got {_got(key)}"
    else:
        reason = _custom(error) or error.message
    return [Finding(path + (key,), f"invalid key {show(key)}: {reason}", field=path, at_key=True)]


def _alternatives(error: ValidationError, path: PathKey) -> list[Finding]:
    """A rule across fields ("ids or a selector", "exactly one of region, endpoint or
    simulator"): its own message, with the fields given when there are some, pointing at the
    last of them."""
    message = _custom(error) or error.message
    instance = error.instance if isinstance(error.instance, dict) else {}
    names = [part["required"][0] for part in error.validator_value if isinstance(part, dict) and part.get("required")]
    given = [name for name in names if instance.get(name) is not None]
    if error.validator == "oneOf" and len(given) != 1:
        message += f" (found {' and '.join(given) if given else 'none of them'})"
    if given and error.validator == "oneOf":
        return [Finding(path + (given[-1],), message, field=path, at_key=True)]
    return [Finding(path, message)]


_HANDLERS: dict[str, Callable[[ValidationError, PathKey], list[Finding]]] = {
    "type": _type,
    "required": _required,
    "additionalProperties": _unknown,
    "uniqueItems": _unique,
}


def describe(error: ValidationError) -> list[Finding]:
    """The findings behind one validation error."""
    path = tuple(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path:
        # jsonschema reports a bad key at its mapping; the key itself is the instance.
        return _property_name(error, path)
    handler = _HANDLERS.get(str(error.validator))
    if handler is not None:
        return handler(error, path)
    if error.validator in ("anyOf", "oneOf") and _custom(error):
        return _alternatives(error, path)
    if error.context:  # anyOf/oneOf: the branch that came closest says the most
        from jsonschema.exceptions import best_match

        return describe(best_match(error.context))
    return _simple(error, path)
