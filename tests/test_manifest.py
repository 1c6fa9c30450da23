"""The manifest loader: good sets build exactly the expected model values, every bad corpus case
is refused with located problems, the schema and the model agree on defaults, and the fast
validation path agrees with jsonschema."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from corpus import bad_cases, expectations, materialize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource

from reconciler.cloud.client import ID_PATTERN
from reconciler.manifest import ManifestError, Problem, load_manifests
from reconciler.manifest import schema as manifest_schema
from reconciler.manifest.fastcheck import UnsupportedSchema, compile_schema
from reconciler.model import (
    ApiSettings,
    DesktopGroup,
    FailureBudget,
    Image,
    Location,
    Rollout,
    Selector,
    Settings,
    StateSettings,
    Window,
)

SCHEMAS = Path(__file__).parent.parent / "schemas"
SETTINGS = """\
apiVersion: reconciler/v1
kind: Settings
spec:
  project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9
  region: cn-north-4
"""
GROUP = """\
apiVersion: reconciler/v1
kind: DesktopGroup
metadata:
  name: {name}
spec:
  desktops:
    ids: [{ids}]
  image: {{id: img-1, type: gold}}
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def problems_of(paths: list[Any]) -> tuple[Problem, ...]:
    with pytest.raises(ManifestError) as caught:
        load_manifests(paths)
    return caught.value.problems


# --- the corpus ------------------------------------------------------------------------------------

def test_the_corpus_is_big_enough() -> None:
    assert len(bad_cases()) >= 30


@pytest.mark.parametrize("case", bad_cases(), ids=lambda case: case.name)
def test_bad_manifests_are_refused_with_located_problems(case: Path, tmp_path: Path) -> None:
    directory = materialize(case, tmp_path / case.name)
    with pytest.raises(ManifestError) as caught:
        load_manifests([directory])
    text = str(caught.value)
    for expected in expectations(case):
        assert expected in text, f"{case.name}: {expected!r} not in:\n{text}"
    assert any(".yaml:" in line for line in expectations(case)), "expect.txt must name a file and line"
    for problem in caught.value.problems:
        assert problem.line >= 1 and problem.column >= 1, problem
        assert Path(problem.file).parent == directory, problem
    assert "Traceback" not in text


# --- good manifests --------------------------------------------------------------------------------

FULL_GROUP = """\
# yaml-language-server: $schema=../schemas/manifest.schema.json
apiVersion: reconciler/v1
kind: DesktopGroup
metadata:
  name: finance-win11
  labels: {team: finance, cost-centre: "0042"}
spec:
  desktops:
    ids: [3f1c-0001, 9a77-0002]
    selector:
      tags: {dept: finance}
      pool_id: null
      enterprise_project_id: eps-1
      image_id: img-old
      name: "fin-*"
  image:
    id: 2f5b0000-0000-0000-0000-000000000000
    type: private
    os_type: Windows
    order_id: order-9
  rollout:
    batch_size: 25
    max_in_flight: 50
    canary: 2
    max_failures: "12.5%"
    delay_time: 0
    message: "Your desktop will be rebuilt in 10 minutes. Save your work."
    wait: true
    skip_connected: true
    window:
      days: [sat, sun]
      start: "22:00"
      end: "06:00"
      timezone: Asia/Shanghai
  enterprise_project_id: eps-finance
---
"""


def test_a_full_manifest_set_builds_exactly_these_values(tmp_path: Path) -> None:
    settings_text = SETTINGS.replace("region: cn-north-4", "endpoint: https://workspace.example.com:8443/") + (
        "  enterprise_project_id: eps-default\n  state: {backend: local, path: state/s.json}\n"
        "  api: {rate_limit_per_minute: 30, max_concurrent_calls: 2, timeout_seconds: 5, poll_interval_seconds: 1}\n"
    )
    write(tmp_path, {"conf/settings.yaml": settings_text, "groups/finance.yaml": FULL_GROUP,
                     "groups/hr.yml": GROUP.format(name="hr", ids="hr-1")})
    manifests = load_manifests([tmp_path])
    base = str(tmp_path)
    assert manifests.settings == Settings(
        project_id="0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        endpoint="https://workspace.example.com:8443",
        enterprise_project_id="eps-default",
        state=StateSettings(backend="local", path="state/s.json"),
        api=ApiSettings(
            rate_limit_per_minute=30.0, max_concurrent_calls=2, timeout_seconds=5.0, poll_interval_seconds=1.0),
        base_dir=f"{base}/conf",
        source=Location(f"{base}/conf/settings.yaml", 1),
    )
    finance = DesktopGroup(
        name="finance-win11",
        image=Image(id="2f5b0000-0000-0000-0000-000000000000", type="private", os_type="Windows", order_id="order-9"),
        rollout=Rollout(
            batch_size=25, max_in_flight=50, canary=2, max_failures=FailureBudget(count=None, percent=12.5),
            delay_time=0, message="Your desktop will be rebuilt in 10 minutes. Save your work.", wait=True,
            skip_connected=True,
            window=Window(datetime.time(22, 0), datetime.time(6, 0), "Asia/Shanghai", frozenset({5, 6})),
        ),
        ids=("3f1c-0001", "9a77-0002"),
        selector=Selector(tags=(("dept", "finance"),), enterprise_project_id="eps-1", image_id="img-old", name="fin-*"),
        labels=(("cost-centre", "0042"), ("team", "finance")),
        enterprise_project_id="eps-finance",
        source=Location(f"{base}/groups/finance.yaml", 2),
    )
    hr = DesktopGroup(name="hr", image=Image("img-1", "gold"), ids=("hr-1",), enterprise_project_id="eps-default",
                      source=Location(f"{base}/groups/hr.yml", 1))
    assert manifests.groups == (finance, hr)
    assert manifests.group_index == {"finance-win11": finance, "hr": hr}
    assert manifests.files == (f"{base}/conf/settings.yaml", f"{base}/groups/finance.yaml", f"{base}/groups/hr.yml")
    assert manifests.digest.startswith("sha256:") and len(manifests.digest) == 7 + 64


def test_defaults_come_from_the_model_and_groups_inherit_the_enterprise_project(tmp_path: Path) -> None:
    write(tmp_path, {"settings.yaml": SETTINGS, "g.yaml": GROUP.format(name="g", ids="d-1")})
    manifests = load_manifests([tmp_path])
    assert manifests.settings == Settings(
        project_id="0a1b2c3d4e5f60718293a4b5c6d7e8f9", region="cn-north-4", base_dir=str(tmp_path),
        source=Location(str(tmp_path / "settings.yaml"), 1),
    )
    (group,) = manifests.groups
    assert group.rollout == Rollout() and group.labels == () and group.selector is None
    assert group.enterprise_project_id == Settings.__dataclass_fields__["enterprise_project_id"].default


def test_relative_paths_and_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_text = SETTINGS.replace("  region: cn-north-4\n", "  simulator: {fleet: sim/fleet.yaml}\n")
    write(tmp_path, {"settings.yaml": settings_text, "a/g.yaml": GROUP.format(name="g", ids="d-1"),
                     "sim/fleet.yaml": "project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9\n"})
    monkeypatch.chdir(tmp_path)
    manifests = load_manifests([])
    assert manifests.settings.base_dir == "." and manifests.settings.simulator_fleet == "sim/fleet.yaml"
    # The simulator fleet sits among the manifests but is not one.
    assert manifests.files == ("a/g.yaml", "settings.yaml")
    assert manifests.groups[0].source == Location("a/g.yaml", 1)
    assert load_manifests(["."]) == manifests and load_manifests([str(tmp_path)]).digest == manifests.digest


def test_directories_are_searched_recursively_in_order_skipping_hidden_ones(tmp_path: Path) -> None:
    write(tmp_path, {
        "settings.yaml": SETTINGS,
        "b/z.yaml": GROUP.format(name="z", ids="z-1"),
        "a.yml": GROUP.format(name="a", ids="a-1"),
        "b/c/m.yaml": GROUP.format(name="m", ids="m-1"),
        ".reconciler/state.yaml": "not: a manifest",
        ".git/x.yaml": "::",
        "b/.hidden.yaml": "::",
        "notes.txt": "::",
    })
    manifests = load_manifests([tmp_path])
    names = [Path(file).relative_to(tmp_path).as_posix() for file in manifests.files]
    assert names == ["a.yml", "b/c/m.yaml", "b/z.yaml", "settings.yaml"]
    assert [group.name for group in manifests.groups] == ["a", "m", "z"]


def test_files_may_be_named_explicitly_and_are_read_once(tmp_path: Path) -> None:
    write(tmp_path, {"settings.yaml": SETTINGS, "g.manifest": GROUP.format(name="g", ids="d-1")})
    manifests = load_manifests([tmp_path / "settings.yaml", tmp_path / "g.manifest", tmp_path])
    assert [Path(file).name for file in manifests.files] == ["settings.yaml", "g.manifest"]


def test_the_digest_covers_relative_paths_and_bytes_only(tmp_path: Path) -> None:
    files = {"settings.yaml": SETTINGS, "g/g.yaml": GROUP.format(name="g", ids="d-1")}
    first = load_manifests([write(tmp_path / "one", files)]).digest
    assert load_manifests([write(tmp_path / "two", files)]).digest == first
    moved = {"settings.yaml": SETTINGS, "h/g.yaml": files["g/g.yaml"]}
    assert load_manifests([write(tmp_path / "three", moved)]).digest != first
    changed = {**files, "g/g.yaml": files["g/g.yaml"] + "# a comment\n"}
    assert load_manifests([write(tmp_path / "four", changed)]).digest != first


def test_empty_documents_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, {"all.yaml": "---\n" + SETTINGS + "---\n---\n" + GROUP.format(name="g", ids="d-1") + "---\n"})
    manifests = load_manifests([tmp_path])
    assert manifests.settings.source.line == 2 and manifests.groups[0].source.line == 9


def test_missing_paths_and_empty_directories_are_problems(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    problems = problems_of([tmp_path / "nope", tmp_path / "empty"])
    assert [problem.message for problem in problems] == [
        "no manifest files (*.yaml, *.yml) here", "no such file or directory"]


def test_every_problem_is_reported_at_once_across_files(tmp_path: Path) -> None:
    write(tmp_path, {
        "settings.yaml": SETTINGS + "  endpoint: https://x.example.com\n",
        "a.yaml": GROUP.format(name="a", ids="d-1, d-2"),
        "b.yaml": GROUP.format(name="b", ids="d-2, d/3"),
        "c.yaml": "a: [\n",
    })
    problems = problems_of([tmp_path])
    assert [(Path(p.file).name, p.line) for p in problems] == [
        ("b.yaml", 7), ("c.yaml", 2), ("settings.yaml", 6)]
    assert "no Settings" not in str(ManifestError(problems))


def test_a_file_that_does_not_parse_may_hold_the_settings(tmp_path: Path) -> None:
    write(tmp_path, {"g.yaml": GROUP.format(name="g", ids="d-1"), "s.yaml": SETTINGS + "  api: {\n"})
    (problem,) = problems_of([tmp_path])
    assert Path(problem.file).name == "s.yaml" and "syntax error" in problem.message


def test_one_desktop_in_two_groups_names_both(tmp_path: Path) -> None:
    write(tmp_path, {"settings.yaml": SETTINGS, "a.yaml": GROUP.format(name="a", ids="d-1, d-2"),
                     "b.yaml": "\n" + GROUP.format(name="b", ids="d-3, d-2")})
    (problem,) = problems_of([tmp_path])
    assert (Path(problem.file).name, problem.line, problem.field) == ("b.yaml", 8, "spec.desktops.ids[1]")
    assert f"'a' ({tmp_path}/a.yaml:1) and 'b' ({tmp_path}/b.yaml:2)" in problem.message


def test_error_text_formats() -> None:
    one = Problem("a.yaml", 3, 5, "spec.x", "bad")
    assert str(one) == "a.yaml:3:5: spec.x: bad" and str(ManifestError([one])) == "a.yaml:3:5: spec.x: bad"
    assert str(Problem("a.yaml", 0, 0, "", "no such file or directory")) == "a.yaml: no such file or directory"
    two = ManifestError([Problem("b.yaml", 1, 1, "", "y"), one, one])
    assert str(two) == "2 problems in the manifests:\na.yaml:3:5: spec.x: bad\nb.yaml:1:1: y"
    many = ManifestError(Problem("a.yaml", line, 1, "", "z") for line in range(1, 151))
    assert len(many.problems) == 150 and str(many).endswith("\n... and 50 more problems")


# --- the schemas -------------------------------------------------------------------------------------

def _registry() -> Registry:
    return Registry().with_resources(
        (name, Resource.from_contents(json.loads((SCHEMAS / name).read_text())))
        for name in ("manifest.schema.json", "settings.schema.json"))


def test_the_schema_files_validate_whole_documents_through_referencing() -> None:
    manifest = json.loads((SCHEMAS / "manifest.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(manifest)
    plain = jsonschema.Draft202012Validator(manifest, registry=_registry())  # what an editor does
    settings_doc = yaml.safe_load(SETTINGS)
    assert plain.is_valid(settings_doc) and plain.is_valid(yaml.safe_load(FULL_GROUP.split("---")[0]))
    settings_doc["spec"]["regoin"] = "x"
    assert [error.validator for error in plain.iter_errors(settings_doc)] == ["additionalProperties"]


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


@pytest.mark.parametrize("name", ["manifest.schema.json", "settings.schema.json"])
def test_every_field_is_documented(name: str) -> None:
    root = json.loads((SCHEMAS / name).read_text())
    resolver = _registry().resolver(base_uri=name)
    assert root.get("description")
    for path, node in _walk(root):
        conditions = ("/if", "/else", "/anyOf", "/oneOf")  # rules across fields name fields documented above
        if any(part in path for part in conditions) or path.endswith("/properties"):  # and a field named "properties"
            continue
        for field_name, sub in node.get("properties", {}).items():
            assert _resolved(sub, resolver)[0].get("description"), f"{name}: {path}/{field_name}"


def test_the_id_pattern_is_the_clients() -> None:
    settings_schema = json.loads((SCHEMAS / "settings.schema.json").read_text())
    assert settings_schema["$defs"]["id"]["pattern"] == ID_PATTERN.pattern


def _resolved(schema: dict[str, Any], resolver: Any) -> tuple[dict[str, Any], Any]:
    while "$ref" in schema:
        found = resolver.lookup(schema["$ref"])
        schema = {**found.contents, **{k: v for k, v in schema.items() if k != "$ref"}}
        resolver = found.resolver
    return schema, resolver


CREATE = ("rollout", "state", "api")  # optional objects whose absence means "all defaults"


def fill_defaults(instance: dict[str, Any], schema: dict[str, Any], resolver: Any) -> int:
    """Write every schema default into ``instance``; returns how many were written."""
    schema, resolver = _resolved(schema, resolver)
    count = 0
    for name, sub in schema.get("properties", {}).items():
        resolved, sub_resolver = _resolved(sub, resolver)
        if name not in instance and "default" in resolved:
            instance[name] = copy.deepcopy(resolved["default"])
            count += 1
        elif name not in instance and name in CREATE:
            instance[name] = {}
        if isinstance(instance.get(name), dict):
            count += fill_defaults(instance[name], resolved, sub_resolver)
    return count


def test_schema_defaults_are_the_model_defaults(tmp_path: Path) -> None:
    resolver = _registry().resolver(base_uri="manifest.schema.json")
    settings_doc = yaml.safe_load(SETTINGS)
    group_doc = yaml.safe_load(GROUP.format(name="g", ids="d-1"))
    group_doc["spec"]["desktops"]["selector"] = {"name": "g-*"}
    window_group = yaml.safe_load(GROUP.format(name="w", ids="w-1"))
    window_group["spec"]["rollout"] = {"window": {"start": "01:00", "end": "02:00", "timezone": "UTC"}}
    docs = [settings_doc, group_doc, window_group]
    write(tmp_path / "plain", {"m.yaml": yaml.safe_dump_all(docs)})
    filled = copy.deepcopy(docs)
    count = fill_defaults(filled[0], {"$ref": "settings.schema.json"}, resolver)
    count += sum(fill_defaults(doc, {"$ref": "#/$defs/desktopGroup"}, resolver) for doc in filled[1:])
    write(tmp_path / "filled", {"m.yaml": yaml.safe_dump_all(filled)})
    assert count >= 25 and filled[2]["spec"]["rollout"]["window"]["days"] == []
    plain, explicit = load_manifests([tmp_path / "plain"]), load_manifests([tmp_path / "filled"])
    strip = lambda group: dataclasses.replace(group, source=Location("x"))  # noqa: E731
    assert list(map(strip, plain.groups)) == list(map(strip, explicit.groups))
    assert dataclasses.replace(plain.settings, source=explicit.settings.source, base_dir=".") == \
        dataclasses.replace(explicit.settings, base_dir=".")
    assert plain.groups[0].rollout == Rollout() and plain.settings.api == ApiSettings()
    assert plain.settings.state == StateSettings() and plain.groups[0].selector == Selector(name="g-*")


@pytest.mark.parametrize("model, schema_path", [
    (Rollout, "manifest.schema.json#/$defs/rollout"),
    (ApiSettings, "settings.schema.json#/$defs/spec/properties/api"),
    (StateSettings, "settings.schema.json#/$defs/spec/properties/state"),
    (Image, "manifest.schema.json#/$defs/image"),
    (Selector, "manifest.schema.json#/$defs/selector"),
])
def test_every_model_default_has_a_schema_default(model: type, schema_path: str) -> None:
    schema, resolver = _resolved({"$ref": schema_path}, _registry().resolver(base_uri="manifest.schema.json"))
    for field in dataclasses.fields(model):
        if field.default is not dataclasses.MISSING:
            assert "default" in _resolved(schema["properties"][field.name], resolver)[0], field.name


# --- the fast paths agree with jsonschema -----------------------------------------------------------

ID_CHARS = st.sampled_from(list("abcXYZ019-_.:/ ,\né"))


@settings(max_examples=300)
@given(st.lists(st.one_of(st.text(ID_CHARS, max_size=6), st.integers(), st.none()), max_size=8))
def test_the_ids_shortcut_accepts_exactly_what_the_schema_accepts(ids: list[Any]) -> None:
    document = yaml.safe_load(GROUP.format(name="g", ids="d-1"))
    document["spec"]["desktops"]["ids"] = ids
    document["spec"]["desktops"]["selector"] = {"name": "g-*"}  # so that no ids is a valid group
    valid = manifest_schema.validator().is_valid(document)
    assert manifest_schema.ids_acceptable(ids) == valid
    assert (manifest_schema.validation_errors(document) == []) == valid


def test_the_ids_shortcut_covers_the_whole_ids_schema() -> None:
    # ids_acceptable re-implements exactly this schema; a new keyword here needs it updated.
    ids = manifest_schema.schema()["$defs"]["desktops"]["properties"]["ids"]
    assert set(ids) == {"description", "type", "uniqueItems", "items", "default"} and ids["uniqueItems"] is True
    assert ids["items"] == {"type": "string", "$ref": "settings.schema.json#/$defs/id"}


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 500) | st.floats(allow_nan=True) | st.text(max_size=5)
    | st.sampled_from(["gold", "22:00", "10%", "Settings", "DesktopGroup", "reconciler/v1", "UTC", "a-1"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, prefix + (index,))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    value[path[0]] = _replace(value[path[0]], path[1:], new)
    return value


FULL_SETTINGS = SETTINGS + """\
  endpoint: null
  simulator: null
  enterprise_project_id: eps-default
  state: {backend: local, path: state/s.json}
  api: {rate_limit_per_minute: 30, max_concurrent_calls: 2, timeout_seconds: 5.5, poll_interval_seconds: 1}
"""
VALID_DOCUMENTS = [yaml.safe_load(FULL_SETTINGS), yaml.safe_load(FULL_GROUP.split("---")[0])]


@pytest.mark.parametrize("which, path, value", [
    (0, ("spec", "project_id"), "0a1b2c3d4e5f60718293a4b5c6d7e8f9\n"),
    (0, ("spec", "api", "timeout_seconds"), float("nan")),
    (0, ("spec", "api", "max_concurrent_calls"), 4.0),
    (1, ("spec", "desktops", "ids", 0), "d-1\n"),
    (1, ("spec", "rollout", "batch_size"), 5.0),
    (1, ("spec", "rollout", "delay_time"), True),
])
def test_the_stricter_rules_hold_in_every_schema_file(which: int, path: tuple[Any, ...], value: Any) -> None:
    document = _replace(copy.deepcopy(VALID_DOCUMENTS[which]), path, value)
    assert manifest_schema.validation_errors(document) and not manifest_schema.fast_check()(document)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(VALID_DOCUMENTS))), st.data(), JSONISH)
def test_the_compiled_check_agrees_with_jsonschema(which: int, data: st.DataObject, new: Any) -> None:
    document = copy.deepcopy(VALID_DOCUMENTS[which])
    path = data.draw(st.sampled_from(_paths(document)))
    document = _replace(document, path, new)
    assert manifest_schema.fast_check()(document) == manifest_schema.validator().is_valid(document)


def test_the_compiled_check_refuses_keywords_it_does_not_know() -> None:
    with pytest.raises(UnsupportedSchema):
        compile_schema({"type": "array", "contains": {"const": 1}}, _registry().resolver())


# --- properties: random valid groups round-trip, random corruptions are located ------------------

# PyYAML folds the YAML 1.1 line breaks NEL, LS and PS when it writes them: not a loader matter.
TEXT = st.characters(blacklist_characters="\x85\u2028\u2029", blacklist_categories=("Cs",))
KEY_TEXT = st.characters(blacklist_characters=",=\x85\u2028\u2029", blacklist_categories=("Cs",))
IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)
MAYBE_ID = st.none() | IDS
TIMES = st.builds(datetime.time, st.integers(0, 23), st.integers(0, 59))
WINDOWS = st.builds(
    Window, start=TIMES, end=TIMES, timezone=st.sampled_from(["UTC", "Asia/Shanghai", "Europe/Paris"]),
    days=st.frozensets(st.integers(0, 6)),
)
BUDGETS = st.builds(FailureBudget, count=st.integers(0, 10**6)) | st.builds(
    FailureBudget, count=st.none(), percent=st.integers(0, 200).map(lambda half: half / 2))
ROLLOUTS = st.builds(
    Rollout, batch_size=st.integers(1, 100), max_in_flight=st.none() | st.integers(1, 10**6),
    canary=st.integers(0, 10**6), max_failures=BUDGETS, delay_time=st.none() | st.integers(0, 2**31 - 1),
    message=st.none() | st.text(TEXT, max_size=400), wait=st.booleans(), skip_connected=st.booleans(),
    window=st.none() | WINDOWS,
)
PAIRS = st.dictionaries(st.text(KEY_TEXT, min_size=1, max_size=12), st.text(KEY_TEXT, max_size=12), max_size=3).map(
    lambda mapping: tuple(sorted(mapping.items())))
SELECTORS = st.builds(
    Selector, tags=PAIRS, pool_id=MAYBE_ID, enterprise_project_id=MAYBE_ID, image_id=MAYBE_ID,
    name=st.none() | st.text(TEXT, min_size=1, max_size=20),
).filter(lambda selector: any(dataclasses.astuple(selector)))
GROUPS = st.builds(
    DesktopGroup,
    name=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True),
    image=st.builds(Image, id=IDS, type=st.sampled_from(["gold", "private", "market"]),
                    os_type=st.sampled_from([None, "Windows", "Linux", "Other"]), order_id=MAYBE_ID),
    rollout=ROLLOUTS, ids=st.lists(IDS, unique=True, max_size=5).map(tuple), selector=st.none() | SELECTORS,
    labels=PAIRS, enterprise_project_id=st.sampled_from(["0", "eps-1"]),
).filter(lambda group: group.ids or group.selector)


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def rollout_document(rollout: Rollout) -> dict[str, Any]:
    document = {field.name: getattr(rollout, field.name) for field in dataclasses.fields(rollout)}
    budget = rollout.max_failures
    document["max_failures"] = f"{budget.percent:g}%" if budget.percent is not None else budget.count
    if rollout.window is not None:
        window = rollout.window
        document["window"] = {
            "start": window.start.strftime("%H:%M"), "end": window.end.strftime("%H:%M"),
            "timezone": window.timezone, "days": [DAY_NAMES[day] for day in sorted(window.days)],
        }
    return document


def group_document(group: DesktopGroup, inherit: bool) -> dict[str, Any]:
    desktops: dict[str, Any] = {"ids": list(group.ids)}
    if group.selector is not None:
        desktops["selector"] = {**dataclasses.asdict(group.selector), "tags": dict(group.selector.tags)}
    spec = {"desktops": desktops, "image": dataclasses.asdict(group.image), "rollout": rollout_document(group.rollout)}
    if not inherit:
        spec["enterprise_project_id"] = group.enterprise_project_id
    return {"apiVersion": "reconciler/v1", "kind": "DesktopGroup",
            "metadata": {"name": group.name, "labels": dict(group.labels)}, "spec": spec}


def dump(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, allow_unicode=True, sort_keys=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(GROUPS, min_size=1, max_size=4, unique_by=lambda group: group.name), st.booleans(), st.data())
def test_random_valid_groups_round_trip(tmp_path: Path, groups: list[DesktopGroup], inherit: bool, data: Any) -> None:
    all_ids = [desktop for group in groups for desktop in group.ids]
    if len(set(all_ids)) != len(all_ids):
        return  # a desktop may belong to one group only: a different test
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    write(directory, {"settings.yaml": SETTINGS, "groups.yaml": dump([group_document(g, inherit) for g in groups])})
    loaded = load_manifests([directory])
    expected = sorted(
        (dataclasses.replace(g, enterprise_project_id="0") if inherit else g for g in groups), key=lambda g: g.name)
    assert [dataclasses.replace(g, source=Location("<unknown>")) for g in loaded.groups] == expected


def _mutation_targets(document: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [path for path in _paths(document) if len(path) >= 2 and path[0] in ("metadata", "spec")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(GROUPS, st.sampled_from(["retype", "unknown-key", "drop-required"]), st.data())
def test_random_corruptions_are_reported_with_a_line(tmp_path: Path, group: DesktopGroup, how: str, data: Any) -> None:
    document = group_document(group, inherit=True)
    if how == "drop-required":
        path = data.draw(st.sampled_from([("apiVersion",), ("kind",), ("metadata",), ("spec",), ("metadata", "name"),
                                          ("spec", "desktops"), ("spec", "image"), ("spec", "image", "id")]))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
    else:
        path = data.draw(st.sampled_from(_mutation_targets(document)))
        target = document
        for part in path[:-1]:
            target = target[part]
        value = target[path[-1]]
        if how == "unknown-key" and isinstance(value, dict):
            value["bogus_field"] = 1  # an unknown field, or a label/tag that is not a string
        elif isinstance(value, dict):
            target[path[-1]] = [1, 2]
        elif isinstance(value, list):
            target[path[-1]] = {"x": 1}
        else:
            target[path[-1]] = {"bogus": [1]}
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    write(directory, {"settings.yaml": SETTINGS, "group.yaml": "# corrupted\n" + dump([document])})
    problems = problems_of([directory])
    assert problems and all(p.line >= 2 and p.file.endswith("group.yaml") for p in problems), problems
