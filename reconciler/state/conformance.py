"""The conformance suite every ``StateStore`` backend must pass (needs pytest).

Use it from a test module::

    class TestMyBackend(StateStoreConformance):
        @pytest.fixture
        def store_factory(self, tmp_path):
            return lambda: MyBackend(...)   # each call: a new handle on the *same* storage

        @pytest.fixture
        def store_source(self, tmp_path):
            return "from x import MyBackend\nstore = MyBackend(...)"   # the same, in a child process

Each handle stands for a separate run sharing the backend; ``store_source`` builds one in another
process, which the suite kills with SIGKILL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from types import MappingProxyType

import pytest

from reconciler.state.records import JobStatus
from reconciler.state.state import DesktopRecord, JobRecord, JobRef, State
from reconciler.state.store import LockMismatch, StateConflict, StateLocked, StateStore

Factory = Callable[[], StateStore]


def sample_state() -> State:
    job = JobRef("job-1", JobStatus.RUNNING, "img-new", "2026-11-27T10:00:00+00:00", batch_id="b-1")
    desktops = {
        "d-1": DesktopRecord("finance", "img-old", "fin-001", job, "2026-11-27T10:00:00+00:00"),
        "d-2": DesktopRecord("finance", "img-new", None, None, "2026-11-27T09:00:00+00:00"),
    }
    jobs = {"job-1": JobRecord("job-1", "finance", "img-new", ("d-1",), "2026-11-27T10:00:00+00:00", JobStatus.RUNNING)}
    return State("3b0f5a8e-0000-4000-8000-000000000001", 4, MappingProxyType(desktops), MappingProxyType(jobs))


class Child:
    """A store handle in another process, driven by the code it was started with; each line it
    prints is one step done."""

    def __init__(self, store_source: str, body: str) -> None:
        code = store_source + "\n" + textwrap.dedent(body)
        self.process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)

    def next_line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the child process exited early (code {self.process.wait()})"
        return line.strip()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class StateStoreConformance:
    """Behaviour a backend owes its callers. Subclasses provide the ``store_factory`` and
    ``store_source`` fixtures."""

    # A holder killed with SIGKILL: True where its lock stays until ``force-unlock`` (s3, whose
    # lock is an object nobody is left to delete); False where it goes with the process.
    killed_holder_keeps_lock = False

    def test_empty_store_reads_as_new_state(self, store_factory: Factory) -> None:
        state = store_factory().read()
        assert (state.lineage, state.serial, dict(state.desktops), dict(state.jobs)) == (None, 0, {}, {})

    def test_write_then_read_round_trips(self, store_factory: Factory) -> None:
        store_factory().write(sample_state())
        assert store_factory().read() == sample_state()

    def test_write_replaces_previous_state(self, store_factory: Factory) -> None:
        store = store_factory()
        store.write(sample_state())
        newer = State(sample_state().lineage, 5)
        store.write(newer)
        assert store_factory().read() == newer

    def test_lock_is_exclusive_and_names_its_holder(self, store_factory: Factory) -> None:
        first, second = store_factory(), store_factory()
        info = first.lock("apply")
        try:
            with pytest.raises(StateLocked) as caught:
                second.lock("apply")
            assert caught.value.info is not None and caught.value.info.id == info.id
            assert caught.value.info.operation == "apply" and caught.value.info.who
            assert second.lock_info() == info
        finally:
            first.unlock(info.id)
        assert second.lock_info() is None
        second.unlock(second.lock("plan").id)

    def test_unlock_with_another_id_is_refused(self, store_factory: Factory) -> None:
        store = store_factory()
        info = store.lock("apply")
        with pytest.raises(LockMismatch):
            store.unlock("not-" + info.id)
        store.unlock(info.id)

    def test_force_unlock_needs_the_right_id_and_frees_the_lock(self, store_factory: Factory) -> None:
        holder, rescuer = store_factory(), store_factory()
        info = holder.lock("apply")
        with pytest.raises(LockMismatch):
            rescuer.force_unlock("wrong-id")
        rescuer.force_unlock(info.id)
        taken = rescuer.lock("apply")
        assert taken.id != info.id
        rescuer.unlock(taken.id)

    def test_unlock_after_a_force_unlock_is_quiet(self, store_factory: Factory) -> None:
        """The broken lock's holder unlocks on its way out (often after an error): that must
        neither fail nor release the lock a new holder took meanwhile."""
        holder, rescuer = store_factory(), store_factory()
        info = holder.lock("apply")
        rescuer.force_unlock(info.id)
        taken = rescuer.lock("apply")
        holder.unlock(info.id)
        assert store_factory().lock_info() == taken
        rescuer.unlock(taken.id)
        holder.unlock(holder.lock("apply").id)

    def test_lock_waits_up_to_the_timeout(self, store_factory: Factory) -> None:
        holder, waiter = store_factory(), store_factory()
        info = holder.lock("apply")
        releasing = threading.Event()

        def release() -> None:
            releasing.set()  # before the unlock: the waiter cannot get the lock earlier than this
            holder.unlock(info.id)

        releaser = threading.Timer(0.3, release)
        releaser.start()
        taken = waiter.lock("apply", timeout=60)  # generous: a slow runner must not fail it
        assert releasing.is_set()  # it waited for the holder rather than taking the lock beside it
        waiter.unlock(taken.id)
        releaser.join()

    def test_journal_replays_records_in_order_across_handles(self, store_factory: Factory) -> None:
        writer = store_factory()
        assert writer.replay() == [] and writer.journal_digest() is None
        records = [{"type": "begin", "n": 1}, {"type": "intent", "n": 2}, {"type": "end", "n": 3}]
        for record in records:
            writer.append(record)
        assert store_factory().replay() == records

    def test_journal_digest_follows_content(self, store_factory: Factory) -> None:
        store = store_factory()
        store.append({"type": "begin"})
        first = store.journal_digest()
        store.append({"type": "end"})
        assert first is not None and store.journal_digest() not in (None, first)

    def test_discard_empties_the_journal(self, store_factory: Factory) -> None:
        store = store_factory()
        store.append({"type": "begin"})
        store.discard()
        assert store_factory().replay() == [] and store_factory().journal_digest() is None
        store.append({"type": "again"})
        assert store_factory().replay() == [{"type": "again"}]

    def test_write_that_lost_a_race_changes_nothing(self, store_factory: Factory) -> None:
        store_factory().write(sample_state())
        slow, fast = store_factory(), store_factory()
        slow.read()
        fast.read()
        winner = State(sample_state().lineage, 5)
        fast.write(winner)
        with pytest.raises(StateConflict):
            slow.write(State(sample_state().lineage, 6))
        assert store_factory().read() == winner
        fast.write(State(sample_state().lineage, 6))  # the winner goes on from what it wrote
        assert store_factory().read().serial == 6

    def test_first_writes_race_too(self, store_factory: Factory) -> None:
        slow, fast = store_factory(), store_factory()
        assert slow.read() == fast.read() == State()
        fast.write(sample_state())
        with pytest.raises(StateConflict):
            slow.write(State("another-lineage", 1))
        assert store_factory().read() == sample_state()

    def test_lock_held_by_another_process(self, store_factory: Factory, store_source: str) -> None:
        child = Child(store_source, """
            import json, time
            print(json.dumps(store.lock("apply").to_json()), flush=True)
            time.sleep(120)
        """)
        try:
            held = json.loads(child.next_line())
            with pytest.raises(StateLocked) as caught:
                store_factory().lock("plan")
            assert caught.value.info is not None and caught.value.info.pid == child.process.pid
            assert caught.value.info.id == held["id"] and caught.value.info.operation == "apply"
        finally:
            child.kill()
        store = store_factory()
        if self.killed_holder_keeps_lock:
            info = store.lock_info()
            assert info is not None and info.id == held["id"]
            with pytest.raises(StateLocked):
                store.lock("apply")
            store.force_unlock(held["id"])
        else:
            assert store.lock_info() is None
        store.unlock(store.lock("apply").id)

    def test_journal_torn_by_a_kill(self, store_factory: Factory, store_source: str) -> None:
        """A run killed while appending leaves whole records in order, and the next run appends
        after them."""
        child = Child(store_source, """
            n = 0
            while True:
                store.append({"type": "intent", "n": n, "pad": "x" * (n % 7) * 30000})
                print(n, flush=True)
                n += 1
        """)
        try:
            while int(child.next_line()) < 5:
                pass
        finally:
            child.kill()
        records = store_factory().replay()
        assert [r["n"] for r in records] == list(range(len(records))) and len(records) >= 6
        assert all(len(r["pad"]) == (r["n"] % 7) * 30000 for r in records)
        store_factory().append({"type": "end"})
        assert store_factory().replay() == [*records, {"type": "end"}]
