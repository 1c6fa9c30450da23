"""Problems found in manifests and the error that carries them. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.errors import ReconcilerError
from reconciler.model import Note

# A position inside a document: mapping keys and list indexes, as jsonschema reports them.
PathKey = tuple[object, ...]
# More lines than this help nobody in a terminal or a CI log; ``problems`` still holds them all.
MAX_LINES_SHOWN = 100


def format_path(path: Iterable[object]) -> str:
    """``("spec", "desktops", "ids", 3)`` -> ``spec.desktops.ids[3]``."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong with the manifests: where (1-based line and column, 0 when unknown),
    which field (dotted path, ``""`` when not field-specific) and what."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}" if self.column else f":{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ManifestError(ReconcilerError):
    """The manifests are invalid. ``problems`` holds every problem found, sorted by file and line;
    ``notes`` the files skipped (not manifests, FIFOs)."""

    def __init__(self, problems: Iterable[Problem], notes: Iterable[Note] = ()) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(set(problems)))
        self.notes = tuple(notes)  # files skipped on the way, told before the problems
        super().__init__(self._render())

    def message_lines(self) -> list[str]:
        lines = [str(problem) for problem in self.problems[:MAX_LINES_SHOWN]]
        hidden = len(self.problems) - len(lines)
        if hidden:
            lines.append(f"... and {hidden} more problems")
        if len(self.problems) == 1:
            return lines
        return [f"{len(self.problems)} problems in the manifests:", *lines]

    def _render(self) -> str:
        return "\n".join(self.message_lines())
