"""The status page in a real browser: headless Chromium (Debian's `chromium`, installed by
.ci/run) loads it from a running `reconciler watch`, the test reads its group rows from the
rendered DOM, and a screenshot is kept under test-artifacts/ for CI to keep."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from watch_support import CREDENTIALS, WatchProcess, desktops, fleet, group, write_manifests

from reconciler.cli import main

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PHONE = "412,1200"  # a phone's CSS width; tall enough for every section


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs it with apt-get before the tests")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={PHONE}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


class GroupRows(HTMLParser):
    """Each `article.group`: its data-group name and the numbers of its status counts."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[str, dict[str, int]] = {}
        self._group: str | None = None
        self._status: str | None = None
        self._in_number = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "article" and "group" in (attributes.get("class") or "").split():
            self._group = attributes.get("data-group") or ""
            self.groups[self._group] = {}
        elif tag == "li" and self._group is not None and attributes.get("data-status"):
            self._status = attributes["data-status"]
        elif tag == "b" and self._status is not None:
            self._in_number = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self._group = None
        elif tag == "li":
            self._status = None
        elif tag == "b":
            self._in_number = False

    def handle_data(self, data: str) -> None:
        if self._in_number and self._group is not None and self._status is not None:
            self.groups[self._group][self._status] = int(data)


def test_the_status_page_in_headless_chromium(tmp_path: Path, serve_fleet: Any, reconciler_command: list[str]) -> None:
    browser = chromium()
    fin, lab = desktops("fin", 3), desktops("lab", 2, image="img-new")
    sim = serve_fleet(fleet(*fin, *lab))
    path = tmp_path / "manifests"
    write_manifests(path, sim.url, group("finance", [d["id"] for d in fin]), group("lab", [d["id"] for d in lab]))
    applied = CliRunner().invoke(main, ["apply", str(path), "--auto-approve", "--wait"], env=CREDENTIALS)
    assert applied.exit_code == 0, applied.output
    sim.admin.patch("/_simulator/desktops/fin-001", json={"image_id": "img-rogue"})
    write_manifests(path, sim.url, group("finance", [d["id"] for d in fin]), group("lab", [d["id"] for d in lab], image="img-old"))

    watch = WatchProcess(reconciler_command, path, "--interval", "3600", "--apply", "none")
    try:
        watch.cycle(1)
        dom = headless(browser, tmp_path / "profile", "--dump-dom", watch.url + "/")
        assert dom.returncode == 0, dom.stderr[-2000:]
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "watch-status-page.png"
        shot.unlink(missing_ok=True)
        taken = headless(browser, tmp_path / "profile", f"--screenshot={shot}", watch.url + "/")
        assert taken.returncode == 0, taken.stderr[-2000:]
    finally:
        watch.close()

    rows = GroupRows()
    rows.feed(dom.stdout)
    assert rows.groups == {
        "finance": {"current": 2, "pending": 0, "waiting": 0, "drifted": 1, "failed": 0},
        "lab": {"current": 0, "pending": 2, "waiting": 0, "drifted": 0, "failed": 0},
    }
    assert "cycle 1 succeeded" in dom.stdout
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
