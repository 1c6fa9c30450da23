"""Signed plans and the manifest check of `apply PLANFILE`, through the real CLI in subprocesses
against a served simulator (whose call counter proves a refused plan made no API call).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler.manifest_check import current_digests, differences
from reconciler.plan import _checksum
from reconciler.plan_signing import PlanKey, PlanKeyError, PlanSignatureError, key_id, plan_key, signature, verify

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart"
PLAN_SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
KEY = "an-example-plan-key-of-48-bytes-0123456789abcdef"
OTHER_KEY = "another-plan-key-that-is-long-enough-0123456789"
REFUSED = "Error: plan.json is not signed with this RECONCILER_PLAN_KEY"


class Project:
    """A copy of the quickstart manifests under ``root/quickstart``, against a served simulator."""

    def __init__(self, root: Path, sim: Any, command: list[str], credentials: dict[str, str]) -> None:
        self.root, self.sim, self.command = root, sim, command
        self.manifests = root / "quickstart"
        shutil.copytree(EXAMPLE, self.manifests, ignore=shutil.ignore_patterns(".reconciler", "fleet.yaml"))
        settings = self.manifests / "settings.yaml"
        text = settings.read_text()
        assert "  simulator:\n    fleet: fleet.yaml\n" in text
        settings.write_text(text.replace("  simulator:\n    fleet: fleet.yaml\n", f"  endpoint: {sim.url}\n"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("HW_", "HUAWEICLOUD_", "RECONCILER_"))}
        self.env.update(HW_ACCESS_KEY=credentials["ak"], HW_SECRET_KEY=credentials["sk"], NO_COLOR="1")

    def run(self, *args: str, key: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **({"RECONCILER_PLAN_KEY": key} if key is not None else {})}
        return subprocess.run([*self.command, *args], cwd=cwd or self.root, env=env, capture_output=True, text=True, timeout=120)

    def plan(self, key: str | None = None, *extra: str) -> dict[str, Any]:
        made = self.run("plan", "quickstart", "--target", "finance-win11", "-o", "plan.json", *extra, key=key)
        assert made.returncode == 0, made.stderr
        return json.loads((self.root / "plan.json").read_text())

    def write_plan(self, document: dict[str, Any]) -> None:
        (self.root / "plan.json").write_text(json.dumps(document, indent=1))

    def calls(self) -> int:
        return int(self.sim.admin.get("/_simulator/stats").json()["total"])

    def rebuilt(self) -> set[str]:
        return {i for i, d in self.sim.desktops().items() if d["rebuild_count"]}

    def state_dir(self) -> list[str]:
        state = self.manifests / ".reconciler"
        return sorted(p.name for p in state.iterdir()) if state.exists() else []


@pytest.fixture
def project(tmp_path: Path, serve_fleet: Callable[[dict], Any], reconciler_command: list[str]) -> Project:
    fleet = yaml.safe_load((EXAMPLE / "fleet.yaml").read_text())
    fleet["behaviour"] = {**fleet.get("behaviour", {}), "job_seconds": 0.2}
    return Project(tmp_path, serve_fleet(fleet), reconciler_command, fleet["credentials"][0])


def assert_refused_untouched(project: Project, refused: subprocess.CompletedProcess[str], calls: int, message: str) -> None:
    """Exit 1 with one Error line, before any API call, the lock or a state write."""
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(message) and refused.stderr.count("\n") == 1, refused.stderr
    assert project.calls() == calls and project.rebuilt() == set()
    assert project.state_dir() == []


# -- signing ----------------------------------------------------------------------------------


def test_a_signed_plan_names_its_key_and_applies_with_it(project: Project) -> None:
    document = project.plan(KEY)
    assert document["signature"] == {"alg": "HMAC-SHA256", "key_id": hashlib.sha256(KEY.encode()).hexdigest()[:8],
                                     "value": document["signature"]["value"]}
    shown = project.run("show", "plan.json", "--json", key=KEY)
    report = json.loads(shown.stdout)
    assert (report["signed"], report["key_id"], report["verified"]) == (True, key_id(KEY.encode()), True)
    jsonschema.validate(document, PLAN_SCHEMA)
    jsonschema.validate(report, PLAN_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "signature": {**document["signature"], "key_id": KEY}}, PLAN_SCHEMA)
    unverified = json.loads(project.run("show", "plan.json", "--json").stdout)
    assert (unverified["signed"], unverified["verified"]) == (True, None)
    applied = project.run("apply", "plan.json", key=KEY)
    assert applied.returncode == 0, applied.stderr
    assert len(project.rebuilt()) == 10
    everything = (project.root / "plan.json").read_text() + shown.stdout + applied.stdout + applied.stderr
    assert KEY not in everything and KEY.encode().hex() not in everything


def test_the_forged_plan_attack_is_refused(project: Project) -> None:
    """Edit a rebuild into a signed plan and recompute its (unkeyed) checksum: the checksum
    passes, the signature does not."""
    document = project.plan(KEY)
    victim = dict(document["changes"][0], desktop_id="hr-0001-desk", desktop_name="hr-0001")
    document["changes"].append(victim)
    document["summary"]["rebuild"] += 1
    document["checksum"] = _checksum(document)
    project.write_plan(document)
    assert project.run("show", "plan.json").returncode == 0  # the checksum holds: only the key tells
    calls = project.calls()
    refused = project.run("apply", "plan.json", key=KEY)
    assert_refused_untouched(project, refused, calls, REFUSED)
    assert "the signature does not match its content" in refused.stderr

    del document["signature"]  # stripping the signature does not help either
    document["checksum"] = _checksum(document)
    project.write_plan(document)
    stripped = project.run("apply", "plan.json", key=KEY)
    assert_refused_untouched(project, stripped, calls, REFUSED)
    assert "it carries no signature" in stripped.stderr


def test_a_plan_signed_with_another_key_is_refused(project: Project) -> None:
    project.plan(OTHER_KEY)
    calls = project.calls()
    refused = project.run("apply", "plan.json", key=KEY)
    assert_refused_untouched(project, refused, calls, REFUSED)
    assert f"signed with key {key_id(OTHER_KEY.encode())}, this key is {key_id(KEY.encode())}" in refused.stderr
    assert OTHER_KEY not in refused.stderr and KEY not in refused.stderr


def test_an_unsigned_plan_is_refused_with_a_key_and_applies_without(project: Project) -> None:
    document = project.plan()
    assert "signature" not in document
    jsonschema.validate(document, PLAN_SCHEMA)
    assert json.loads(project.run("show", "plan.json", "--json").stdout)["signed"] is False
    calls = project.calls()
    assert_refused_untouched(project, project.run("apply", "plan.json", key=KEY), calls, REFUSED)
    applied = project.run("apply", "plan.json")
    assert applied.returncode == 0 and "Warning" not in applied.stderr, applied.stderr


def test_a_signed_plan_applied_without_the_key_warns_that_it_was_not_verified(project: Project) -> None:
    project.plan(KEY)
    applied = project.run("apply", "plan.json")
    assert applied.returncode == 0
    assert f"Warning: plan.json is signed (key {key_id(KEY.encode())}), but RECONCILER_PLAN_KEY is not set" in applied.stderr


@pytest.mark.parametrize("key", ["", "x" * 31])
def test_a_short_or_empty_key_is_an_error_before_any_work(project: Project, key: str) -> None:
    made = project.run("plan", "quickstart", "-o", "plan.json", key=key)
    assert made.returncode == 1 and made.stderr.startswith("Error: RECONCILER_PLAN_KEY is ")
    assert "at least 32 bytes" in made.stderr and not (project.root / "plan.json").exists()
    assert key == "" or key not in made.stderr
    assert project.calls() == 0


# -- the manifest check -----------------------------------------------------------------------


def test_a_changed_manifest_is_refused_naming_the_file(project: Project) -> None:
    project.plan(KEY)
    engineering = project.manifests / "engineering.yaml"
    engineering.write_text(engineering.read_text().replace("img-ubuntu-24-04", "img-ubuntu-22-04"))
    calls = project.calls()
    refused = project.run("apply", "plan.json", key=KEY)
    assert_refused_untouched(project, refused, calls, "Error: the manifests changed since plan.json was made (engineering.yaml)\n")


def test_an_added_or_removed_manifest_is_refused(project: Project) -> None:
    project.plan()
    (project.manifests / "more").mkdir()
    (project.manifests / "more" / "hr.yaml").write_text((project.manifests / "labs.yaml").read_text())
    added = project.run("apply", "plan.json")
    assert added.returncode == 1 and added.stderr == "Error: the manifests changed since plan.json was made (more/hr.yaml)\n"
    (project.manifests / "more" / "hr.yaml").unlink()
    (project.manifests / "labs.yaml").unlink()
    removed = project.run("apply", "plan.json")
    assert removed.returncode == 1 and removed.stderr == "Error: the manifests changed since plan.json was made (labs.yaml)\n"


def test_dash_c_moves_the_manifest_root(project: Project) -> None:
    """The plan records its manifests relative to where `plan` ran: another checkout, reached
    with -C, is compared (and applied) instead."""
    document = project.plan()
    assert document["manifests"]["root"] == "quickstart" and document["manifests"]["sources"] == ["."]
    assert sorted(document["manifests"]["files"]) == ["engineering.yaml", "finance.yaml", "labs.yaml", "settings.yaml"]
    checkout = project.root / "checkout"
    shutil.copytree(project.manifests, checkout / "quickstart")
    finance = checkout / "quickstart" / "finance.yaml"
    finance.write_text(finance.read_text() + "\n")
    refused = project.run("-C", str(checkout), "apply", "../plan.json")
    assert refused.returncode == 1 and refused.stderr == "Error: the manifests changed since ../plan.json was made (finance.yaml)\n"
    finance.write_text(finance.read_text()[:-1])
    applied = project.run("-C", str(checkout), "apply", "../plan.json")
    assert applied.returncode == 0, applied.stderr
    assert (checkout / "quickstart" / ".reconciler" / "state.json").exists() and project.state_dir() == []


def test_absent_manifests_need_no_manifest_check(project: Project) -> None:
    """A state that does not live under the manifest root (here an absolute path) lets a plan be
    applied without its manifests, but only when asked to."""
    settings = project.manifests / "settings.yaml"
    state = project.root / "state" / "state.json"
    settings.write_text(settings.read_text().replace("path: .reconciler/state.json", f"path: {state}\n    path_outside_manifests: true"))
    project.plan()
    project.manifests.rename(project.root / "moved-away")
    calls = project.calls()
    refused = project.run("apply", "plan.json")
    assert refused.returncode == 1 and refused.stderr.startswith("Error: the manifests plan.json was made from are not here")
    assert "--no-manifest-check" in refused.stderr and project.calls() == calls and not state.exists()
    applied = project.run("apply", "plan.json", "--no-manifest-check")
    assert applied.returncode == 0, applied.stderr
    assert "applied without comparing it with the manifests" in applied.stderr and state.exists()


def test_no_manifest_check_belongs_to_saved_plans(project: Project) -> None:
    refused = project.run("apply", "quickstart", "--no-manifest-check", "--auto-approve")
    assert refused.returncode == 1 and "--no-manifest-check is for a saved plan" in refused.stderr


# -- the signature, as a function -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
documents = st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k not in ("checksum", "signature")),
                            json_values, min_size=1, max_size=5)


@given(documents, st.data())
def test_any_change_to_a_signed_document_breaks_the_signature(document: dict[str, Any], data: st.DataObject) -> None:
    key = PlanKey(KEY.encode(), key_id(KEY.encode()))
    signed = {**document, "signature": signature(key, document)}
    verify(key, json.loads(json.dumps(signed)), "plan")  # survives a JSON round trip
    name = data.draw(st.sampled_from(sorted(document)))
    replacement = data.draw(json_values.filter(lambda v: v != document[name]))
    with pytest.raises(PlanSignatureError):
        verify(key, {**signed, name: replacement}, "plan")
    with pytest.raises(PlanSignatureError):
        verify(PlanKey(OTHER_KEY.encode(), key_id(OTHER_KEY.encode())), signed, "plan")


def test_the_key_stays_out_of_reprs_and_errors() -> None:
    key = plan_key({"RECONCILER_PLAN_KEY": KEY})
    assert key is not None and KEY not in repr(key) and plan_key({}) is None
    with pytest.raises(PlanKeyError) as short:
        plan_key({"RECONCILER_PLAN_KEY": "s3cr3t-but-short"})
    assert "s3cr3t" not in str(short.value) and "16 bytes long" in str(short.value)


# -- the manifest check, as a function --------------------------------------------------------

file_names = st.lists(st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6})?\.yaml", fullmatch=True), min_size=1, max_size=5, unique=True)


@given(file_names, st.data())
def test_the_manifest_check_names_exactly_the_files_that_changed(names: list[str], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(f"# {name}\n")
        recorded = current_digests(root, ["."])
        assert sorted(recorded) == sorted(names)
        edited = data.draw(st.sets(st.sampled_from(names)))
        untouched = sorted(set(names) - edited)
        removed = data.draw(st.sets(st.sampled_from(untouched))) if untouched else set()
        added = data.draw(st.sets(st.sampled_from(["new.yaml", "more/new.yml"])).filter(lambda s: not s & set(names)))
        for name in edited:
            (root / name).write_text((root / name).read_text() + " ")
        for name in removed:
            (root / name).unlink()
        for name in added:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("# new\n")
        assert differences(recorded, current_digests(root, ["."])) == sorted(edited | removed | added)
