"""Fleet files: parsing, defaults, generated desktops and error reporting with file:line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.simulator import FleetError, fleet_schema, load_fleet, load_fleet_data, loader

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "fleet.schema.json"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> tuple[str, ...]:
    with pytest.raises(FleetError) as caught:
        load_fleet(path)
    return caught.value.problems


MINIMAL = {"project_id": "p1", "images": [{"id": "img", "type": "gold"}]}


def test_minimal_fleet_gets_schema_defaults() -> None:
    fleet = load_fleet_data({**MINIMAL, "desktops": [{"name": "d1", "image_id": "img"}]})
    desktop = fleet.desktops[0]
    assert (desktop.status, desktop.login_status, desktop.enterprise_project_id) == ("ACTIVE", "REGISTERED", "0")
    assert desktop.tags == () and desktop.pool_id is None and desktop.fail_rebuilds is False
    assert fleet.images[0].os_type == "Windows" and fleet.images[0].name == "img"
    behaviour = fleet.behaviour
    assert behaviour.job_seconds == 5 and behaviour.rate_limit_per_minute is None and behaviour.seed == 0
    assert not fleet.auth_required


def test_behaviour_defaults_come_from_the_schema() -> None:
    schema_defaults = loader.defaults_for("#/$defs/behaviour")
    assert load_fleet_data(MINIMAL).behaviour.to_dict() == schema_defaults


def test_generated_desktops_are_deterministic_and_zero_padded() -> None:
    data = {**MINIMAL, "generate": [{"count": 100, "name_prefix": "fin-", "image_id": "img", "tags": {"dept": "fin"}}]}
    first, second = load_fleet_data(data), load_fleet_data(data)
    names = [d.name for d in first.desktops]
    assert names[0] == "fin-001" and names[-1] == "fin-100" and len(set(names)) == 100
    assert [d.id for d in first.desktops] == [d.id for d in second.desktops]
    assert all(d.tags == (("dept", "fin"),) for d in first.desktops)


def test_generate_start_and_listed_desktops_come_first() -> None:
    data = {
        **MINIMAL,
        "desktops": [{"name": "a", "image_id": "img", "id": "d-a"}],
        "generate": [{"count": 3, "name_prefix": "w", "start": 8, "image_id": "img"}],
    }
    assert [d.name for d in load_fleet_data(data).desktops] == ["a", "w08", "w09", "w10"]


def test_desktop_id_defaults_to_the_derived_id() -> None:
    fleet = load_fleet_data({**MINIMAL, "desktops": [{"name": "x", "image_id": "img"}]})
    generated = load_fleet_data({**MINIMAL, "generate": [{"count": 1, "name_prefix": "x", "start": 0, "image_id": "img"}]})
    assert generated.desktops[0].name == "x0"
    assert fleet.desktops[0].id == loader.spec.derived_desktop_id("p1", "x")


def test_fixture_fleet_loads() -> None:
    fleet = load_fleet(FIXTURES / "simulator-sdk.yaml")
    assert fleet.project_id == "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    assert len(fleet.desktops) == 10 and fleet.credentials[0].ak == "AKSIMULATOR0001"


def test_schema_problems_carry_file_line_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, """\
project_id: p1
images:
  - {id: img, type: silver}
desktops:
  - name: d1
    image_id: img
    colour: blue
    tags: {floor: 3}
behaviour:
  job_seconds: -2
""")
    assert problems_of(path) == (
        f"{path}:3: images[0].type: must be one of gold, private, market (got a string)",
        f"{path}:7: desktops[0].colour: unknown key (expected one of: architecture, enterprise_project_id, "
        "fail_rebuilds, frozen, id, image_id, in_maintenance_mode, login_status, name, pool_id, status, "
        "system_disk_size, tags, task_status, user_name)",
        f"{path}:8: desktops[0].tags.floor: must be a string (got a number)",
        f"{path}:10: behaviour.job_seconds: must be at least 0",
    )


def test_missing_required_keys_point_at_their_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "images:\n  - {id: img, type: gold}\ndesktops:\n  - name: d1\n")
    assert problems_of(path) == (
        f"{path}:1: project_id: is required",
        f"{path}:4: desktops[0].image_id: is required",
    )


def test_semantic_problems_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, """\
project_id: p1
credentials: [{ak: A, sk: s1}, {ak: A, sk: s2}]
images: [{id: img, type: gold}]
desktops:
  - {name: d1, image_id: nope}
  - {name: d1, image_id: img}
  - {name: d3, id: shared, image_id: img}
  - {name: d4, id: shared, image_id: img}
generate:
  - {count: 2, name_prefix: d, start: 3, image_id: img}
""")
    assert problems_of(path) == (
        f"{path}:2: credentials[1].ak: duplicate credential ak (also credentials[0])",
        f"{path}:5: desktops[0].image_id: names an image that is not declared in images",
        f"{path}:6: desktops[1].name: duplicate desktop name (also desktops[0].name)",
        f"{path}:8: desktops[3].id: duplicate desktop id (also desktops[2].id)",
        f"{path}:10: generate[0].name_prefix: duplicate desktop name (also desktops[2].name)",
    )


def test_duplicate_yaml_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "project_id: p1\nproject_id: p2\n")
    assert problems_of(path) == (f"{path}:2: project_id: duplicate key",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ":1: (top level): the file is empty; a fleet needs at least project_id"),
        ("- a\n- b\n", ":1: (top level): must be a mapping with at least project_id (got a list)"),
        ("project_id: [unclosed\n", ":2: (top level): invalid YAML"),
        ("project_id: p\n1: x\n", ":2: (top level): keys must be strings"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}{expected}")


def test_data_without_lines_names_the_source() -> None:
    with pytest.raises(FleetError) as caught:
        load_fleet_data({"project_id": "p", "users": [{"name": "u"}]}, source="inline")
    assert caught.value.problems == ("inline: users[0].domain: is required", "inline: users[0].password: is required")


def test_too_many_generated_desktops() -> None:
    with pytest.raises(FleetError, match=r"generate\[1\]\.count: a fleet holds at most 1000000 desktops"):
        load_fleet_data({**MINIMAL, "generate": [
            {"count": 1_000_000, "name_prefix": "a", "image_id": "img"},
            {"count": 1, "name_prefix": "b", "image_id": "img"},
        ]})


def test_schema_is_draft_2020_12_and_documents_every_property() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema == fleet_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert "description" in sub, f"{where}.{name} has no description"
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(schema, "$")


def test_fixture_files_validate_against_the_schema() -> None:
    import yaml

    validator = jsonschema.Draft202012Validator(fleet_schema())
    for path in FIXTURES.glob("simulator-*.yaml"):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path
