"""fieldValidation as kube-apiserver applies it: creates refused with 400, patches with 422 on
the field `patch` (the patched object as JSON, or a strategic patch as Go prints a map)."""

from __future__ import annotations

import json

import pytest

from pikube.lab.kubeapi import fieldvalidation
from pikube.lab.kubeapi.errors import ApiError
from pikube.lab.kubeapi.resources import Registry, ResourceType
from pikube.lab.kubeapi.store import PatchType


def _deployment() -> ResourceType:
    rt = Registry().by_kind("apps/v1", "Deployment")
    assert rt is not None
    return rt


def test_go_prints_maps_sorted_and_numbers_as_float64() -> None:
    patch = {"spec": {"replicas": 3, "minReadySecs": 5, "x": [1.5, None, True, "a"]}}
    assert (
        fieldvalidation.go_value(patch)
        == "map[spec:map[minReadySecs:5 replicas:3 x:[1.5 <nil> true a]]]"
    )
    assert [fieldvalidation.go_value(n) for n in (1000000, 123456, 0.00001, -2)] == [
        "1e+06",
        "123456",
        "1e-05",
        "-2",
    ]


def test_a_create_with_an_unknown_field_is_a_bad_request() -> None:
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replica": 2}}
    with pytest.raises(ApiError) as refused:
        fieldvalidation.check(_deployment(), body, "Strict")
    assert (refused.value.code, refused.value.message) == (
        400,
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.replica"',
    )
    assert fieldvalidation.check(_deployment(), body, "Warn") == ['unknown field "spec.replica"']
    assert fieldvalidation.check(_deployment(), body, "Ignore") == []


def test_patches_are_refused_on_the_field_patch() -> None:
    with pytest.raises(ApiError) as strategic:
        fieldvalidation.check(
            _deployment(), {"spec": {"minReadySecs": 5}}, "Strict", PatchType.STRATEGIC
        )
    assert strategic.value.code == 422
    (cause,) = strategic.value.causes
    assert (cause.field, cause.message) == (
        "patch",
        'Invalid value: "map[spec:map[minReadySecs:5]]": strict decoding error: '
        'unknown field "spec.minReadySecs"',
    )
    current = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    with pytest.raises(ApiError) as merged:
        fieldvalidation.check(
            _deployment(), {"spec": {"replica": 1}}, "Strict", PatchType.MERGE, current
        )
    (cause,) = merged.value.causes
    patched = json.dumps({**current, "spec": {"replica": 1}}, sort_keys=True, separators=(",", ":"))
    assert cause.message.startswith(f"Invalid value: {json.dumps(patched)}: strict decoding error")
    assert merged.value.status()["message"].startswith(' "" is invalid: patch: Invalid value: ')
