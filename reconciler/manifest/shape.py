"""Telling a reconciler manifest, typos included, from other YAML that shares its directory (a
simulator fleet, a CI workflow, another tool's manifests). No I/O.

A pre-commit hook runs ``validate`` at a repository root, where such files live. A document is
*foreign* when nothing in it says "reconciler manifest": no ``apiVersion`` or ``kind`` key (nor
a near miss such as ``apiVersoin`` or ``Kind``) and no ``metadata`` or ``spec``; or such keys
whose values are all text far from ours (``apiVersion: apps/v1``, ``kind: Deployment``). So a
manifest with a typo in ``apiVersion`` still reads as a manifest, and is refused for it.
"""

from __future__ import annotations

import difflib
from typing import Any

API_VERSION = "reconciler/v1"
OUR_KEYS = ("apiversion", "kind")
OUR_VALUES = ("reconciler/v1", "settings", "desktopgroup")
SHAPE_KEYS = frozenset({"metadata", "spec"})
# A scalar document naming these is a manifest gone wrong (``apiVersion reconciler/v1``).
OUR_WORDS = ("apiVersion", "reconciler/", "DesktopGroup")


def _near(text: str, choices: tuple[str, ...], cutoff: float) -> bool:
    return bool(difflib.get_close_matches(text.lower(), choices, n=1, cutoff=cutoff))


def _ours(value: Any) -> bool:
    if not isinstance(value, str):
        return True  # a kind of 5 is a broken manifest, not someone else's document
    return value.lower().startswith("reconciler") or _near(value, OUR_VALUES, 0.6)


def _mapping_is_manifest(value: dict[Any, Any]) -> bool:
    if value.get("apiVersion") == API_VERSION:  # nearly always: no need to look further
        return True
    named = [key for key in value if isinstance(key, str) and _near(key, OUR_KEYS, 0.7)]
    if not named:
        return any(key in SHAPE_KEYS for key in value)
    return any(_ours(value[key]) for key in named)


def looks_like_manifest(value: Any) -> bool:
    """Whether a YAML document (its data) is meant as a reconciler manifest."""
    if isinstance(value, dict):
        return _mapping_is_manifest(value)
    if isinstance(value, list):  # `- apiVersion: ...`: a manifest indented as a list by mistake
        return any(isinstance(item, dict) and _mapping_is_manifest(item) for item in value)
    if isinstance(value, str):
        return any(word in value for word in OUR_WORDS)
    return False
