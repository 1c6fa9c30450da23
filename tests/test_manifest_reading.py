"""Reading a larger manifest set: however the files are named, the same set; problems located."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.manifest import ManifestError, load_manifests

SETTINGS = """apiVersion: reconciler/v1
kind: Settings
spec:
  project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9
  region: cn-north-4
"""


def write_set(root: Path, groups: int = 60, ids: int = 40, broken: int | None = None) -> Path:
    root.mkdir()
    (root / "settings.yaml").write_text(SETTINGS)
    for g in range(groups):
        lines = "".join(f"      - d-{g:03d}-{i:03d}\n" for i in range(ids))
        batch = "oops" if g == broken else "10"
        (root / f"group-{g:03d}.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: DesktopGroup\nmetadata:\n  name: g-{g:03d}\nspec:\n"
            f"  desktops:\n    ids:\n{lines}  image: {{id: img-{g % 3}, type: private}}\n  rollout: {{batch_size: {batch}}}\n"
        )
    return root


def test_a_set_named_by_directory_and_by_files_reads_the_same(tmp_path: Path) -> None:
    root = write_set(tmp_path / "m")
    by_directory = load_manifests([root])
    by_files = load_manifests(sorted(root.glob("*.yaml"), reverse=True) + [root])  # each file once
    assert by_directory.groups == by_files.groups and len(by_directory.groups) == 60
    assert by_directory.digest == by_files.digest and by_directory.settings.base_dir == str(root)
    assert by_directory.group_index["g-007"].ids[0] == "d-007-000"


def test_a_problem_in_a_large_set_keeps_its_file_and_line(tmp_path: Path) -> None:
    root = write_set(tmp_path / "m", broken=59)
    with pytest.raises(ManifestError) as caught:
        load_manifests([root])
    (problem,) = caught.value.problems
    assert problem.file.endswith("group-059.yaml") and problem.line == 49 and "batch_size" in problem.field
