"""The manifest JSON Schemas, the validator and the fast path in front of it. Reads the packaged
schema files (``reconciler/schemas/*.schema.json``) once.

The schemas are the documented contract. Three deliberate deviations from jsonschema's defaults,
all stricter: ``integer`` excludes floats such as ``5.0`` (a batch of 5.0 desktops is a typo), a
``number`` is finite (YAML's ``.nan`` passes every bound), and a ``$`` ending a ``pattern`` means
end of text as in ECMA-262 (Python's ``$`` also matches before a trailing newline, which would
let ``"abc\\n"`` pass as an id).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from reconciler.cloud.endpoints import ID_PATTERN
from reconciler.manifest import fastcheck

if TYPE_CHECKING:  # jsonschema and referencing are imported only to explain a refused document
    from jsonschema.exceptions import ValidationError
    from referencing import Registry, Resource

SCHEMA_FILES = ("manifest.schema.json", "settings.schema.json")
# ID_PATTERN is "^...$": its body, once per line, is the pattern of a list of ids.
_IDS_LINES = re.compile(f"(?:{ID_PATTERN.pattern[1:-1]}\n)*")


@functools.cache
def schema(name: str = "manifest.schema.json") -> dict[str, Any]:
    """A packaged schema, parsed (shared: do not modify)."""
    text = resources.files("reconciler").joinpath("schemas", name).read_text("utf-8")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def _pattern(validator: Any, pattern: str, instance: Any, subschema: dict[str, Any]) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not fastcheck.ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _strict_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _finite_number(checker: Any, instance: Any) -> bool:
    # YAML has .nan and .inf; NaN slips past every minimum and maximum.
    return isinstance(instance, (int, float)) and not isinstance(instance, bool) and math.isfinite(instance)


@functools.cache
def _validator_class() -> Any:
    import jsonschema

    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        validators={"pattern": _pattern},
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
            {"integer": _strict_integer, "number": _finite_number}
        ),
    )


def _resource(name: str) -> Resource[Any]:
    from referencing import Resource
    from referencing.jsonschema import DRAFT202012

    # Without "$schema": following a $ref into a resource that names its meta-schema, jsonschema
    # switches to the stock validator class for it, dropping the stricter rules above.
    contents = {key: value for key, value in schema(name).items() if key != "$schema"}
    return Resource.from_contents(contents, default_specification=DRAFT202012)


def registry() -> Registry[Any]:
    """The schema files by file name, so ``"$ref": "settings.schema.json#..."`` resolves as it
    does for an editor that loaded manifest.schema.json from disk."""
    from referencing import Registry

    return Registry().with_resources((name, _resource(name)) for name in SCHEMA_FILES)


@functools.cache
def validator() -> Any:
    """The compiled validator for one manifest document (either kind)."""
    return _validator_class()(schema(), registry=registry())


def ids_acceptable(ids: list[Any]) -> bool:
    """What the schema says of ``spec.desktops.ids``, fast: strings matching the id pattern,
    none repeated. jsonschema takes about 10 µs an item; this, one regular expression over the
    ids joined by newlines (which no id may contain, so the count of newlines tells each apart)."""
    if not ids:
        return True
    try:
        text = "\n".join(ids) + "\n"
    except TypeError:  # not all strings
        return False
    if text.count("\n") != len(ids) or not _IDS_LINES.fullmatch(text):
        return False
    return len(set(ids)) == len(ids)


def schema_view(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` as the validator should see it: when the long ``ids`` list passes
    ``ids_acceptable``, a shallow copy with the list cut to its first id, so jsonschema skips the
    rest (one id keeps "ids or a selector" true). When it does not, the document itself, so the
    problems come from the schema."""
    try:
        spec = document["spec"]
        desktops = spec["desktops"]
        ids = desktops["ids"]
    except (KeyError, TypeError, IndexError):
        return document
    if not isinstance(ids, list) or not ids or not ids_acceptable(ids):
        return document
    return {**document, "spec": {**spec, "desktops": {**desktops, "ids": ids[:1]}}}


@functools.cache
def fast_check() -> fastcheck.Check:
    """The schema compiled to a yes/no check (see ``fastcheck``)."""
    documents = {name: schema(name) for name in SCHEMA_FILES}
    return fastcheck.compile_schema(schema(), fastcheck.LocalResolver(documents, SCHEMA_FILES[0]))


def validation_errors(document: Any) -> list[ValidationError]:
    """Everything the schema finds wrong with ``document`` (one YAML document's data)."""
    view = schema_view(document) if isinstance(document, dict) else document
    if fast_check()(view):
        return []
    return list(validator().iter_errors(view))
