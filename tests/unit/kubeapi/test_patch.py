"""The three PATCH flavours, against the RFCs' examples and kubectl's strategic patches."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pikube.lab.kubeapi.patch import (
    PatchError,
    json_patch,
    merge_key_for,
    merge_patch,
    strategic_merge_patch,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


def test_merge_patch_follows_rfc_7386_example() -> None:
    target = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


@given(json_values, json_values)
def test_merge_patch_never_modifies_its_inputs(target: Any, patch: Any) -> None:
    before = (copy.deepcopy(target), copy.deepcopy(patch))
    merge_patch(target, patch)
    assert (target, patch) == before


@given(st.dictionaries(st.text(max_size=3), json_values, max_size=4))
def test_an_empty_merge_patch_changes_nothing(target: dict[str, Any]) -> None:
    assert merge_patch(target, {}) == target


def test_json_patch_applies_each_operation_of_rfc_6902() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "remove", "path": "/a/b/1"},
        {"op": "replace", "path": "/c", "value": "y"},
        {"op": "copy", "from": "/c", "path": "/d"},
        {"op": "move", "from": "/d", "path": "/e~1f"},
        {"op": "test", "path": "/e~1f", "value": "y"},
    ]
    assert json_patch(doc, ops) == {"a": {"b": [0, 2, 3]}, "c": "y", "e/f": "y"}
    assert doc == {"a": {"b": [1, 2]}, "c": "x"}


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"op": "test", "path": "/c", "value": "nope"}], "test failed"),
        ([{"op": "remove", "path": "/missing"}], "does not exist"),
        ([{"op": "replace", "path": "/a/b/9", "value": 1}], "out of range"),
        ([{"op": "frobnicate", "path": "/c"}], "unknown op"),
        ({"op": "add"}, "must be a list"),
    ],
)
def test_json_patch_failures_name_the_problem(ops: Any, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        json_patch({"a": {"b": [1]}, "c": "x"}, ops)


def _deployment() -> dict[str, Any]:
    return {
        "metadata": {"name": "nginx", "finalizers": ["a"]},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}],
                        },
                        {"name": "sidecar", "image": "busybox"},
                    ]
                }
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
        },
    }


def test_strategic_patch_merges_containers_by_name_and_ports_by_container_port() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.28",
                            "ports": [{"containerPort": 443}],
                            "env": [{"name": "B", "value": "2"}],
                        }
                    ]
                }
            }
        }
    }
    result = strategic_merge_patch(_deployment(), patch)
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx", "sidecar"]
    assert containers[0]["image"] == "nginx:1.28"
    assert containers[0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"},
        {"containerPort": 443},
    ]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]


def test_strategic_patch_understands_kubectl_directives() -> None:
    patch = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
        "spec": {
            "$retainKeys": ["template", "strategy"],
            "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
                    "containers": [{"name": "nginx", "$patch": "delete"}],
                }
            },
        },
    }
    result = strategic_merge_patch(_deployment(), patch)
    assert result["metadata"]["finalizers"] == []
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["sidecar"]


def test_strategic_patch_replaces_lists_without_a_merge_key_and_unions_finalizers() -> None:
    target = {"metadata": {"finalizers": ["a"]}, "spec": {"tolerations": [{"key": "x"}]}}
    patch = {"metadata": {"finalizers": ["b", "a"]}, "spec": {"tolerations": [{"key": "y"}]}}
    result = strategic_merge_patch(target, patch)
    assert result == {
        "metadata": {"finalizers": ["a", "b"]},
        "spec": {"tolerations": [{"key": "y"}]},
    }


def test_strategic_patch_replace_directive_on_a_map() -> None:
    target = {"spec": {"selector": {"app": "a", "tier": "web"}}}
    patch = {"spec": {"selector": {"$patch": "replace", "app": "b"}}}
    assert strategic_merge_patch(target, patch) == {"spec": {"selector": {"app": "b"}}}


def test_merge_keys_depend_on_where_the_list_is() -> None:
    assert merge_key_for(("spec", "ports")) == "port"  # a Service's
    assert merge_key_for(("spec", "template", "spec", "containers", "ports")) == "containerPort"
    assert merge_key_for(("status", "conditions")) == "type"
    assert merge_key_for(("status", "addresses")) == "type"
    assert merge_key_for(("ports",)) is None  # an EndpointSlice's: replaced whole
