"""Measuring commands on a shared machine: wall time, CPU time (user + system, the process and
every child it waited for) and peak memory of one run, runs interleaved, optionally pinned to one
core, optionally with a process spinning beside them.

CPU time is the figure to trust on a busy machine: wall time also counts the time the process
waited for a core.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # seconds, user + system
    peak_mb: float  # the largest resident set of the process or any of its children
    returncode: int
    stdout: bytes
    stderr: bytes


# Runs the command and writes its resource usage to argv[1]. A small process of its own: a child's
# peak memory starts from what its parent held when it was forked, so the (large) benchmark
# process must not be that parent.
USAGE_WRAPPER = """
import json, os, subprocess, sys
code = subprocess.call(sys.argv[2:])
import resource
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(json.dumps([u.ru_utime + u.ru_stime, u.ru_maxrss, code]))
"""


def run(command: Sequence[str]) -> Run:
    """One run: wall time here, CPU time and peak memory of the command and its children."""
    with tempfile.TemporaryDirectory() as tmp:
        usage_file = os.path.join(tmp, "usage.json")
        with open(os.path.join(tmp, "out"), "w+b") as out, open(os.path.join(tmp, "err"), "w+b") as err:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", USAGE_WRAPPER, usage_file, *command], stdout=out, stderr=err, check=False)
            wall = time.perf_counter() - started
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        with open(usage_file) as usage:
            cpu, maxrss, code = json.load(usage)
    return Run(wall, cpu, maxrss / 1024, code, stdout, stderr)


def pinned(command: Sequence[str], core: int = 0) -> list[str]:
    """``command`` run on one core (``taskset -c``), when taskset exists."""
    return ["taskset", "-c", str(core), *command] if shutil.which("taskset") else list(command)


@dataclass(frozen=True)
class Series:
    runs: tuple[Run, ...]

    def stat(self, field: str) -> tuple[float, float]:
        values = [getattr(r, field) for r in self.runs]
        return min(values), statistics.median(values)


def interleaved(commands: dict[str, Sequence[str]], repeat: int) -> dict[str, Series]:
    """Each command ``repeat`` times, taking turns (A B A B ...), so a change in the machine's
    load falls on all of them alike."""
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            result = run(command)
            if result.returncode != 0:
                raise SystemExit(f"{name} failed:\n{result.stderr.decode()[-2000:]}")
            runs[name].append(result)
    return {name: Series(tuple(values)) for name, values in runs.items()}


@contextmanager
def spinning(enabled: bool) -> Iterator[None]:
    """A process keeping one core busy (the last one), as another developer's build would."""
    if not enabled:
        yield
        return
    spin = [sys.executable, "-c", "while True: pass"]
    process = subprocess.Popen(pinned(spin, (os.cpu_count() or 1) - 1))
    try:
        yield
    finally:
        process.kill()
        process.wait()


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({model}), Python {sys.version.split()[0]}, load average {load}"


def table(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
