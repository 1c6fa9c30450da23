"""The plain-type check of a state document agrees with jsonschema on the state schema: a state
the check accepts is valid, and one it refuses is refused by jsonschema too (which names the field)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
from hypothesis import given
from hypothesis import strategies as st

from reconciler.state.validate import schema_problem, state_is_valid, state_schema

VALID: dict[str, Any] = {
    "format_version": 1,
    "lineage": "3b0f5a8e-0000-4000-8000-000000000001",
    "serial": 3,
    "desktops": {
        "d-1": {
            "group": "finance", "image_id": "img-old", "name": "fin-001", "updated_at": "2026-11-27T10:00:00+00:00",
            "job": {"id": "job-1", "status": "FAILED", "image_id": "img-new", "submitted_at": "2026-11-27T10:00:00+00:00",
                    "finished_at": "2026-11-27T10:05:00Z", "fail_reason": "disk", "batch_id": "b-1"},
        },
        "d-2": {"group": "finance", "image_id": None, "updated_at": ""},
    },
    "jobs": {
        "job-1": {"group": "finance", "image_id": "img-new", "desktop_ids": ["d-1"], "submitted_at": "2026-11-27T10:00:00+00:00",
                  "status": "FAILED", "finished_at": "2026-11-27T10:05:00.5+02:00"},
    },
}
PATHS = [
    ("format_version",), ("lineage",), ("serial",), ("desktops",), ("jobs",),
    ("desktops", "d-1"), ("desktops", "d-1", "group"), ("desktops", "d-1", "image_id"), ("desktops", "d-1", "name"),
    ("desktops", "d-1", "updated_at"), ("desktops", "d-1", "job"), ("desktops", "d-1", "job", "id"),
    ("desktops", "d-1", "job", "status"), ("desktops", "d-1", "job", "image_id"), ("desktops", "d-1", "job", "submitted_at"),
    ("desktops", "d-1", "job", "finished_at"), ("desktops", "d-1", "job", "fail_reason"), ("desktops", "d-1", "job", "batch_id"),
    ("jobs", "job-1"), ("jobs", "job-1", "group"), ("jobs", "job-1", "image_id"), ("jobs", "job-1", "desktop_ids"),
    ("jobs", "job-1", "submitted_at"), ("jobs", "job-1", "status"), ("jobs", "job-1", "finished_at"),
]
VALUES = (
    st.none() | st.booleans() | st.integers(-2, 3) | st.floats(allow_nan=False)
    | st.sampled_from(["", "abc", "UNKNOWN", "BOGUS", "SUCCESS", "2026-11-27T10:00:00", "2026-11-27T10:00:00+00:00", "2026-11-27T10:00:00Z\n"])
    | st.lists(st.sampled_from(["d-1", 7]), max_size=2) | st.just({})
)


@given(path=st.sampled_from(PATHS), value=VALUES, remove=st.booleans(), extra=st.booleans())
def test_the_plain_check_agrees_with_the_schema(path: tuple[str, ...], value: Any, remove: bool, extra: bool) -> None:
    document = copy.deepcopy(VALID)
    node = document
    for key in path[:-1]:
        node = node[key]
    if remove:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    if extra and isinstance(node, dict):
        node["surprise"] = 1
    schema_says = jsonschema.Draft202012Validator(state_schema()).is_valid(document)
    if state_is_valid(document):
        assert schema_says
    else:
        problem = schema_problem(document)
        if schema_says:  # the one disagreement: Python's "$" lets a timestamp's final newline through
            assert problem == "it does not match the state schema" and str(value).endswith("\n")
        else:
            assert problem is not None and problem.startswith("field ")


def test_the_sample_is_valid() -> None:
    assert state_is_valid(VALID) and schema_problem(VALID) is None
