"""Finding the manifest files a command names. Reads directory listings and file types (no file
contents).

Directories are searched recursively for ``*.yaml``/``*.yml``, skipping hidden names; files
named directly are taken whatever their name; each file is listed once. Manifests may come from
a pull request, so a symbolic link is followed only while it stays inside the directory named
(its parent, for a file named directly): one that leads out is a problem, never read. FIFOs,
sockets and devices are skipped with a note (reading a FIFO would wait forever).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from reconciler.manifest.paths import inside, kind_of
from reconciler.manifest.problems import Problem
from reconciler.manifest.sets import Collected
from reconciler.model import Note

SUFFIXES = (".yaml", ".yml")
LEADS_OUT = "a symbolic link that leads outside {root}: not followed"


def _is_manifest_name(name: str) -> bool:
    return name.endswith(SUFFIXES) and not name.startswith(".")


def _linked(path: Path, root: Path, collected: Collected) -> Path | None:
    """The path, when the symbolic link at ``path`` leads to a regular file inside ``root``
    (a link to a directory is not followed: its files are found where they are)."""
    if not inside(root, path):
        collected.path_problems.append(Problem(str(path), 0, 0, "", LEADS_OUT.format(root=root)))
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        collected.path_problems.append(Problem(str(path), 0, 0, "", "a symbolic link to nothing"))
        return None
    return _regular(path, mode, collected)


def _regular(path: Path, mode: int, collected: Collected) -> Path | None:
    if stat.S_ISREG(mode):
        return path
    if not stat.S_ISDIR(mode):
        collected.notes.append(Note(str(path), f"{kind_of(mode)}, not a file: skipped"))
    return None


def _walk(root: Path, collected: Collected) -> list[Path]:
    """The manifest files under ``root``. ``os.scandir`` knows each entry's type without a
    system call per file; only symbolic links cost one more."""
    found: list[Path] = []
    pending = [root]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                # Hidden entries hold state (.reconciler/), VCS data (.git/) and tool caches.
                if entry.name.startswith("."):
                    continue
                path = Path(directory, entry.name)
                if entry.is_symlink():
                    if not _is_manifest_name(entry.name):
                        # A linked directory is not searched; one that leads out may be an attack.
                        if not inside(root, path) and os.path.isdir(path):
                            collected.path_problems.append(Problem(str(path), 0, 0, "", LEADS_OUT.format(root=root)))
                        continue
                    taken = _linked(path, root, collected)
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                    continue
                elif _is_manifest_name(entry.name):
                    taken = _regular(path, entry.stat(follow_symlinks=False).st_mode, collected)
                else:
                    continue
                if taken is not None:
                    found.append(taken)
    return sorted(found, key=lambda path: path.parts)


def _named_file(path: Path, collected: Collected) -> list[Path]:
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        taken = _linked(path, path.parent, collected)
    else:
        taken = _regular(path, mode, collected)
    return [taken] if taken is not None else []


def discover(paths: Iterable[str | os.PathLike[str]], collected: Collected) -> list[Path]:
    """The manifest files ``paths`` name, each once, in order: directories are searched
    recursively, files are taken whatever their name."""
    files: list[Path] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            told = len(collected.path_problems) + len(collected.notes)
            candidates = _walk(path, collected)
            if not candidates and told == len(collected.path_problems) + len(collected.notes):
                collected.path_problems.append(Problem(str(path), 0, 0, "", "no manifest files (*.yaml, *.yml) here"))
        elif path.exists() or path.is_symlink():
            candidates = _named_file(path, collected)
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
