"""The CLI as a newcomer meets it: one way to name the manifests everywhere, clear words when no
one can answer the confirmation or when Ctrl-C stops an apply, plurals and aligned columns."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.cli.progress import EventPrinter
from reconciler.render.state import apply_summary, columns

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    target = tmp_path / "qs"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".reconciler"))
    return target


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def rebuild_counts(root: Path) -> dict[str, int]:
    simulated = json.loads((root / ".reconciler" / "simulator.json").read_text())["simulator"]
    return {d["id"]: d.get("rebuild_count", 0) for d in simulated["desktops"]}


# -- naming the manifests ---------------------------------------------------------------------


def test_every_command_takes_the_manifests_as_path_or_dash_m(quickstart: Path) -> None:
    assert invoke("apply", str(quickstart), "--auto-approve")[0] == 0
    by_path, by_option = invoke("state", "list", str(quickstart)), invoke("state", "list", "-m", str(quickstart))
    assert by_path[0] == by_option[0] == 0 and by_path[1] == by_option[1]
    assert by_path[1].splitlines()[0].split() == ["DESKTOP", "GROUP", "IMAGE", "LAST", "JOB"]
    assert invoke("jobs", str(quickstart))[1] == invoke("jobs", "-m", str(quickstart))[1]
    assert invoke("plan", "--no-refresh", "-m", str(quickstart))[1] == invoke("plan", "--no-refresh", str(quickstart))[1]
    assert invoke("validate", "-m", str(quickstart))[0] == 0
    code, _, err = invoke("state", "list", str(quickstart), "-m", str(quickstart.parent))
    assert code == 1 and "name the manifests once" in err


def test_dash_c_works_after_the_subcommand_too(quickstart: Path) -> None:
    before = invoke("-C", str(quickstart.parent), "plan", "--no-refresh", quickstart.name)
    after = invoke("plan", "-C", str(quickstart.parent), "--no-refresh", quickstart.name)
    assert before[0] == after[0] == 0 and before[1] == after[1]
    assert invoke("state", "list", "-C", str(quickstart))[1] == "The state is empty.\n"
    assert invoke("show", "-C", str(quickstart))[0] == 0


# -- confirmation and interruption ------------------------------------------------------------


def test_apply_without_a_terminal_or_auto_approve_names_the_flag_and_changes_nothing(quickstart: Path) -> None:
    code, stdout, stderr = invoke("apply", str(quickstart), input="")
    assert code == 1 and "Plan: 270 to rebuild" in stdout
    assert "Error: stdin is not a terminal, so apply cannot ask for confirmation: add --auto-approve" in stderr
    assert "aborted" not in stderr
    assert set(rebuild_counts(quickstart).values()) == {0}


def test_ctrl_c_during_apply_says_what_was_submitted_and_nothing_is_lost(quickstart: Path,
                                                                         reconciler_command: list[str]) -> None:
    settings = quickstart / "settings.yaml"  # one call a second: time to interrupt between batches
    settings.write_text(settings.read_text().replace("rate_limit_per_minute: 6000", "rate_limit_per_minute: 60"))
    apply = subprocess.Popen([*reconciler_command, "apply", str(quickstart), "--auto-approve"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert apply.stderr is not None
    for line in apply.stderr:  # the first batch is in: interrupt the rest
        if "submitted (job" in line:
            apply.send_signal(signal.SIGINT)
            break
    _, rest = apply.communicate(timeout=120)
    assert apply.returncode == 1, rest
    assert "Error: interrupted after submitting " in rest and "`reconciler jobs --wait` follows them" in rest
    assert "Traceback" not in rest

    finished = subprocess.run([*reconciler_command, "jobs", str(quickstart), "--wait"], capture_output=True, text=True,
                              timeout=120)
    assert finished.returncode == 0, finished.stderr
    resumed = subprocess.run([*reconciler_command, "apply", str(quickstart), "--auto-approve", "--wait"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    counts = rebuild_counts(quickstart)
    assert sum(counts.values()) == 270 and max(counts.values()) == 1


# -- words and columns ------------------------------------------------------------------------


def test_counts_of_one_are_singular() -> None:
    summary = {"rebuilds_submitted": 1, "jobs": 1, "adopted": 0, "forgotten": 0, "rebuilds_succeeded": 1,
               "rebuilds_running": 1, "deferred": 1, "busy_deferred": 1, "unknown_outcome": 1}
    text = apply_summary(summary, {}, {})
    assert text.startswith("Apply complete: 1 rebuild submitted in 1 job, 0 adopted, 0 forgotten.")
    for wrong in ("1 rebuilds", "1 jobs", "1 desktops", "1 rebuild are", "1 desktop were", "1 desktop have"):
        assert wrong not in text


def test_columns_line_up_whatever_the_lengths() -> None:
    lines = columns([("JOB", "STATUS", "GROUP"), ("a" * 20, "SUCCESS", "g"), ("b", "FAILED", "finance-win11")])
    assert len({line.index(status) for line, status in zip(lines, ("STATUS", "SUCCESS", "FAILED"), strict=True)}) == 1


def test_the_wait_bar_is_ended_before_anything_else_and_silent_with_nothing_to_wait_for(
        capsys: pytest.CaptureFixture[str]) -> None:
    piped = EventPrinter(as_json=False, interactive=False)
    piped({"event": "wait_progress", "finished": 0, "total": 0})
    assert capsys.readouterr().err == ""
    terminal = EventPrinter(as_json=False, interactive=True)
    terminal({"event": "wait_progress", "finished": 1, "total": 1})
    terminal.finish()
    assert capsys.readouterr().err.endswith("1/1 rebuild finished\n")


# -- talking to the cloud ---------------------------------------------------------------------


def test_a_region_that_does_not_resolve_fails_at_once_naming_the_setting(quickstart: Path,
                                                                        reconciler_command: list[str]) -> None:
    settings = quickstart / "settings.yaml"
    settings.write_text(settings.read_text().replace("simulator:\n    fleet: fleet.yaml", "region: cn-nort-4"))
    (quickstart / "fleet.yaml").unlink()
    env = {"PATH": "/usr/bin:/bin", "RECONCILER_LOG": "info", "HW_ACCESS_KEY": "AK", "HW_SECRET_KEY": "SK"}
    result = subprocess.run([*reconciler_command, "plan", str(quickstart)], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 1
    assert "cannot resolve workspace.cn-nort-4.myhuaweicloud.com" in result.stderr
    assert "check spec.region 'cn-nort-4'" in result.stderr and "settings.yaml:" in result.stderr
    assert "retrying" not in result.stderr and "SK" not in result.stderr.replace("settings", "")


def test_info_logging_shows_every_successful_call(quickstart: Path, reconciler_command: list[str]) -> None:
    result = subprocess.run([*reconciler_command, "plan", str(quickstart)], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "RECONCILER_LOG": "info"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "INFO reconciler.cloud: GET desktops/detail -> HTTP 200 in " in result.stderr


def test_refresh_progress_counts_pages_on_a_terminal_and_erases_its_line(
        quickstart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler.cli.progress import refresh_progress
    from reconciler.connect import open_client
    from reconciler.manifest import load_manifests

    settings = load_manifests([str(quickstart)]).settings
    with open_client(settings, {}) as client:
        with refresh_progress(client, enabled=True):
            desktops = list(client.iter_desktops(page_size=100))
        assert client.on_desktop_page is None
        shown = capsys.readouterr().err
        assert f"\r  reading the fleet: 4 pages, {len(desktops)} desktops seen" in shown
        assert shown.endswith("\r" + " " * len(f"  reading the fleet: 4 pages, {len(desktops)} desktops seen") + "\r")
        with refresh_progress(client):  # stderr is not a terminal here: nothing
            list(client.iter_desktops(page_size=100))
        assert capsys.readouterr().err == ""
