"""Every command on every state backend, through the CLI: apply, plan, state list/show/rm, jobs,
force-unlock, state pull/push; and the one-line errors for a backend that cannot be used."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from harness.backends import PG_DSN, postgres_schema

from reconciler.cli import main
from reconciler.manifest import load_manifests
from reconciler.state import open_store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


def with_state(root: Path, state: dict[str, Any]) -> None:
    path = root / "settings.yaml"
    document = yaml.safe_load(path.read_text())
    document["spec"]["state"] = state
    document["spec"]["api"]["poll_interval_seconds"] = 0.1
    path.write_text(yaml.safe_dump(document))


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    target = tmp_path / "qs"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".reconciler"))
    return target


@pytest.fixture(params=["local", "postgres"])
def backend(request: pytest.FixtureRequest, quickstart: Path) -> Iterator[dict[str, str]]:
    """The quickstart on each backend; yields the environment its commands need."""
    if request.param == "local":
        yield {}
        return
    with postgres_schema() as schema:
        with_state(quickstart, {"backend": "postgres", "name": "quickstart", "postgres": {"schema": schema}})
        yield {"RECONCILER_PG_CONN_STR": PG_DSN}


def cli(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input)


def test_every_command_works_on_every_backend(quickstart: Path, backend: dict[str, str]) -> None:
    m = str(quickstart)
    applied = cli(backend, "apply", m, "--auto-approve", "--wait")
    assert applied.exit_code == 0, applied.output
    assert cli(backend, "plan", m, "--detailed-exitcode").exit_code == 0
    listed = cli(backend, "state", "list", "-m", m, "--json")
    desktops = json.loads(listed.stdout)["desktops"]
    assert len(desktops) > 10
    some = sorted(desktops)[0]
    assert some in cli(backend, "state", "show", some, "-m", m).stdout
    jobs = cli(backend, "jobs", "-m", m, "--json")
    assert jobs.exit_code == 0 and json.loads(jobs.stdout)["jobs"]
    assert cli(backend, "state", "rm", some, "-m", m).exit_code == 0
    assert some not in json.loads(cli(backend, "state", "list", "-m", m, "--json").stdout)["desktops"]
    assert cli(backend, "plan", m, "--detailed-exitcode").exit_code == 2  # adopts it again


def test_force_unlock_through_the_cli(quickstart: Path, backend: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in backend.items():
        monkeypatch.setenv(key, value)
    holder = open_store(load_manifests([quickstart]).settings)
    info = holder.lock("apply")
    locked = cli(backend, "apply", str(quickstart), "--auto-approve")
    assert locked.exit_code == 3 and info.id in locked.output
    assert cli(backend, "force-unlock", "not-" + info.id, "-m", str(quickstart)).exit_code == 1
    freed = cli(backend, "force-unlock", info.id, "-m", str(quickstart))
    assert freed.exit_code == 0, freed.output
    assert cli(backend, "apply", str(quickstart), "--auto-approve").exit_code == 0


def test_a_password_in_the_manifest_is_refused_with_its_line(quickstart: Path) -> None:
    with_state(quickstart, {"backend": "postgres", "postgres": {"conn_str": "postgresql://u:hunter2@h/db"}})
    result = cli({}, "plan", str(quickstart))
    assert result.exit_code == 1 and "hunter2" not in result.output
    assert re.search(r"settings\.yaml:\d+.*conn_str.*password", result.output), result.output


@pytest.mark.parametrize("state, env, expected", [
    ({"backend": "postgres", "postgres": {"conn_str": "postgresql://reconciler@127.0.0.1:1/db"}},
     {"RECONCILER_PG_CONN_STR": "postgresql://u:hunter2@127.0.0.1:1/db?connect_timeout=2"},
     r"^Error: postgres state backend postgresql://u:\*\*\*@127\.0\.0\.1:1/db.*connecting failed.*Fix: check that the server runs"),
    ({"backend": "postgres"}, {},
     r"^Error: postgres state backend: no database given\. Fix: set spec\.state\.postgres\.conn_str or the environment variable RECONCILER_PG_CONN_STR"),
])
def test_an_unusable_backend_is_one_clear_error(quickstart: Path, state: dict[str, Any], env: dict[str, str], expected: str) -> None:
    with_state(quickstart, state)
    for args in (["plan", str(quickstart)], ["apply", str(quickstart), "--auto-approve"], ["state", "list", "-m", str(quickstart)]):
        result = cli(env, *args)
        assert result.exit_code == 1, result.output
        assert re.search(expected, result.output), result.output
        assert len(result.output.strip().splitlines()) == 1 and "hunter2" not in result.output
    assert not (quickstart / ".reconciler" / "state.json").exists()
