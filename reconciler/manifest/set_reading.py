"""Reading a whole manifest set: find the files, parse and check each, assemble the
``ManifestSet``. Reads the manifest files.

Everything runs in this process. A forked worker parsing half the files used to save a third of
the wall time of a 100,000-desktop plan when a second core was idle, but cost 0.13 s more CPU
(fork, copy-on-write faults, pickling the results back, a second interpreter's teardown), and on
a busy machine, where the second core is not idle, it was slower.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from reconciler.manifest.assembly import finish
from reconciler.manifest.discovery import discover
from reconciler.manifest.parsing import load_file
from reconciler.manifest.sets import Collected
from reconciler.model import ManifestSet


def load_manifests(paths: Sequence[str | os.PathLike[str]] = ()) -> ManifestSet:
    """Read and check the manifest set at ``paths`` (directories and files; none means the
    current directory). Raises ``ManifestError`` listing every problem found."""
    collected = Collected()
    files = discover(paths or ["."], collected)
    collected.results = [load_file(path) for path in files]
    return finish(collected)
