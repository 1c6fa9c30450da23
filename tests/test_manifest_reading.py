"""Reading a large manifest set with a forked worker gives exactly what reading it alone gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.manifest import ManifestError
from reconciler.manifest.set_reading import ManifestReading

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


needs_two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a worker needs a second core")


@needs_two_cores
def test_parallel_and_serial_reading_agree(tmp_path: Path) -> None:
    root = write_set(tmp_path / "m")
    together = ManifestReading([root], parallel=True)
    assert together.parallel
    settings = together.early_settings()
    assert settings is not None and settings.base_dir == str(root)
    alone = ManifestReading([root], parallel=False)
    assert not alone.parallel
    assert together.result() == alone.result()


@needs_two_cores
def test_problems_found_by_the_worker_keep_their_file_and_line(tmp_path: Path) -> None:
    root = write_set(tmp_path / "m", broken=59)  # the largest files go to the worker first
    reading = ManifestReading([root], parallel=True)
    assert reading.parallel
    with pytest.raises(ManifestError) as caught:
        reading.result()
    (problem,) = caught.value.problems
    assert problem.file.endswith("group-059.yaml") and problem.line == 49 and "batch_size" in problem.field


def test_small_sets_are_read_in_one_process(tmp_path: Path) -> None:
    root = write_set(tmp_path / "m", groups=3, ids=2)
    reading = ManifestReading([root])
    assert not reading.parallel and len(reading.result().groups) == 3
