"""The schema and `validate` agree: an editor that loads schemas/manifest.schema.json warns about
exactly what `reconciler validate` rejects. Generated manifests, valid and broken in the ways
people break them, go through jsonschema (with the project's three documented stricter rules),
the compiled fast check and the CLI; all three must give the same answer. The only rules the
schema cannot express are named here and kept out of the comparison: a time zone must exist in
the tz database, and lost_call_horizon_seconds must be at least timeout_seconds."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.cloud.endpoints import validate_endpoint
from reconciler.manifest import schema as manifest_schema
from reconciler.manifest.build import zone_exists

FLEET = "project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9\nimages: [{id: img-1, type: gold}]\n"
MISSING = object()  # a field left out

BASE_SETTINGS: dict[str, Any] = {
    "apiVersion": "reconciler/v1", "kind": "Settings",
    "spec": {"project_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "region": "cn-north-4"},
}
BASE_GROUP: dict[str, Any] = {
    "apiVersion": "reconciler/v1", "kind": "DesktopGroup",
    "metadata": {"name": "finance"},
    "spec": {"desktops": {"ids": ["d-1"]}, "image": {"id": "img-1", "type": "gold"}},
}

ENDPOINTS = st.sampled_from([
    "https://workspace.example.com", "https://workspace.example.com:8443/", "http://127.0.0.1:9", "http://localhost",
    "http://[::1]:8080", "http://workspace.example.com", "https://host/path", "https://host?x=1", "https://u@host",
    "https://host:99999", "https://host:", "ftp://host", "https://", "", "https://exa mple.com", "http://127.0.0.300",
    "HTTPS://host", "https://host#f", "https://a.b-c.d:0",
]) | st.text(st.sampled_from(list("htps:/.[]1a-@?#: ")), max_size=16)
PATHS = st.sampled_from([
    "fleet.yaml", "./fleet.yaml", "sub/fleet.yaml", "/etc/fleet.yaml", "../fleet.yaml", "sub/../fleet.yaml",
    "..fleet.yaml", "", "fleet.yaml\n", "a\x00b",
])
STATE_PATHS = st.sampled_from([".reconciler/state.json", "s.json", "/var/lib/s.json", "../s.json", "x/../s.json", ""])
TARGET_VALUES = {
    "region": st.sampled_from(["cn-north-4", "CN", None, 4]),
    "endpoint": st.none() | ENDPOINTS,
    "simulator": st.none() | st.builds(lambda fleet: {"fleet": fleet}, PATHS) | st.just({}),
}
OS_TYPES = st.sampled_from(["Windows", "Linux", "Other", "Others", "windows", "Windwos", "", None, 3])
CRITERIA = {
    "tags": st.sampled_from([{}, {"dept": "fin"}, {"": "x"}, {"a,b": "c"}, None]),
    "pool_id": st.sampled_from([None, "pool-1", "", "a/b"]),
    "enterprise_project_id": st.sampled_from([None, "0", "eps-1"]),
    "image_id": st.sampled_from([None, "img-1", " "]),
    "name": st.sampled_from([None, "fin-*", ""]),
}
NAMES = st.sampled_from(["finance", "a", "-a", "a-", "A", "a" * 63, "a" * 64, "fin_1", "", "0"])
NUMBERS = st.sampled_from([-1, 0, 1, 100, 101, 2**31, 5.0, 1.5, True, "3", None])


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.just(MISSING) | strategy


def put(mapping: dict[str, Any], key: str, value: Any) -> None:
    if value is MISSING:
        mapping.pop(key, None)
    else:
        mapping[key] = value


def rarely(draw: st.DrawFn, usual: Any, unusual: st.SearchStrategy[Any]) -> Any:
    """``usual`` three times in four, so that valid documents are common too."""
    return draw(unusual) if draw(st.sampled_from([False, False, False, True])) else usual


@st.composite
def settings_documents(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(BASE_SETTINGS)
    spec = document["spec"]
    chosen = draw(st.sampled_from(list(TARGET_VALUES)))
    for name, values in TARGET_VALUES.items():
        put(spec, name, draw(values.filter(lambda value: value is not None)) if name == chosen else MISSING)
        put(spec, name, rarely(draw, spec.get(name, MISSING), optional(values)))
    if draw(st.booleans()):
        state = {"path": rarely(draw, ".reconciler/state.json", STATE_PATHS)}
        put(state, "path_outside_manifests", rarely(draw, MISSING, st.sampled_from([True, False, "yes", None])))
        spec["state"] = state
    if draw(st.booleans()):
        spec["api"] = {"timeout_seconds": 30, "max_concurrent_calls": rarely(draw, 4, NUMBERS)}
    return document


@st.composite
def group_documents(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(BASE_GROUP)
    document["metadata"]["name"] = rarely(draw, "finance", NAMES)
    spec = document["spec"]
    desktops: dict[str, Any] = {}
    put(desktops, "ids", rarely(draw, ["d-1"], optional(st.sampled_from([[], ["d-1", "d-1"], ["a/b"], [1]]))))
    if draw(st.booleans()):
        usual = {"tags": {"dept": "fin"}}
        desktops["selector"] = rarely(draw, usual, st.fixed_dictionaries(
            {}, optional={name: values for name, values in CRITERIA.items()}))
    spec["desktops"] = desktops
    put(spec["image"], "os_type", rarely(draw, "Windows", optional(OS_TYPES)))
    put(spec["image"], "type", rarely(draw, "gold", st.sampled_from(["private", "market", "silver"])))
    rollout: dict[str, Any] = {}
    for name in ("batch_size", "canary", "max_in_flight", "delay_time"):
        put(rollout, name, rarely(draw, MISSING, NUMBERS))
    put(rollout, "max_failures", rarely(draw, MISSING, st.sampled_from([0, 3, "10%", "100%", "101%", "10", -1])))
    if draw(st.booleans()):
        rollout["window"] = {"start": rarely(draw, "22:00", st.sampled_from(["24:00", 1320])), "end": "06:00",
                             "timezone": rarely(draw, "UTC", st.sampled_from(["Asia/Shanghai", "Mars/Olympus", ""]))}
    spec["rollout"] = rollout
    return document


def only_expressible(document: dict[str, Any]) -> bool:
    """False for documents whose fate a rule outside JSON Schema decides (see the docstring)."""
    window = document.get("spec", {}).get("rollout", {}).get("window") or {}
    timezone = window.get("timezone")
    return not (isinstance(timezone, str) and timezone and not zone_exists(timezone))


def validate_accepts(document: dict[str, Any], other: dict[str, Any]) -> bool:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        (directory / "fleet.yaml").write_text(FLEET)
        (directory / "sub").mkdir()
        (directory / "sub" / "fleet.yaml").write_text(FLEET)
        (directory / "..fleet.yaml").write_text(FLEET)  # every path the schema allows exists: that is not its rule
        (directory / "m.yaml").write_text(yaml.safe_dump_all([document, other], allow_unicode=True))
        result = CliRunner().invoke(main, ["validate", name])
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.exit_code in (0, 1), result.output
    return result.exit_code == 0


def check_agreement(document: dict[str, Any], other: dict[str, Any]) -> None:
    by_schema = manifest_schema.validator().is_valid(document)
    event("accepted" if by_schema else "rejected")
    assert manifest_schema.fast_check()(document) == by_schema
    assert validate_accepts(document, other) == by_schema, yaml.safe_dump(document)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(settings_documents())
def test_settings_documents(document: dict[str, Any]) -> None:
    check_agreement(document, BASE_GROUP)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group_documents())
def test_group_documents(document: dict[str, Any]) -> None:
    if only_expressible(document):
        check_agreement(document, BASE_SETTINGS)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(manifest_schema.schema("settings.schema.json")["$defs"]["spec"]["properties"]["endpoint"]["pattern"]
                     .replace("$", r"\Z")))
def test_every_endpoint_the_schema_accepts_the_client_accepts(endpoint: str) -> None:
    assert validate_endpoint(endpoint) == endpoint.rstrip("/")


def test_a_time_zone_that_does_not_exist_is_the_rule_outside_the_schema() -> None:
    group = copy.deepcopy(BASE_GROUP)
    group["spec"]["rollout"] = {"window": {"start": "22:00", "end": "06:00", "timezone": "Mars/Olympus"}}
    assert manifest_schema.validator().is_valid(group)
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "m.yaml").write_text(yaml.safe_dump_all([BASE_SETTINGS, group]))
        result = CliRunner().invoke(main, ["validate", directory])
    assert result.exit_code == 1 and "unknown time zone 'Mars/Olympus'" in result.stderr


@pytest.mark.parametrize("change, message", [
    (lambda spec: spec["image"].update(os_type="Windwos"), "spec.image.os_type: 'Windwos' is not one of: Windows, Linux, Other"),
    (lambda spec: spec["desktops"].update(selector={}), "spec.desktops.selector: give at least one criterion"),
    (lambda spec: spec["desktops"].update(selector={"pool_id": None, "tags": {}}), "give at least one criterion"),
    (lambda spec: spec["desktops"].update(ids=[]), "spec.desktops: no desktops: give ids, a selector, or both"),
])
def test_the_rules_people_trip_on_are_in_the_schema(change: Any, message: str) -> None:
    group = copy.deepcopy(BASE_GROUP)
    change(group["spec"])
    assert not manifest_schema.validator().is_valid(group) and not manifest_schema.fast_check()(group)
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "m.yaml").write_text(yaml.safe_dump_all([BASE_SETTINGS, group]))
        result = CliRunner().invoke(main, ["validate", directory])
    assert result.exit_code == 1 and message in result.stderr, result.stderr
