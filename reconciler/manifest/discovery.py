"""Finding the manifest files a command names. Reads directory listings (no file contents).

Directories are searched recursively for ``*.yaml``/``*.yml``, skipping hidden names; files
named directly are taken whatever their name; each file is listed once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from reconciler.manifest.problems import Problem
from reconciler.manifest.sets import Collected

SUFFIXES = (".yaml", ".yml")



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

