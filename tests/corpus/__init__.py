"""The corpus of bad manifest sets, shared by the loader tests and the CLI tests. Reads and
copies the case directories.

Each ``bad/<case>/`` directory is one manifest set that must be refused: its ``*.yaml`` files, an
``expect.txt`` with one substring per line that the error text must contain (at least a file name
and ``:<line>``), and optionally a ``generate.json`` describing files too big to commit, written
by ``materialize``: ``{"name.yaml": {"head": text, "filler": text, "bytes": size}}`` makes a file
of ``head`` followed by ``filler`` repeated until it holds at least ``size`` bytes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

BAD = Path(__file__).parent / "bad"
NOT_MANIFESTS = ("expect.txt", "generate.json")


def bad_cases() -> list[Path]:
    """Every bad case directory, sorted by name."""
    return sorted(path for path in BAD.iterdir() if path.is_dir())


def expectations(case: Path) -> list[str]:
    """The substrings the error text for ``case`` must contain."""
    return [line for line in (case / "expect.txt").read_text("utf-8").splitlines() if line.strip()]


def materialize(case: Path, destination: Path) -> Path:
    """Copy the manifests of ``case`` into ``destination`` (created) and write its generated
    files; returns ``destination``, ready to be loaded."""
    destination.mkdir(parents=True, exist_ok=True)
    for source in case.iterdir():
        if source.is_file() and source.name not in NOT_MANIFESTS:
            shutil.copyfile(source, destination / source.name)
    spec_file = case / "generate.json"
    if spec_file.exists():
        for name, spec in json.loads(spec_file.read_text("utf-8")).items():
            _generate(destination / name, spec["head"], spec["filler"], spec["bytes"])
    return destination


def _generate(path: Path, head: str, filler: str, size: int) -> None:
    head_bytes, filler_bytes = head.encode(), filler.encode()
    repeats = max(0, -(-(size - len(head_bytes)) // len(filler_bytes)))
    path.write_bytes(head_bytes + filler_bytes * repeats)
