"""Reading a whole manifest set: find the files, parse them (with both cores on a large set),
assemble the ``ManifestSet``. Reads the manifest files (and forks a worker).

On a large set, parsing YAML is most of a plan's own time: 100,000 desktop ids in 1,000 files
take a third of a second in libyaml alone. The files are queued by size; this process takes
them from the small end — where the Settings usually are, so the caller can read the state
(``early_settings``) while parsing goes on — and a forked worker from the large end, until the
two meet. However long the state takes to read, the work splits evenly. Small sets, one-core
machines and processes that already run other threads (where forking is unsafe) read
everything here.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from reconciler.manifest.assembly import finish, settings_of
from reconciler.manifest.discovery import discover
from reconciler.manifest.parsing import load_file
from reconciler.manifest.sets import Collected, FileResult
from reconciler.model import ManifestSet, Settings

# Below this many bytes of manifests, a fork costs more than it saves.
PARALLEL_MIN_BYTES = 1 << 20


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # load_file reports it


def _can_fork() -> bool:
    return (
        (os.cpu_count() or 1) > 1
        and "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
    )


class _Queue:
    """File indexes, smallest file first; this process takes from the front, the worker from
    the back. ``bounds`` is shared memory: [next from the front, next from the back]."""

    def __init__(self, order: list[int], context: Any) -> None:
        self.order = order
        self.lock = context.Lock()
        self.bounds = context.RawArray("i", [0, len(order) - 1])

    def take(self, front: bool) -> int | None:
        with self.lock:
            low, high = int(self.bounds[0]), int(self.bounds[1])
            if low > high:
                return None
            if front:
                self.bounds[0] = low + 1
                return self.order[low]
            self.bounds[1] = high - 1
            return self.order[high]


def _work(queue: _Queue, files: Sequence[Path], sender: Connection) -> None:
    """The worker: parse from the back of the queue, then send every result at once."""
    results = []
    while (index := queue.take(front=False)) is not None:
        results.append((index, load_file(files[index])))
    sender.send(results)
    sender.close()


class ManifestReading:
    """A manifest set being read; ``result()`` returns it (or raises ``ManifestError``)."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], *, parallel: bool | None = None) -> None:
        """``parallel``: None decides by size; False reads everything here; True uses a worker
        whenever forking is possible and safe."""
        self._collected = Collected()
        self._files = discover(paths or ["."], self._collected)
        self._results: dict[int, FileResult] = {}
        sizes = [_size(path) for path in self._files]
        order = sorted(range(len(self._files)), key=lambda i: (sizes[i], i))
        self._queue: _Queue | None = None
        self._local_order = order
        wanted = sum(sizes) >= PARALLEL_MIN_BYTES if parallel is None else parallel
        self.parallel = wanted and len(self._files) > 1 and _can_fork()
        if self.parallel:
            context = multiprocessing.get_context("fork")
            self._queue = _Queue(order, context)
            self._receiver, sender = context.Pipe(duplex=False)
            self._worker = context.Process(target=_work, args=(self._queue, self._files, sender), daemon=True)
            self._worker.start()
            sender.close()

    def _next(self) -> int | None:
        if self._queue is not None:
            return self._queue.take(front=True)
        while self._local_order:
            index = self._local_order.pop(0)
            if index not in self._results:
                return index
        return None

    def _parse_one(self) -> FileResult | None:
        index = self._next()
        if index is None:
            return None
        result = self._results[index] = load_file(self._files[index])
        return result

    def early_settings(self) -> Settings | None:
        """The Settings, as soon as this process has parsed the file holding them (None if it
        never does, or if that document is not a valid Settings)."""
        while (result := self._parse_one()) is not None:
            if result.settings:
                found = result.settings
                return settings_of(found[0]) if len(found) == 1 and found[0].valid else None
        return None

    def _collect_worker(self) -> None:
        try:
            self._results.update(self._receiver.recv())
        except (EOFError, OSError):
            pass  # the worker died: its files are parsed here below
        finally:
            self._receiver.close()
            self._worker.join()

    def result(self) -> ManifestSet:
        while self._parse_one() is not None:
            pass
        if self._queue is not None:
            self._collect_worker()
        for index in range(len(self._files)):
            if index not in self._results:
                self._results[index] = load_file(self._files[index])
        self._collected.results = [self._results[i] for i in range(len(self._files))]
        return finish(self._collected)


def load_manifests(paths: Sequence[str | os.PathLike[str]] = ()) -> ManifestSet:
    """Read and check the manifest set at ``paths`` (directories and files; none means the
    current directory). Raises ``ManifestError`` listing every problem found."""
    return ManifestReading(paths).result()
