"""Where the files a manifest set names may be: inside the manifest directory. Looks at the file
system (resolves symbolic links, reads file types); reads no file's content.

Manifests come from pull requests, and ``plan`` runs on them before anyone has reviewed them: a
path a manifest names must not reach files outside its checkout (``/etc/shadow``, another
team's state, the runner's ``.ssh``). Every path the Settings name is resolved against the
manifest directory (the directory of the file holding the Settings) and must stay inside it,
after following symbolic links. The schema refuses absolute paths and ``..`` already; the
checks here catch what only the file system knows. The one exception is the local state path,
which the Settings may place anywhere with ``state.path_outside_manifests: true``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from reconciler.manifest.problems import Problem
from reconciler.model import Settings

# Where the embedded simulator keeps its state, relative to the manifest directory.
SIMULATOR_FILE = os.path.join(".reconciler", "simulator.json")


def inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (which need not exist) is ``root`` or under it once every symbolic link
    on the way is followed."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def kind_of(mode: int) -> str:
    """A file type in words, for notes about files that are skipped."""
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return word
    return "not a regular file"


def _problem(settings: Settings, field: str, message: str) -> Problem:
    source = settings.source
    return Problem(source.file, source.line, source.column, field, message)


def fleet_problems(settings: Settings) -> list[Problem]:
    """What is wrong with where the embedded simulator's files are: the fleet file (inside the
    manifest directory, a regular file) and ``.reconciler/`` (inside too)."""
    fleet = settings.simulator_fleet
    if fleet is None:
        return []
    field = "spec.simulator.fleet"
    path = settings.resolve(fleet)
    if not inside(settings.base_dir, path):
        return [_problem(settings, field, f"{fleet!r} leads outside the manifest directory (a symbolic link?)")]
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return [_problem(settings, field, f"no such file: {path}")]
    if not stat.S_ISREG(mode):
        return [_problem(settings, field, f"{path} is {kind_of(mode)}, not a fleet file")]
    simulator_file = settings.resolve(SIMULATOR_FILE)
    if not inside(settings.base_dir, simulator_file):
        message = f"{simulator_file.parent} leads outside the manifest directory; the simulator keeps its state there"
        return [_problem(settings, field, message)]
    return []


def _blocking_file(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a directory (a state path
    through another state's journal file, ``state.json.journal/state.json``)."""
    for ancestor in path.parents:
        if os.path.lexists(ancestor):
            return None if ancestor.is_dir() else ancestor
    return None


def _state_problems(settings: Settings) -> list[Problem]:
    state = settings.state
    if state.backend != "local":
        return []
    blocking = _blocking_file(settings.state_file)
    if blocking is not None:
        return [_problem(settings, "spec.state.path", f"{blocking} is a file, not a directory: the state cannot be there")]
    if state.path_outside_manifests or inside(settings.base_dir, settings.state_file):
        return []
    message = (
        f"{state.path!r} leads outside the manifest directory (a symbolic link?); to keep the state "
        "elsewhere, say so with path_outside_manifests: true"
    )
    return [_problem(settings, "spec.state.path", message)]


def settings_path_problems(settings: Settings) -> list[Problem]:
    """What is wrong with where the Settings' paths lead (the simulator's fleet file, the state)."""
    return fleet_problems(settings) + _state_problems(settings)


def simulator_file(settings: Settings) -> Path:
    """The embedded simulator's state file: under the manifest directory, whatever the state
    path, so that ``plan`` never writes beside a state it does not own."""
    return settings.resolve(SIMULATOR_FILE)
