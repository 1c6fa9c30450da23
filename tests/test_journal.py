"""The local journal under failing disks: an append that fails part-way (a full disk, an I/O
error, a short write) leaves the journal exactly as it was, a garbled complete line is reported
with its file and line (and the way to recover), never dropped, and journals written before
checksums existed still read."""

from __future__ import annotations

import errno
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.session import state_transaction
from reconciler.state import LocalStateStore, RecordKind, State, StateError
from reconciler.state.builder import StateBuilder
from reconciler.state.journal import BadLine, JournalFile, decode_line, encode_record, read_lines
from reconciler.state.recorder import Recorder
from reconciler.state.records import JobStatus, parse_record
from reconciler.state.store import JournalWriteError

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
RECORDS = st.dictionaries(st.text(max_size=6), JSON_VALUES, min_size=0, max_size=4).map(lambda r: {"type": "end", **r})


class FullDisk(JournalFile):
    """A journal file on a disk with ``room`` bytes left: a write past it is cut short and the
    next one fails with ENOSPC. ``undo_fails`` makes cutting the file back fail too (EIO)."""

    def __init__(self, fd: int, room: int, undo_fails: bool = False) -> None:
        super().__init__(fd)
        self.room = room
        self.undo_fails = undo_fails

    def write(self, data: bytes) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = super().write(data[: self.room])
        self.room -= written
        return written

    def truncate(self, size: int) -> None:
        if self.undo_fails:
            raise OSError(errno.EIO, "Input/output error")
        self.room += self.size() - size
        super().truncate(size)


def full_disk(room: int, undo_fails: bool = False) -> Any:
    return lambda path: FullDisk(JournalFile.open(path).fd, room, undo_fails)


@given(record=RECORDS)
def test_a_record_survives_its_line(record: dict[str, Any]) -> None:
    line = encode_record(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_line(line[:-1]) == (record, True)


@given(record=RECORDS, data=st.data())
def test_any_changed_byte_of_a_line_is_caught(record: dict[str, Any], data: st.DataObject) -> None:
    line = bytearray(encode_record(record)[:-1])
    index = data.draw(st.integers(0, len(line) - 1))
    line[index] = data.draw(st.integers(0, 255).filter(lambda b: b != line[index] and b != ord("\n")))
    try:
        decoded, checksummed = decode_line(bytes(line))
    except BadLine:
        return
    # Only damage to the checksum field's name can turn a line into an old, unchecked one.
    assert not checksummed and b"crc32" not in line


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(RECORDS, min_size=1, max_size=6), room=st.integers(0, 400), undo_fails=st.booleans())
def test_an_append_cut_short_leaves_the_journal_as_it_was(
    tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]], room: int, undo_fails: bool
) -> None:
    path = tmp_path_factory.mktemp("full") / "state.json"
    store = LocalStateStore(path, open_journal=full_disk(room, undo_fails))
    appended: list[dict[str, Any]] = []
    failure: JournalWriteError | None = None
    for record in records:
        try:
            store.append(record)
        except JournalWriteError as exc:
            failure = exc
            break
        appended.append(record)
    store.close()
    content = store.journal_path.read_bytes() if store.journal_path.exists() else b""
    if failure is None or failure.intact:
        assert content == b"".join(encode_record(r) for r in appended)  # exactly as before the failed append
    else:
        assert "could not be cut back" in str(failure)
        with pytest.raises(JournalWriteError, match="could not be undone"):
            store.append({"type": "end"})  # a broken journal takes no more records from this run
    # Whatever happened, the next run reads every record that was appended, and can go on.
    next_run = LocalStateStore(path)
    assert next_run.replay() == appended
    next_run.append({"type": "end", "after": True})
    assert LocalStateStore(path).replay() == [*appended, {"type": "end", "after": True}]


def test_a_failed_append_names_the_file_and_says_nothing_was_submitted(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "state.json", open_journal=full_disk(10))
    with pytest.raises(JournalWriteError) as caught:
        store.append({"type": "begin", "at": "2026-11-27T10:00:00+00:00"})
    message = str(caught.value)
    assert str(store.journal_path) in message and "No space left on device" in message
    assert "Nothing was submitted" in message and caught.value.intact


def test_appends_from_many_threads_never_glue_onto_a_failed_one(tmp_path: Path) -> None:
    """Found probing apply: with the disk full, one worker's record was cut short and another's
    was appended right after it; the journal became unreadable mid-file."""
    store = LocalStateStore(tmp_path / "state.json", open_journal=full_disk(2000))
    done: list[dict[str, Any]] = []
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(40):
            record = {"type": "end", "worker": n, "i": i, "pad": "x" * 20}
            try:
                store.append(record)
            except JournalWriteError:
                continue
            done.append(record)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    replayed = LocalStateStore(tmp_path / "state.json").replay()
    key = lambda r: (r["worker"], r["i"])  # noqa: E731
    assert sorted(replayed, key=key) == sorted(done, key=key) and 0 < len(done) < 160


def test_a_garbled_complete_line_is_reported_with_its_line_and_the_way_out(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "state.json")
    for n in range(3):
        store.append({"type": "end", "n": n})
    lines = store.journal_path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"n":1', b'"n":7')  # still JSON, but not what was written
    store.journal_path.write_bytes(b"\n".join(lines))
    with pytest.raises(StateError) as caught:
        LocalStateStore(tmp_path / "state.json").replay()
    message = str(caught.value)
    assert f"{store.journal_path}:2: unreadable journal record" in message
    assert "checksum does not match" in message and "Keep the file" in message
    assert "reconciler state repair-journal" in message and "delete" not in message


def test_journals_written_before_checksums_still_read(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "state.json")
    store.journal_path.write_bytes(b'{"type": "begin", "lineage": "l"}\n{"at":"x","type":"end"}\n')
    assert store.replay() == [{"type": "begin", "lineage": "l"}, {"at": "x", "type": "end"}]
    store.append({"type": "end", "n": 1})  # a new run appends checksummed lines after old ones
    assert LocalStateStore(tmp_path / "state.json").replay()[-1] == {"type": "end", "n": 1}


def test_an_unchecked_line_after_checksummed_ones_is_reported() -> None:
    raw = encode_record({"type": "begin"}) + b'{"type": "end"}\n'
    assert read_lines(raw).bad == [(2, "it has no checksum, unlike the lines before it")]


def test_only_an_unterminated_last_line_counts_as_torn() -> None:
    read = read_lines(encode_record({"type": "begin"}) + b'{"type": "en')
    assert read.torn_tail and not read.bad and read.records == [{"type": "begin"}]
    assert read_lines(encode_record({"type": "begin"}) + b"GARBAGE\n").bad == [(2, "it is not JSON")]


def test_every_record_kind_has_a_handler() -> None:
    builder = StateBuilder(State())
    assert set(builder._handlers) == set(RecordKind)


def test_a_record_of_no_known_kind_or_missing_fields_is_malformed() -> None:
    with pytest.raises(StateError, match="unknown type 'intnet'"):
        StateBuilder(State()).apply({"type": "intnet", "at": "x"})
    with pytest.raises(StateError, match=r"malformed 'forget' record \(without desktop_ids\)"):
        StateBuilder(State()).apply({"type": "forget", "at": "x"})
    assert parse_record({"type": "begin", "at": "x"}) == {"type": "begin", "at": "x"}  # old begin records


def test_statuses_read_and_compare_as_their_text() -> None:
    assert JobStatus("UNKNOWN") == "UNKNOWN" and JobStatus.RUNNING.in_progress and JobStatus.FAILED.finished


def test_state_rm_and_jobs_journal_their_own_operation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Found reviewing: the begin record said 'apply' whatever the command was."""
    store = LocalStateStore(tmp_path / "state.json")
    with caplog.at_level(logging.DEBUG, logger="reconciler.state"):
        with state_transaction(store, operation="state rm") as transaction:
            assert store.lock_info() is not None and store.lock_info().operation == "state rm"  # type: ignore[union-attr]
            transaction.record([{"type": "forget", "at": "2026-11-27T10:00:00+00:00", "desktop_ids": ["d-1"]}])
            (begin, _forget) = LocalStateStore(tmp_path / "state.json").replay()
            assert begin["type"] == "begin" and begin["operation"] == "state rm"
    messages = [r.getMessage() for r in caplog.records if r.name == "reconciler.state"]
    assert any(m.startswith("took the lock") and "for state rm" in m for m in messages)
    assert any(m.startswith("wrote the state") for m in messages) and any(m.startswith("released the lock") for m in messages)


def test_a_job_whose_submitted_record_failed_is_named_in_the_message(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "state.json", open_journal=full_disk(500))  # room for the intent only
    recorder = Recorder(store, State(), lambda: datetime(2026, 11, 27, 10, tzinfo=UTC))
    sent = {"batch_id": "b-1", "group": "fin", "desktop_ids": [f"d-{i}" for i in range(20)]}
    recorder.record({"type": "intent", "at": recorder.at(), "image_id": "img-new", **sent})  # type: ignore[typeddict-item]
    with pytest.raises(JournalWriteError) as caught:
        recorder.record({"type": "submitted", "at": recorder.at(), "job_id": "job-77", "image_id": "img-new", **sent})  # type: ignore[typeddict-item]
    assert "Job job-77 was accepted but could not be journaled" in str(caught.value)
    assert recorder.state().desktops["d-0"].job.status == JobStatus.UNKNOWN  # type: ignore[union-attr]  # resolved live next run
