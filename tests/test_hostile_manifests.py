"""Manifests from a pull request, written by an attacker, through `validate` and `plan`: they
cannot make reconciler read files outside the manifest directory (nothing of them reaches the
output), nor write anything anywhere (the whole tree, targets included, is the same after)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.state import LocalStateStore
from reconciler.state.conformance import sample_state

SECRET = "hunter2-9f8e7d6c5b4a"  # planted in every file outside the manifests
SETTINGS = """\
apiVersion: reconciler/v1
kind: Settings
spec:
  project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9
  simulator: {{fleet: {fleet}}}
  state: {state}
"""
GROUP = """\
apiVersion: reconciler/v1
kind: DesktopGroup
metadata: {name: finance}
spec:
  desktops: {ids: [d-1]}
  image: {id: img-2, type: gold}
"""
FLEET = """\
project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9
images: [{id: img-1, type: gold}, {id: img-2, type: gold}]
desktops: [{name: fin-1, id: d-1, image_id: img-1}]
"""
SECRETS = {
    "shadow": f"root:$6${SECRET}$abc:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
    "app.env": f"DATABASE_URL=postgres://app@db/app\nPASSWORD={SECRET}\n",
    "id_ed25519": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}AAAAC3NzaC1lZDI1NTE5\n-----END OPENSSH PRIVATE KEY-----\n",
    "secrets.yaml": f"password: {SECRET}\ntoken: [{SECRET}]\n",
    "tool.yaml": f"apiVersion: reconciler/v1\nkind: Settings\nspec: {{project_id: {SECRET}}}\n",
}


@dataclass
class Runner:
    """A CI runner's disk: the pull request's checkout and, outside it, files worth stealing
    and another team's real state (with a journal)."""

    base: Path

    @property
    def manifests(self) -> Path:
        return self.base / "checkout" / "manifests"

    @property
    def outside(self) -> Path:
        return self.base / "outside"

    def settings(self, fleet: str = "fleet.yaml", state: str = "{path: .reconciler/state.json}") -> None:
        (self.manifests / "settings.yaml").write_text(SETTINGS.format(fleet=fleet, state=state))


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    disk = Runner(tmp_path)
    disk.manifests.mkdir(parents=True)
    disk.outside.mkdir()
    for name, text in SECRETS.items():
        (disk.outside / name).write_text(text)
    production = LocalStateStore(disk.outside / "prod" / "state.json")
    production.write(sample_state())
    # The journal as bytes: what matters is that it is a file another path could run into.
    (disk.outside / "prod" / "state.json.journal").write_text(f'{{"kind": "note", "text": "{SECRET}"}}\n')
    disk.settings()
    (disk.manifests / "group.yaml").write_text(GROUP)
    (disk.manifests / "fleet.yaml").write_text(FLEET)
    return disk


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``: type, mode, size, mtime and content digest (links not followed)."""
    seen: dict[str, tuple[object, ...]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
            link = os.readlink(path) if path.is_symlink() else ""
            seen[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns, digest, link)
    info = root.stat()
    seen[str(root)] = (info.st_mode, info.st_mtime_ns)
    return seen


def run(args: list[str], fifo: bool = False) -> tuple[int, str]:
    """The CLI's exit code and output; in a subprocess when a FIFO is about, so a read that
    would block forever fails the test instead of hanging it."""
    if not fifo:
        result = CliRunner().invoke(main, args, env={"RECONCILER_DEBUG": "0", "NO_COLOR": "1"})
        return result.exit_code, result.stdout + result.stderr
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "RECONCILER_DEBUG": "0", "NO_COLOR": "1"},
    )
    return done.returncode, done.stdout + done.stderr


Attack = Callable[[Runner], None]


def fleet_absolute(disk: Runner) -> None:
    disk.settings(fleet=str(disk.outside / "shadow"))


def fleet_dot_dot(disk: Runner) -> None:
    disk.settings(fleet="../../outside/app.env")


def fleet_dot_dot_inside(disk: Runner) -> None:
    disk.settings(fleet="sub/../../../outside/id_ed25519")


def fleet_symlinked_file(disk: Runner) -> None:
    (disk.manifests / "fleet.yaml").unlink()
    (disk.manifests / "fleet.yaml").symlink_to(disk.outside / "id_ed25519")


def fleet_through_symlinked_directory(disk: Runner) -> None:
    (disk.manifests / "data").symlink_to(disk.outside)
    disk.settings(fleet="data/shadow")


def manifest_symlinked_file(disk: Runner) -> None:
    (disk.manifests / "more.yaml").symlink_to(disk.outside / "tool.yaml")


def manifest_symlinked_directory(disk: Runner) -> None:
    (disk.manifests / "teams").symlink_to(disk.outside)


def manifest_relative_symlink(disk: Runner) -> None:
    (disk.manifests / "more.yaml").symlink_to("../../outside/secrets.yaml")


def fleet_is_a_fifo(disk: Runner) -> None:
    os.mkfifo(disk.manifests / "fleet.pipe")
    disk.settings(fleet="fleet.pipe")


def fleet_is_a_secrets_file(disk: Runner) -> None:
    (disk.manifests / "app.env").write_text(SECRETS["app.env"])  # the workflow wrote it here
    disk.settings(fleet="app.env")


def fleet_is_a_yaml_secrets_file(disk: Runner) -> None:
    (disk.manifests / "creds.yml.txt").write_text(SECRETS["secrets.yaml"])
    disk.settings(fleet="creds.yml.txt")


def fleet_is_a_key(disk: Runner) -> None:
    (disk.manifests / "deploy_key").write_text(SECRETS["id_ed25519"])
    disk.settings(fleet="deploy_key")


def state_absolute(disk: Runner) -> None:
    disk.settings(state=f"{{path: {disk.outside / 'prod' / 'state.json'}}}")


def state_into_another_journal(disk: Runner) -> None:
    disk.settings(state=f"{{path: {disk.outside / 'prod' / 'state.json.journal' / 'state.json'}}}")


def state_into_another_journal_opted_in(disk: Runner) -> None:
    where = disk.outside / "prod" / "state.json.journal" / "state.json"
    disk.settings(state=f"{{path: {where}, path_outside_manifests: true}}")


def state_into_its_own_journal(disk: Runner) -> None:
    ours = LocalStateStore(disk.manifests / ".reconciler" / "state.json")
    ours.write(sample_state())
    (disk.manifests / ".reconciler" / "state.json.journal").write_text("{}\n")
    disk.settings(state="{path: .reconciler/state.json.journal/state.json}")


def state_dot_dot(disk: Runner) -> None:
    disk.settings(state="{path: ../../outside/prod/state.json.journal/state.json}")


def state_through_symlinked_directory(disk: Runner) -> None:
    (disk.manifests / ".reconciler").symlink_to(disk.outside / "prod")


def state_is_a_secret(disk: Runner) -> None:
    (disk.manifests / "st").symlink_to(disk.outside)
    disk.settings(state="{path: st/app.env}")


ATTACKS: list[Attack] = [
    fleet_absolute, fleet_dot_dot, fleet_dot_dot_inside, fleet_symlinked_file, fleet_through_symlinked_directory,
    manifest_symlinked_file, manifest_symlinked_directory, manifest_relative_symlink, fleet_is_a_fifo,
    fleet_is_a_secrets_file, fleet_is_a_yaml_secrets_file, fleet_is_a_key, state_absolute,
    state_into_another_journal, state_into_another_journal_opted_in, state_into_its_own_journal, state_dot_dot,
    state_through_symlinked_directory, state_is_a_secret,
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.__name__)
@pytest.mark.parametrize("command", [["validate"], ["plan"], ["plan", "--no-refresh"], ["validate", "--json"]])
def test_a_hostile_manifest_set_is_refused_without_reading_or_writing(
    runner: Runner, attack: Attack, command: list[str]
) -> None:
    attack(runner)
    before = snapshot(runner.base)
    code, output = run([*command, str(runner.manifests)], fifo=attack is fleet_is_a_fifo)
    assert code == 1, output
    assert SECRET not in output
    assert "Traceback" not in output and "internal error" not in output, output
    assert snapshot(runner.base) == before


def test_the_untouched_set_plans_and_writes_only_the_simulator_file(runner: Runner) -> None:
    """The check above can fail: the same set unharmed plans, and writes its simulator file."""
    before = snapshot(runner.base)
    code, output = run(["plan", str(runner.manifests)])
    assert code == 0 and "fin-1" in output, output
    after = snapshot(runner.base)
    written = {Path(path).relative_to(runner.manifests) for path in set(after) - set(before)}
    assert written == {Path(".reconciler"), Path(".reconciler/simulator.json"), Path(".reconciler/simulator.json.lock")}
    changed = {path for path in before if after[path] != before[path]}
    assert changed == {str(runner.manifests)}  # the directory that gained .reconciler/


def test_a_fifo_among_the_manifests_is_skipped_with_a_note(runner: Runner) -> None:
    os.mkfifo(runner.manifests / "pipe.yaml")
    before = snapshot(runner.base)
    code, output = run(["validate", str(runner.manifests)], fifo=True)
    assert code == 0, output
    assert f"Note: {runner.manifests / 'pipe.yaml'}: a FIFO, not a file: skipped" in output
    assert snapshot(runner.base) == before


def test_a_symlink_inside_the_manifests_is_followed(runner: Runner) -> None:
    (runner.manifests / "groups").mkdir()
    (runner.manifests / "group.yaml").rename(runner.manifests / "groups" / "finance.yaml")
    (runner.manifests / "finance.yaml").symlink_to("groups/finance.yaml")
    (runner.manifests / "settings.yaml").rename(runner.manifests / "groups" / "settings.yml")
    (runner.manifests / "fleet.yaml").rename(runner.manifests / "groups" / "fleet.yaml")
    result = CliRunner().invoke(main, ["validate", str(runner.manifests / "groups")])
    assert result.exit_code == 0, result.output


def test_a_state_kept_outside_with_the_opt_in_is_used(runner: Runner) -> None:
    elsewhere = runner.outside / "ours" / "state.json"
    runner.settings(state=f"{{path: {elsewhere}, path_outside_manifests: true}}")
    result = CliRunner().invoke(main, ["apply", "--auto-approve", str(runner.manifests)])
    assert result.exit_code == 0, result.output
    assert elsewhere.is_file() and not (elsewhere.parent / "simulator.json").exists()
    assert (runner.manifests / ".reconciler" / "simulator.json").is_file()


@pytest.mark.parametrize("fleet, state, message", [
    ("/etc/fleet.yaml", "{}", "spec.simulator.fleet: '/etc/fleet.yaml' is invalid: expected a path inside"),
    ("a/../../fleet.yaml", "{}", "spec.simulator.fleet: 'a/../../fleet.yaml' is invalid"),
    ("fleet.yaml", "{path: /var/lib/state.json}", "spec.state.path: '/var/lib/state.json' is invalid"),
    ("fleet.yaml", "{path: ../state.json, path_outside_manifests: false}", "spec.state.path: '../state.json' is invalid"),
])
def test_paths_outside_are_refused_with_file_line_and_field(runner: Runner, fleet: str, state: str, message: str) -> None:
    runner.settings(fleet=fleet, state=state)
    result = CliRunner().invoke(main, ["validate", str(runner.manifests)])
    assert result.exit_code == 1
    assert "settings.yaml:" in result.stderr and message in result.stderr, result.stderr
