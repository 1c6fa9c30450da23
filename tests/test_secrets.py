"""Canary secrets set in the environment never appear in the state, plans, --json output or logs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SK_CANARY = "CANARY-sk-7f3a9c1e5b"
PASSWORD_CANARY = "CANARY-pw-2d8e4f6a0c"
TOKEN_CANARY = "CANARY-token-9b1d3f5e7a"
SECURITY_TOKEN_CANARY = "CANARY-sts-4c6e8a0b2d"
CANARIES = (SK_CANARY, PASSWORD_CANARY, TOKEN_CANARY, SECURITY_TOKEN_CANARY)


def fleet() -> dict:
    return {
        "project_id": PROJECT,
        "credentials": [{"ak": "AKCANARY0001", "sk": SK_CANARY}],
        "users": [{"name": "ops", "password": PASSWORD_CANARY, "domain": "acme"}],
        "images": [{"id": "img-old", "type": "private"}, {"id": "img-new", "type": "private"}],
        "generate": [{"count": 6, "name_prefix": "pc-", "image_id": "img-old", "tags": {"dept": "fin"}}],
        "behaviour": {"seed": 3, "job_seconds": 0.2},
    }


def manifests(root: Path, url: str) -> Path:
    root.mkdir()
    documents = [
        {"apiVersion": "reconciler/v1", "kind": "Settings",
         "spec": {"project_id": PROJECT, "endpoint": url, "api": {"poll_interval_seconds": 0.1}}},
        {"apiVersion": "reconciler/v1", "kind": "DesktopGroup", "metadata": {"name": "fin"},
         "spec": {"desktops": {"selector": {"tags": {"dept": "fin"}}}, "image": {"id": "img-new", "type": "private"}}},
    ]
    (root / "manifests.yaml").write_text(yaml.safe_dump_all(documents))
    return root


def run(command: list[str], args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HW_", "HUAWEICLOUD_"))}
    full_env.update(env, RECONCILER_LOG="debug")
    return subprocess.run([*command, *args], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_clean(texts: list[str], workdir: Path) -> None:
    """No canary in the outputs, nor in any file reconciler wrote (state, journal, lock, plans)."""
    files = [p for p in (workdir / "m").rglob("*") if p.is_file()] + list(workdir.glob("*.json"))
    everything = texts + [p.read_text(errors="replace") for p in files]
    for canary in CANARIES:
        for text in everything:
            assert canary not in text


def test_canary_secrets_stay_out_of_everything(tmp_path: Path, serve_fleet, reconciler_command: list[str]) -> None:
    served = serve_fleet(fleet())
    manifests(tmp_path / "m", served.url)
    aksk = {"HW_ACCESS_KEY": "AKCANARY0001", "HW_SECRET_KEY": SK_CANARY, "HW_SECURITY_TOKEN": SECURITY_TOKEN_CANARY,
            "HW_PASSWORD": PASSWORD_CANARY, "HW_AUTH_TOKEN": TOKEN_CANARY}
    outputs: list[str] = []
    for args in (["plan", "m", "-o", "plan.json"], ["plan", "m", "--json"], ["show", "plan.json", "--json"],
                 ["show", "plan.json", "--markdown"], ["apply", "plan.json", "--json", "--wait"],
                 ["jobs", "-m", "m", "--refresh", "--json"], ["state", "list", "-m", "m", "--json"], ["show", "m", "--json"]):
        result = run(reconciler_command, args, aksk, tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        outputs += [result.stdout, result.stderr]
    assert any("batch_submitted" in text for text in outputs)
    assert any("GET desktops/detail" in text for text in outputs)  # the debug log did run
    assert_clean(outputs, tmp_path)


@pytest.mark.parametrize(
    "env",
    [
        {"HW_ACCESS_KEY": "AKCANARY0001", "HW_SECRET_KEY": SK_CANARY + "-wrong"},
        {"HW_AUTH_TOKEN": TOKEN_CANARY},
        {"HW_USER_NAME": "ops", "HW_PASSWORD": PASSWORD_CANARY + "-wrong", "HW_DOMAIN_NAME": "acme"},
        {"HW_SECRET_KEY": SK_CANARY},
    ],
    ids=["wrong-sk", "bad-token", "wrong-password", "sk-without-ak"],
)
def test_refused_credentials_are_reported_without_the_secret(env, tmp_path: Path, serve_fleet, reconciler_command) -> None:
    served = serve_fleet(fleet())
    manifests(tmp_path / "m", served.url)
    result = run(reconciler_command, ["plan", "m"], env, tmp_path)
    assert result.returncode == 1 and result.stderr.splitlines()[-1].startswith("Error: ")
    assert "Traceback" not in result.stderr
    assert_clean([result.stdout, result.stderr], tmp_path)


def test_iam_password_login_works_and_stays_secret(tmp_path: Path, serve_fleet, reconciler_command) -> None:
    served = serve_fleet(fleet())
    manifests(tmp_path / "m", served.url)
    env = {"HW_USER_NAME": "ops", "HW_PASSWORD": PASSWORD_CANARY, "HW_DOMAIN_NAME": "acme"}
    result = run(reconciler_command, ["apply", "m", "--auto-approve", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert_clean([result.stdout, result.stderr], tmp_path)
