"""A broken state, a damaged journal or a file system that refuses writes, through the CLI: one
``Error:`` line that names the file (and the field, and what was submitted), exit 1, nothing
rewritten; and a damaged journal is repaired without losing a record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.state import LocalStateStore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


@pytest.fixture
def applied(tmp_path: Path) -> Path:
    """The quickstart after one apply: a state with desktops, jobs and timestamps."""
    target = tmp_path / "qs"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".reconciler"))
    result = cli("apply", str(target), "--auto-approve", "--no-wait")
    assert result.exit_code == 0, result.stderr
    return target


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def state_path(root: Path) -> Path:
    return root / ".reconciler" / "state.json"


def first(mapping: dict[str, dict[str, object]], having: str) -> str:
    return next(k for k, v in mapping.items() if having in v)


BREAKAGES = {
    "group: 7": (lambda s: s["desktops"][first(s["desktops"], "job")].update(group=7), ".group: 7 is not of type 'string'"),
    "status BOGUS": (
        lambda s: s["desktops"][first(s["desktops"], "job")]["job"].update(status="BOGUS"),
        ".job.status: 'BOGUS' is not one of",
    ),
    "desktop_ids abc": (lambda s: s["jobs"][next(iter(s["jobs"]))].update(desktop_ids="abc"), ".desktop_ids: 'abc' is not of type 'array'"),
    "naive submitted_at": (
        lambda s: s["jobs"][next(iter(s["jobs"]))].update(submitted_at="2027-01-15T08:00:00"),
        ".submitted_at: '2027-01-15T08:00:00' is not a date and time with a time zone",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
@pytest.mark.parametrize("command", [("plan", "{root}", "--no-refresh"), ("state", "list", "-m", "{root}"), ("apply", "{root}", "--auto-approve")])
def test_a_state_that_breaks_its_schema_is_refused_with_the_field_and_the_file(
    applied: Path, breakage: str, command: tuple[str, ...]
) -> None:
    change, expected = BREAKAGES[breakage]
    document = json.loads(state_path(applied).read_text())
    change(document)
    state_path(applied).write_text(json.dumps(document))
    before = state_path(applied).read_bytes()
    result = cli(*(part.format(root=applied) for part in command))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {state_path(applied)}: field ") and expected in result.stderr
    assert "internal error" not in result.stderr and result.stderr.count("\n") == 1
    assert state_path(applied).read_bytes() == before  # never rewritten


def test_a_damaged_journal_is_repaired_without_losing_its_readable_records(applied: Path) -> None:
    """A complete line garbled in the middle: every command refuses the journal with its line
    and the way out; repair-journal folds the rest and keeps the bad line and the original."""
    store = LocalStateStore(state_path(applied))
    serial = store.read().serial
    desktop = next(iter(store.read().desktops))
    store.append({"type": "begin", "at": "2027-01-15T09:00:00+00:00", "lineage": store.read().lineage, "base_serial": serial, "operation": "apply"})
    store.append({"type": "forget", "at": "2027-01-15T09:00:01+00:00", "desktop_ids": ["not-a-desktop"]})
    store.append({"type": "forget", "at": "2027-01-15T09:00:02+00:00", "desktop_ids": [desktop]})
    store.close()
    lines = store.journal_path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"not-a-desktop", b"not-a-deskt0p")
    store.journal_path.write_bytes(b"\n".join(lines))
    original = store.journal_path.read_bytes()

    refused = cli("plan", str(applied), "--no-refresh")
    assert refused.exit_code == 1 and f"{store.journal_path}:2: unreadable journal record" in refused.stderr
    assert "Keep the file" in refused.stderr and "state repair-journal" in refused.stderr

    repaired = cli("state", "repair-journal", "-m", str(applied))
    assert repaired.exit_code == 0, repaired.stderr
    assert "Folded 2 journal records into the state" in repaired.stdout and "line 2" in repaired.stdout
    after = LocalStateStore(state_path(applied))
    assert desktop not in after.read().desktops and after.read().serial == serial + 1  # the good records folded
    assert not after.journal_path.exists()
    assert [p.read_bytes() for p in after.journal_path.parent.glob("state.json.journal.*.orig")] == [original]
    (rejected,) = after.journal_path.parent.glob("state.json.journal.*.rejected")
    assert rejected.read_bytes() == b"2: " + lines[1] + b"\n"
    assert cli("plan", str(applied), "--no-refresh").exit_code == 0


def test_a_directory_in_place_of_the_journal_is_a_clear_error(applied: Path) -> None:
    journal = state_path(applied).with_name("state.json.journal")
    journal.mkdir()
    result = cli("apply", str(applied), "--auto-approve")
    assert result.exit_code == 1 and "internal error" not in result.stderr
    assert result.stderr.startswith(f"Error: cannot read the journal {journal}: Is a directory")


def test_a_directory_in_place_of_the_journal_stops_apply_at_its_first_record(applied: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past reading (made to see no journal), the first append fails: nothing is sent."""
    store = LocalStateStore(state_path(applied))
    before = store.read()
    monkeypatch.setattr(LocalStateStore, "replay", lambda self: [])
    store.journal_path.mkdir()
    result = cli("apply", str(applied), "--auto-approve")
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith(f"Error: cannot append to the journal {store.journal_path}: Is a directory.")
    assert "Nothing was submitted in this run." in result.stderr and result.stderr.count("\n") == 1
    assert store.read() == before


def test_control_characters_in_a_path_cannot_split_the_error_line(tmp_path: Path) -> None:
    hostile = tmp_path / "evil\nError: fake\x1b[2J"
    hostile.mkdir()
    (hostile / "x.yaml").write_text("apiVersion: [\n")
    result = cli("validate", str(hostile))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "\x1b" not in result.stderr
    assert "evil\\nError: fake\\x1b[2J" in result.stderr
