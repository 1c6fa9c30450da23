"""The local state backend: the shared conformance suite plus what only files can show."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

from reconciler.state import LocalStateStore, StateError, StateLocked, state_to_json
from reconciler.state.conformance import StateStoreConformance, sample_state

SCHEMA = json.loads((Path(__file__).parents[1] / "schemas" / "state.schema.json").read_text())


class TestLocalStateStore(StateStoreConformance):
    @pytest.fixture
    def store_factory(self, tmp_path: Path):
        return lambda: LocalStateStore(tmp_path / ".reconciler" / "state.json")

    @pytest.fixture
    def store_source(self, tmp_path: Path) -> str:
        path = str(tmp_path / ".reconciler" / "state.json")
        return f"from reconciler.state import LocalStateStore\nstore = LocalStateStore({path!r})"


def test_state_file_is_private_and_schema_valid(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "s" / "state.json")
    store.write(sample_state())
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    jsonschema.validate(json.loads(store.path.read_text()), SCHEMA)
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["state.json"]  # no temp files left


def test_sample_state_matches_schema() -> None:
    jsonschema.validate(state_to_json(sample_state()), SCHEMA)


def test_corrupt_state_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(StateError, match="state.json is not valid JSON"):
        LocalStateStore(path).read()
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(StateError, match="not a reconciler state file"):
        LocalStateStore(path).read()
    path.write_text(json.dumps({"format_version": 1, "lineage": "x", "serial": 1, "desktops": {"d": {}}}))
    with pytest.raises(StateError, match="corrupt"):
        LocalStateStore(path).read()


def test_torn_last_journal_record_is_ignored(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "state.json")
    store.append({"type": "begin"})
    with open(store.journal_path, "ab") as handle:
        handle.write(b'{"type": "inte')
    assert LocalStateStore(tmp_path / "state.json").replay() == [{"type": "begin"}]


def test_garbage_in_the_middle_of_the_journal_is_an_error(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "state.json")
    store.journal_path.write_bytes(b'{"type": "begin"}\nGARBAGE\n{"type": "end"}\n')
    with pytest.raises(StateError, match=r"journal:2"):
        store.replay()


def _hold_lock_in_child(path: Path) -> subprocess.Popen:
    code = textwrap.dedent(
        f"""
        import sys, time
        from reconciler.state import LocalStateStore
        LocalStateStore({str(path)!r}).lock("apply")
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def test_lock_of_a_killed_run_is_released(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    child = _hold_lock_in_child(path)
    try:
        with pytest.raises(StateLocked) as caught:
            LocalStateStore(path).lock("apply")
        assert caught.value.info is not None and caught.value.info.pid == child.pid
    finally:
        child.kill()
        child.wait()
    store = LocalStateStore(path)
    assert store.lock_info() is None  # the leftover file names a dead holder
    store.unlock(store.lock("apply").id)


def test_force_unlock_of_a_live_holder(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    child = _hold_lock_in_child(path)
    try:
        info = LocalStateStore(path).lock_info()
        assert info is not None
        LocalStateStore(path).force_unlock(info.id)
        store = LocalStateStore(path)
        store.unlock(store.lock("apply").id)
    finally:
        child.kill()
        child.wait()


def test_state_file_has_one_line_per_desktop_and_job(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "state.json")
    store.write(sample_state())
    lines = store.path.read_text().splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert sum(1 for line in lines if line.startswith('  "d-')) == 2
    assert sum(1 for line in lines if line.startswith('  "job-1"')) == 1
    empty = LocalStateStore(tmp_path / "empty.json")
    from reconciler.state import State

    empty.write(State("l", 1))
    assert json.loads(empty.path.read_text()) == {"format_version": 1, "lineage": "l", "serial": 1, "desktops": {}, "jobs": {}}
