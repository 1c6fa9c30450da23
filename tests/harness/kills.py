"""SIGKILL an ``apply`` at a chosen kind of moment, and find out where it really landed.

A kill is aimed with a trigger that watches the run from outside — its lock file, its journal
growing record by record, its state file being replaced — and then fired after a small random
delay. Where it landed is read afterwards from the files the run left (journal records of this
run, a state write in progress or done, the lock it took), so the report shows the moments
actually hit, not the ones aimed at.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from harness.world import RUN_TIMEOUT, Cli

POLL_SECONDS = 0.0005


class Aim(StrEnum):
    PLANNING = "planning"  # the lock is taken, the plan is being made
    RECORDS = "records"  # between journal records, no call open, after the k-th record
    MID_CALL = "mid-call"  # an intent is journaled, its rebuild call is on the wire
    WAITING = "waiting"  # polling jobs (the run uses --wait)
    FINAL_WRITE = "final-write"  # the end record is written: the state write is under way
    STATE_SWAP = "state-swap"  # the new state file is in place, the journal not yet removed
    ANYTIME = "anytime"  # a plain random delay


# Where a kill landed, in the order a run passes through them.
LANDINGS = (
    "startup", "planning", "recording", "mid-call", "between-calls", "waiting",
    "final-write", "state-written", "journal-removed",
)
# The run ended by itself before the kill (exit 0, or an error exit): no kill landed.
NOT_KILLED = frozenset({"completed", "exited"})
# The final state write, seen from its several sides.
FINAL_WRITE_LANDINGS = frozenset({"final-write", "state-written", "journal-removed"})


@dataclass(frozen=True)
class Kill:
    aim: Aim
    landing: str
    after_seconds: float
    records: int  # journal records this run wrote before it died


class RunFiles:
    """Incremental view of the files one run touches: the records it appended to the journal."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.journal = state_path.with_name(state_path.name + ".journal")
        self.lock = state_path.with_name(state_path.name + ".lock")
        self.start_serial = self.serial()
        self._offset = self.journal.stat().st_size if self.journal.exists() else 0
        self._buffer = b""
        self.records: list[str] = []  # record types appended by this run
        self._old_temps = set(self.temp_files())
        self._inode = self._state_inode()

    def _state_inode(self) -> int | None:
        try:
            return self.state_path.stat().st_ino
        except FileNotFoundError:
            return None

    def state_replaced(self) -> bool:
        return self._state_inode() != self._inode

    def serial(self) -> int:
        try:
            return int(json.loads(self.state_path.read_text())["serial"])
        except (FileNotFoundError, ValueError):
            return 0

    def poll(self) -> list[str]:
        try:
            size = self.journal.stat().st_size
        except FileNotFoundError:
            return self.records
        if size > self._offset:
            with self.journal.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read(size - self._offset)
            self._offset = size
            *lines, self._buffer = (self._buffer + chunk).split(b"\n")
            self.records += [json.loads(line)["type"] for line in lines if line.strip()]
        return self.records

    def keep_evidence(self, directory: Path) -> None:
        """Copy the journal a killed run left (the next run removes it) for post-mortems."""
        if self.journal.exists():
            number = len(list(directory.glob("kill-*.journal"))) + 1
            shutil.copyfile(self.journal, directory / f"kill-{number}.journal")

    def journal_exists(self) -> bool:
        return self.journal.exists()

    def locked_by(self, pid: int) -> bool:
        try:
            return bool(json.loads(self.lock.read_text() or "{}").get("pid") == pid)
        except (FileNotFoundError, ValueError):
            return False

    def temp_files(self) -> set[Path]:
        return set(self.state_path.parent.glob(self.state_path.name + ".*.tmp"))

    def new_temp_files(self) -> set[Path]:
        return self.temp_files() - self._old_temps


Trigger = Callable[[RunFiles, subprocess.Popen[str]], bool]


OUTCOMES = frozenset({"submitted", "rejected", "unknown"})


def _nth(kind: str, n: int) -> Trigger:
    return lambda files, _: sum(1 for r in files.poll() if r == kind) >= n


def _quiet_after(k: int) -> Trigger:
    """After at least ``k`` records, at a moment when every call sent has its outcome
    journaled (with four calls at once in flight, such moments are brief)."""

    def fire(files: RunFiles, _: subprocess.Popen[str]) -> bool:
        records = files.poll()
        if len(records) < k or records[-1] not in OUTCOMES:
            return False
        return records.count("intent") == sum(1 for r in records if r in OUTCOMES)

    return fire


def trigger_for(aim: Aim, rng: random.Random) -> tuple[Trigger, float]:
    """When to fire for an aim, and the random delay after that."""
    if aim is Aim.PLANNING:
        return (lambda files, proc: files.locked_by(proc.pid)), rng.uniform(0.0, 0.06)
    if aim is Aim.RECORDS:
        return _quiet_after(rng.randint(1, 12)), 0.0
    if aim is Aim.MID_CALL:
        return _nth("intent", rng.randint(1, 4)), rng.uniform(0.0, 0.004)
    if aim is Aim.WAITING:
        return _nth("job_status", rng.randint(1, 3)), rng.uniform(0.0, 0.05)
    if aim is Aim.FINAL_WRITE:
        return _nth("end", 1), rng.uniform(0.0, 0.006)
    if aim is Aim.STATE_SWAP:
        return (lambda files, _: files.state_replaced()), 0.0
    return (lambda files, proc: True), rng.uniform(0.05, 2.0)


def kill_run(cli: Cli, aim: Aim, rng: random.Random, *, wait: bool, limit: float = RUN_TIMEOUT) -> Kill:
    """Start an apply, SIGKILL it at the aimed moment, and classify where it died."""
    trigger, delay = trigger_for(aim, rng)
    files = cli.watch()
    started = time.monotonic()
    proc = cli.spawn(cli.apply_args(wait))
    try:
        while proc.poll() is None and not trigger(files, proc):
            if time.monotonic() - started > limit:
                raise AssertionError(f"apply hung: it neither reached {aim} nor exited within {limit:.0f}s")
            time.sleep(POLL_SECONDS)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        files.poll()
        files.keep_evidence(cli.manifests.parent)
        cli.view.release_dead_lock(proc.pid)
        after = time.monotonic() - started
        return Kill(aim, landing(files, proc), round(after, 3), len(files.records))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def landing(files: RunFiles, proc: subprocess.Popen[str]) -> str:
    """Where the run was when it died, from what it left behind."""
    if proc.returncode != -signal.SIGKILL:
        return "completed" if proc.returncode == 0 else "exited"
    if files.new_temp_files():
        return "final-write"  # died between creating the temp state and renaming it
    if files.serial() > files.start_serial:
        return "state-written" if files.journal_exists() else "journal-removed"
    records = files.records
    if not records:
        return "planning" if files.locked_by(proc.pid) else "startup"
    last = records[-1]
    if last == "end":
        return "final-write"
    if records.count("intent") > sum(1 for r in records if r in OUTCOMES):
        return "mid-call"  # at least one rebuild call was sent and its answer not journaled
    if last in OUTCOMES:
        return "between-calls"
    if last == "job_status" and "intent" in records:
        return "waiting"
    return "recording"
