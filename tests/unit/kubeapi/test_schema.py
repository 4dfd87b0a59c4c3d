"""Custom resources against their CRD's structural schema (the metallb.io CRDs pikube ships)."""

from __future__ import annotations

from typing import Any

import pytest

from pikube.lab.kubeapi import openapi, schema
from pikube.lab.kubeapi.errors import ApiError
from pikube.lab.kubeapi.resources import Registry
from tests.unit.kubeapi.test_store import _crd, new_store, rt


def _pool_schema() -> dict[str, Any]:
    crd = _crd("ipaddresspools")
    found = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert isinstance(found, dict)
    return found


def _pool(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p", "unknownInMetadata": 1},  # metadata is the server's
        "spec": spec,
    }


def test_values_are_checked_with_the_real_servers_wording() -> None:
    causes = schema.validate(_pool_schema(), _pool({"addresses": "198.51.100.230/32"}))
    assert [(c.field, c.message) for c in causes] == [
        (
            "spec.addresses",
            'Invalid value: "string": spec.addresses in body must be of type array: "string"',
        )
    ]
    missing = schema.validate(_pool_schema(), _pool({"autoAssign": True}))
    assert [(c.field, c.message) for c in missing] == [("spec.addresses", "Required value")]
    typed = schema.validate(_pool_schema(), _pool({"addresses": [], "autoAssign": "yes"}))
    assert [c.field for c in typed] == ["spec.autoAssign"]
    assert schema.validate(_pool_schema(), _pool({"addresses": ["198.51.100.230/32"]})) == []
    enum = {"type": "object", "properties": {"mode": {"type": "string", "enum": ["a", "b"]}}}
    (unsupported,) = schema.validate(enum, {"mode": "c"})
    assert (unsupported.field, unsupported.message) == (
        "mode",
        'Unsupported value: "c": supported values: "a", "b"',
    )
    nulled = _pool({"addresses": ["198.51.100.230/32"], "autoAssign": None})
    assert schema.validate(_pool_schema(), nulled) == []
    schema.prune(_pool_schema(), nulled)
    assert "autoAssign" not in nulled["spec"]  # pruned, then defaulted by the store


def test_unknown_fields_are_found_at_any_depth_and_pruned() -> None:
    obj = _pool(
        {
            "addresses": ["198.51.100.230/32"],
            "adresses": ["typo"],
            "serviceAllocation": {"namespaces": ["a"], "priorty": 1},
        }
    )
    obj["extra"] = True
    assert schema.unknown_fields(_pool_schema(), obj) == [
        "spec.adresses",
        "spec.serviceAllocation.priorty",
        "extra",
    ]
    schema.prune(_pool_schema(), obj)
    assert obj["spec"] == {
        "addresses": ["198.51.100.230/32"],
        "serviceAllocation": {"namespaces": ["a"]},
    }
    assert "extra" not in obj
    assert schema.unknown_fields(_pool_schema(), obj) == []


def test_maps_and_preserved_fields_are_not_unknown() -> None:
    declared = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }
        },
    }
    obj = {"spec": {"labels": {"any": "x"}, "raw": {"whatever": {"deep": 1}}}}
    assert schema.unknown_fields(declared, obj) == []
    assert schema.validate(declared, {"spec": {"labels": {"any": 1}}})[0].field == "spec.labels.any"


def test_the_store_refuses_an_invalid_custom_resource_with_422() -> None:
    store = new_store()
    store.create(
        rt(store, "apiextensions.k8s.io", "v1", "customresourcedefinitions"),
        None,
        _crd("ipaddresspools"),
    )
    pools = rt(store, "metallb.io", "v1beta1", "ipaddresspools")
    with pytest.raises(ApiError) as caught:
        store.create(pools, "default", _pool({"addresses": "198.51.100.230/32"}))
    assert caught.value.code == 422
    assert caught.value.message.startswith(
        'IPAddressPool.metallb.io "p" is invalid: spec.addresses: Invalid value: '
    )
    created = store.create(pools, "default", _pool({"addresses": ["198.51.100.230/32"], "x": 1}))
    assert "x" not in created["spec"]  # pruned, as the real server does


def test_built_in_kinds_are_checked_through_their_references() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx"},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": "nginx"}, "lables": {}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "port": 80}]},
            },
        },
    }
    deployments = Registry().by_kind("apps/v1", "Deployment")
    assert deployments is not None
    assert schema.unknown_fields(
        openapi.kind_schema(deployments), deployment, openapi.builtin_schemas()
    ) == ["spec.template.metadata.lables", "spec.template.spec.containers[0].port"]
    patch = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "x"}]}}}}
    assert (
        schema.unknown_fields(
            openapi.kind_schema(deployments),
            patch,
            openapi.builtin_schemas(),
            patch_directives=True,
        )
        == []
    )


def test_a_crd_with_nested_schemas_has_no_unknown_fields() -> None:
    crds = Registry().by_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    assert crds is not None
    for name in ("ipaddresspools", "l2advertisements", "bgppeers"):
        found = schema.unknown_fields(
            openapi.kind_schema(crds), _crd(name), openapi.builtin_schemas()
        )
        assert found == [], name
