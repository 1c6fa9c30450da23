"""Which files a manifest set is made of: YAML that is not a manifest (a simulator fleet, a CI
workflow, another tool's manifests) is skipped with a note, a manifest with a typo is not; and
a desktop listed by two documents of one group name is reported once per cause."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.manifest.shape import looks_like_manifest

EXAMPLES = Path(__file__).parent.parent / "examples"
SETTINGS = """\
apiVersion: reconciler/v1
kind: Settings
spec: {project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9, region: cn-north-4}
"""
GROUP = """\
apiVersion: reconciler/v1
kind: DesktopGroup
metadata: {name: finance}
spec:
  desktops: {ids: [d-1]}
  image: {id: img-1, type: gold}
"""


def validate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_validate_at_the_root_of_the_gitops_layout_skips_the_fleet_with_a_note(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "gitops", repository)
    code, stdout, stderr = validate(str(repository))
    assert code == 0, stderr
    fleet = repository / "simulator" / "fleet.yaml"
    assert stderr == f"Note: {fleet}: not a reconciler manifest (no apiVersion: reconciler/v1): skipped\n"
    assert "The manifests are valid: 3 groups" in stdout and "4 files" in stdout


def test_skipped_files_are_notices_in_json(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    (tmp_path / "compose.yaml").write_text("services: {db: {image: postgres}}\n")
    result = CliRunner().invoke(main, ["validate", "--json", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert '"severity": "notice"' in result.stdout and "compose.yaml" in result.stdout


@pytest.mark.parametrize("text", [
    "project_id: 0a1b\nimages: []\ndesktops: []\n",  # a simulator fleet
    "name: ci\non: [push]\njobs: {build: {runs-on: ubuntu-latest}}\n",  # a workflow
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}\n",  # another tool's
    "- hosts: all\n  tasks: []\n",  # a playbook
    "PASSWORD=hunter2\n",  # text that parses as one string
])
def test_foreign_yaml_is_skipped(tmp_path: Path, text: str) -> None:
    (tmp_path / "settings.yaml").write_text(SETTINGS + "---\n" + GROUP)
    (tmp_path / "other.yaml").write_text(text)
    code, stdout, stderr = validate(str(tmp_path))
    assert code == 0, stderr
    assert "other.yaml: not a reconciler manifest" in stderr and "hunter2" not in stderr + stdout


@pytest.mark.parametrize("text, expected", [
    (GROUP.replace("apiVersion:", "apiVersoin:"), "missing required field 'apiVersion'"),
    (GROUP.replace("apiVersion: reconciler/v1", "apiVersion: reconcilr/v1"), "expected 'reconciler/v1'"),
    (GROUP.replace("apiVersion: reconciler/v1\nkind: DesktopGroup\n", ""), "missing required field 'apiVersion'"),
    (GROUP.replace("kind: DesktopGroup", "kind: DesktopGrop"), "'DesktopGrop' is not one of"),
    (GROUP.replace("apiVersion: reconciler/v1\n", "").replace("kind:", "Kind:"), "missing required field"),
    (GROUP + "---\nname: ci\njobs: {}\n", "not a reconciler manifest: expected apiVersion: reconciler/v1"),
])
def test_a_manifest_with_a_typo_is_still_an_error(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    (tmp_path / "group.yaml").write_text(text)
    code, _, stderr = validate(str(tmp_path))
    assert code == 1 and "group.yaml:" in stderr and expected in stderr, stderr
    assert "skipped" not in stderr


def test_the_shape_rule_on_values() -> None:
    assert looks_like_manifest({"apiVersion": "reconciler/v1"})
    assert looks_like_manifest({"kind": "Setings"}) and looks_like_manifest({"kind": 5})
    assert looks_like_manifest([{"apiVersion": "x", "kind": "DesktopGroup"}])
    assert looks_like_manifest("apiVersion reconciler/v1 kind Settings")
    assert not looks_like_manifest({"apiVersion": "v1", "kind": "ConfigMap"})
    assert not looks_like_manifest(3) and not looks_like_manifest({"project_id": "p"})


def test_only_yaml_files_that_are_all_foreign_leave_nothing_to_validate(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text("project_id: p\n")
    code, _, stderr = validate(str(tmp_path))
    assert code == 1 and "no reconciler manifests here: every file was skipped" in stderr, stderr


def test_a_desktop_in_two_documents_of_one_group_name_names_the_group_once(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    (tmp_path / "a.yaml").write_text(GROUP)
    (tmp_path / "b.yaml").write_text(GROUP)
    code, _, stderr = validate(str(tmp_path))
    assert code == 1
    assert "group 'finance' is already defined at" in stderr
    assert f"desktop 'd-1' is also listed by the other group named 'finance' ({tmp_path / 'a.yaml'}:1)" in stderr
    assert "is in two groups" not in stderr


def test_fifos_and_sockets_among_the_manifests_are_skipped_with_notes(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(SETTINGS + "---\n" + GROUP)
    os.mkfifo(tmp_path / "pipe.yaml")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "sock.yml"))
        code, stdout, stderr = validate(str(tmp_path))
    assert code == 0, stderr
    assert f"Note: {tmp_path / 'pipe.yaml'}: a FIFO, not a file: skipped" in stderr
    assert f"Note: {tmp_path / 'sock.yml'}: a socket, not a file: skipped" in stderr
    assert stdout.startswith("The manifests are valid")


def test_a_named_file_that_is_a_link_out_of_its_directory_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "outside.yaml").write_text("password: hunter2\n")
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "settings.yaml").symlink_to(tmp_path / "outside.yaml")
    code, _, stderr = validate(str(tmp_path / "manifests" / "settings.yaml"))
    assert code == 1 and "a symbolic link that leads outside" in stderr and "hunter2" not in stderr
