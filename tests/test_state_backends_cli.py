"""Every command on every state backend, through the CLI: apply, plan, state list/show/rm, jobs,
force-unlock, state pull/push; and the one-line errors for a backend that cannot be used."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from harness.backends import PG_DSN, S3_ENV, S3Server, postgres_schema, s3_settings

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


@contextmanager
def on_backend(kind: str, root: Path, s3_server: S3Server) -> Iterator[dict[str, str]]:
    """The manifests at ``root`` on a fresh state of ``kind``; yields the environment needed."""
    if kind == "local":
        yield {}
    elif kind == "postgres":
        with postgres_schema() as schema:
            with_state(root, {"backend": "postgres", "name": "quickstart", "postgres": {"schema": schema}})
            yield {"RECONCILER_PG_CONN_STR": PG_DSN}
    else:
        with_state(root, {"backend": "s3", "s3": s3_settings(s3_server.url, s3_server.new_bucket())})
        yield dict(S3_ENV)


@pytest.fixture(params=["local", "postgres", "s3"])
def backend(request: pytest.FixtureRequest, quickstart: Path, s3_server: S3Server) -> Iterator[dict[str, str]]:
    """The quickstart on each backend; yields the environment its commands need."""
    with on_backend(request.param, quickstart, s3_server) as env:
        yield env


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
    ({"backend": "s3", "s3": {"bucket": "some-bucket", "endpoint": "http://127.0.0.1:1", "addressing_style": "path"}}, dict(S3_ENV),
     r"^Error: s3 state backend s3://some-bucket/5f0c1b2a3d4e5f60718293a4b5c6d7e8/state\.json at http://127\.0\.0\.1:1: (reading the state|probing conditional writes) failed: Could not connect.*Fix: check spec\.state\.s3\.endpoint"),
    ({"backend": "s3"}, {}, r"^Error: .*settings\.yaml:\d+.*s3"),
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


def test_pull_and_push_on_every_backend(quickstart: Path, backend: dict[str, str], tmp_path: Path) -> None:
    m = str(quickstart)
    assert cli(backend, "apply", m, "--auto-approve").exit_code == 0
    pulled = cli(backend, "state", "pull", m)
    document = json.loads(pulled.stdout)
    assert document["serial"] >= 1 and document["desktops"]
    saved = tmp_path / "pulled.json"
    saved.write_text(pulled.stdout)
    # The same state again: accepted, nothing changes.
    assert cli(backend, "state", "push", str(saved), "-m", m).exit_code == 0
    # An older serial, another lineage, other content at the same serial: refused without --force.
    for change in ({"serial": document["serial"] - 1}, {"lineage": "another-lineage"}, {"desktops": {}}):
        variant = tmp_path / "variant.json"
        variant.write_text(json.dumps({**document, **change}))
        refused = cli(backend, "state", "push", str(variant), "-m", m)
        assert refused.exit_code == 1 and "refusing to push" in refused.output and "--force" in refused.output
        assert json.loads(cli(backend, "state", "pull", m).stdout) == document  # nothing written
    forced = cli(backend, "state", "push", str(variant), "-m", m, "--force")
    assert forced.exit_code == 0, forced.output
    after = json.loads(cli(backend, "state", "pull", m).stdout)
    assert after["desktops"] == {} and after["serial"] == document["serial"] + 1  # past the replaced one


@pytest.mark.parametrize("target", ["postgres", "s3"])
def test_migrating_a_local_state_with_pull_and_push(quickstart: Path, target: str, tmp_path: Path, s3_server: S3Server) -> None:
    """The README's migration: pull from the old backend, point the Settings at the new one, push."""
    m = str(quickstart)
    assert cli({}, "apply", m, "--auto-approve", "--wait").exit_code == 0
    saved = tmp_path / "state.json"
    saved.write_text(cli({}, "state", "pull", m).stdout)
    with on_backend(target, quickstart, s3_server) as env:
        assert cli(env, "plan", m, "--detailed-exitcode").exit_code == 2  # the new backend is empty
        pushed = cli(env, "state", "push", str(saved), "-m", m)
        assert pushed.exit_code == 0, pushed.output
        assert json.loads(cli(env, "state", "pull", m).stdout) == json.loads(saved.read_text())
        assert cli(env, "plan", m, "--detailed-exitcode").exit_code == 0


@pytest.mark.parametrize("kind, module, extra", [("postgres", "psycopg", "postgres"), ("s3", "boto3", "s3")])
def test_a_missing_extra_names_the_install_command(quickstart: Path, kind: str, module: str, extra: str,
                                                   monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> None:
    state = {"backend": kind, "postgres": {"conn_str": "postgresql://reconciler@127.0.0.1/db"},
             "s3": s3_settings(s3_server.url, "some-bucket")}
    with_state(quickstart, state)
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    result = cli({}, "plan", str(quickstart))
    assert result.exit_code == 1
    assert result.output == f"Error: the {kind} state backend needs {module}: pip install 'reconciler[{extra}]'\n"
