"""Manifests: find, read and check the YAML files of a manifest set and build its model values.
Reads files (``load_manifests``); the submodules say which of them do I/O.

``load_manifests(paths)`` returns a ``reconciler.model.ManifestSet`` or raises ``ManifestError``,
whose ``problems`` name file, line, column and field of everything wrong, all at once.
"""

from reconciler.manifest.discovery import SUFFIXES
from reconciler.manifest.parsing import MAX_FILE_BYTES
from reconciler.manifest.problems import ManifestError, Problem
from reconciler.manifest.set_reading import load_manifests
from reconciler.manifest.yamlsafe import MAX_ALIAS_NODES, MAX_ALIASES

__all__ = [
    "MAX_ALIASES",
    "MAX_ALIAS_NODES",
    "MAX_FILE_BYTES",
    "SUFFIXES",
    "ManifestError",
    "Problem",
    "load_manifests",
]
