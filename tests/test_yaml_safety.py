"""YAML safety of the manifest loader: only plain data, no duplicate keys, bounded aliases and
file sizes, and no input that makes it raise anything but ManifestError."""

from __future__ import annotations

import importlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.manifest import MAX_ALIAS_NODES, MAX_ALIASES, ManifestError, Problem, load_manifests, parsing, yamlsafe

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
  name: finance
  labels: {team: finance}
spec:
  desktops:
    ids: [fin-1, fin-2]
  image: {id: img-1, type: gold}
  rollout: {batch_size: 10, window: {start: "22:00", end: "06:00", timezone: UTC}}
"""
LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
)


def load(tmp_path: Path, group_text: str) -> tuple[Problem, ...]:
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    (tmp_path / "group.yaml").write_text(group_text)
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path])
    return caught.value.problems


def values(text: str) -> list[Any]:
    return [document.value for document in yamlsafe.documents(text.encode())]


def test_the_c_loader_is_used_when_available() -> None:
    assert issubclass(yamlsafe.ManifestLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert issubclass(yamlsafe.ManifestLoader, yaml.constructor.SafeConstructor)


def test_a_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    start = time.perf_counter()
    (problem,) = load(tmp_path, GROUP.replace("  labels: {team: finance}\n", "  labels:\n" + "".join(
        "    " + line + "\n" for line in LAUGHS.splitlines())))
    assert time.perf_counter() - start < 0.5
    assert problem.line > 5 and f"aliases expand to more than {MAX_ALIAS_NODES} values" in problem.message


def test_alias_references_are_capped_but_scalars_are_free() -> None:
    refs = lambda n: "base: &b [1]\nrefs: [" + ", ".join(["*b"] * n) + "]\n"  # noqa: E731
    assert len(values(refs(MAX_ALIASES))[0]["refs"]) == MAX_ALIASES
    with pytest.raises(yamlsafe.YamlRefused, match=f"more than {MAX_ALIASES} aliases"):
        values(refs(MAX_ALIASES + 1))
    assert len(values("s: &s x\nrefs: [" + ", ".join(["*s"] * 5000) + "]\n")[0]["refs"]) == 5000


def test_a_value_containing_itself_is_refused(tmp_path: Path) -> None:
    (problem,) = load(tmp_path, GROUP.replace("{team: finance}", "&loop {team: *loop}"))
    assert (problem.line, problem.message) == (5, "recursive alias (a value that contains itself)")


def test_merge_keys_work_and_may_be_overridden() -> None:
    (document,) = values("base: &b {x: 1, y: 2}\nthing:\n  <<: *b\n  y: 3\n")
    assert document["thing"] == {"x": 1, "y": 3}


def test_duplicate_keys_are_all_reported_with_both_lines(tmp_path: Path) -> None:
    text = GROUP.replace("  rollout:", "  image: {id: img-2, type: gold}\n  rollout:").replace(
        "batch_size: 10,", "batch_size: 10, batch_size: 20,")
    problems = load(tmp_path, "kind: DesktopGroup\n" + text)
    assert [(p.line, p.field, p.message) for p in problems] == [
        (3, "", "duplicate key 'kind' (first at line 1)"),
        (11, "spec", "duplicate key 'image' (first at line 10)"),
        (12, "spec.rollout", "duplicate key 'batch_size' (first at line 12)"),
    ]


def test_keys_differing_only_in_quoting_are_duplicates() -> None:
    loader_ = yamlsafe.ManifestLoader(b"a: 1\n'a': 2\n1: x\n'1': y\n")
    try:
        assert loader_.get_single_data() == {"a": 2, 1: "x", "1": "y"}
        assert [duplicate.key for duplicate in loader_.duplicates] == ["a"]
    finally:
        loader_.dispose()


@pytest.mark.parametrize("value", [
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:builtins.object {}",
    "!ruby/object:Gem::Installer x",
    "!custom x",
])
def test_tags_beyond_plain_data_are_refused(tmp_path: Path, value: str) -> None:
    (problem,) = load(tmp_path, GROUP.replace("name: finance", f"name: {value}"))
    assert problem.line == 4 and problem.message.startswith("unsupported YAML tag ")


def test_safe_but_unexpected_types_are_schema_problems(tmp_path: Path) -> None:
    (problem,) = load(tmp_path, GROUP.replace("name: finance", "name: !!binary aGk="))
    assert problem.field == "metadata.name" and "expected a string, got a bytes value" in problem.message


@pytest.mark.parametrize("value, message", [
    ("1" * 5000, "invalid value '1111"),
    ("2024-13-45", "invalid value '2024-13-45': month must be in 1..12"),
])
def test_scalars_python_cannot_build_are_located(tmp_path: Path, value: str, message: str) -> None:
    (problem,) = load(tmp_path, GROUP.replace("type: gold}", f"type: gold, order_id: {value}}}"))
    assert problem.line == 9 and message in problem.message


def test_unhashable_keys_are_refused(tmp_path: Path) -> None:
    (problem,) = load(tmp_path, GROUP + "? [a, b]\n: c\n")
    assert problem.line == 11 and "found unhashable key" in problem.message


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    (problem,) = load(tmp_path, GROUP.replace("[fin-1, fin-2]", "[" * 5000 + "]" * 5000))
    assert problem.line == 8 and "syntax error" in problem.message


def test_text_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    (tmp_path / "group.yaml").write_bytes(GROUP.encode().replace(b"fin-2", b"fin-\xff"))
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path])
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (8, 22) and "not readable as YAML text" in problem.message


def test_the_size_limit_is_checked_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = len(GROUP.encode())
    monkeypatch.setattr(parsing, "MAX_FILE_BYTES", limit)
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    (tmp_path / "group.yaml").write_text(GROUP)
    assert load_manifests([tmp_path]).groups[0].name == "finance"  # exactly at the limit
    (tmp_path / "group.yaml").write_text(GROUP + "\n")
    parsed: list[bytes] = []
    real_documents = yamlsafe.documents
    monkeypatch.setattr(yamlsafe, "documents", lambda data: parsed.append(data) or real_documents(data))
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path])
    (problem,) = caught.value.problems
    assert str(problem).endswith("group.yaml:1:1: the file is larger than 0 MiB; split it into several files")
    assert GROUP.encode() + b"\n" not in parsed


def test_the_default_size_limit_refuses_a_big_file(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    (tmp_path / "big.yaml").write_bytes(GROUP.encode() + b"#" * parsing.MAX_FILE_BYTES)
    with pytest.raises(ManifestError, match=r"big\.yaml:1:1: the file is larger than 8 MiB"):
        load_manifests([tmp_path])


@pytest.fixture
def pure_python_yaml(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``yamlsafe`` as it is where libyaml is missing."""
    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    yield importlib.reload(yamlsafe)
    monkeypatch.undo()
    importlib.reload(yamlsafe)


def test_the_pure_python_loader_keeps_every_guard(pure_python_yaml: Any, tmp_path: Path) -> None:
    assert not issubclass(pure_python_yaml.ManifestLoader, getattr(yaml, "CLoader", ()))
    assert [d.value for d in pure_python_yaml.documents(GROUP.encode())] == [yaml.safe_load(GROUP)]
    with pytest.raises(pure_python_yaml.YamlRefused, match="aliases expand"):
        list(pure_python_yaml.documents(LAUGHS.encode()))
    with pytest.raises(yaml.YAMLError, match="unsupported YAML tag"):
        list(pure_python_yaml.documents(b"a: !!python/name:os.system\n"))
    (document,) = pure_python_yaml.documents(b"a: 1\na: 2\n")
    assert [duplicate.first_line for duplicate in document.duplicates] == [1]
    (problem,) = load(tmp_path, GROUP.replace("[fin-1, fin-2]", "[" * 5000 + "]" * 5000))
    assert problem.message == "the YAML is nested too deeply"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mangled_bytes_never_raise_anything_but_manifest_error(tmp_path: Path, data: st.DataObject) -> None:
    original = (SETTINGS + "---\n" + GROUP).encode()
    start = data.draw(st.integers(0, len(original)))
    end = data.draw(st.integers(start, min(len(original), start + 8)))
    yaml_bits = st.sampled_from([b"&a ", b"*a", b"<<: ", b": ", b"- ", b"\t", b"{", b"!!"])
    noise = data.draw(st.binary(max_size=6) | yaml_bits)
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    (directory / "m.yaml").write_bytes(original[:start] + noise + original[end:])
    try:
        load_manifests([directory])
    except ManifestError as error:
        assert all(problem.line >= 1 for problem in error.problems), error.problems


SCALARS = st.one_of(
    st.text(alphabet="0123456789abcdefxXoO.+-_:eE ~nNuUlLtTrRfFsSyY", max_size=12),
    st.sampled_from(["", "~", "null", "Yes", "off", "0x1F", "0o17", "1_000", "2024-01-02", "2024-01-02 10:00:00",
                     ".inf", "-.Inf", ".nan", "1e3", "22:00", "<<", "=", "f3b0c442-98fc-1c14-9afb-4c8996fb9242"]),
)


@given(st.lists(SCALARS, min_size=1, max_size=6))
def test_plain_and_quoted_scalars_load_as_the_safe_loader_loads_them(scalars: list[str]) -> None:
    """The short paths for strings in the manifest loader build exactly what PyYAML's safe
    loader builds, for plain and quoted scalars, keys and list items."""
    plain = "".join(f"- {s}\n" for s in scalars) + "---\n" + "".join(f"{s}: {n}\n" for n, s in enumerate(scalars))
    quoted = "".join(f"- '{s}'\n" for s in scalars)
    for text in (plain, quoted):
        try:  # keys repeated, or not keys at all: yamlsafe refuses or PyYAML does
            yaml_documents = list(yamlsafe.documents(text.encode()))
            expected = list(yaml.load_all(text, Loader=yaml.SafeLoader))
        except (yaml.YAMLError, TypeError):
            continue
        if any(document.duplicates for document in yaml_documents):
            continue
        assert repr([document.value for document in yaml_documents]) == repr(expected)
