"""OpenAPI documents of the API stand-in: schemas of built-in kinds and CRDs, v2 and v3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pikube.lab.kubeapi import fieldvalidation, openapi, openapi_proto, openapi_source
from pikube.lab.kubeapi.openapi_source import OBJECT_META, REF_PREFIX
from pikube.lab.kubeapi.resources import BUILTIN_TYPES, Registry, types_from_crd
from tests.unit.kubeapi.test_store import _crd

KUBEAPI = Path(openapi.__file__).parent


def test_built_in_schemas_are_kubernetes_own_read_from_its_module() -> None:
    spec = openapi_source.spec_dir()
    assert spec is not None, "the k8s.io/kubernetes module is not in the Go module cache"
    assert spec.parent.parent.name == "kubernetes@v1.31.5"
    builtins = openapi_source.builtins()
    assert builtins.complete
    published = json.loads((spec / "v3" / "apis__apps__v1_openapi.json").read_text())
    name = "io.k8s.api.apps.v1.Deployment"
    assert builtins.v3[name] == published["components"]["schemas"][name]
    swagger = json.loads((spec / "swagger.json").read_text())["definitions"]
    assert builtins.v2[name] == swagger[name]
    assert {(rt.group, rt.version, rt.kind) for rt in BUILTIN_TYPES} == set(builtins.names)
    # not copied into pikube (decision 0146)
    assert not list(KUBEAPI.glob("*.json"))


def test_without_the_module_the_kinds_are_still_explained(tmp_path: Path) -> None:
    assert openapi_source.spec_dir(tmp_path) is None
    made = openapi_source.load(None, BUILTIN_TYPES)
    assert not made.complete
    service = made.v3[made.names["", "v1", "Service"]]
    assert service["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Service", "version": "v1"}
    ]
    assert "k8s.io/kubernetes module" in service["description"]
    assert service["x-kubernetes-preserve-unknown-fields"]  # nothing is refused that it lacks
    assert made.v2[made.names["apps", "v1", "Deployment"]]["properties"]["metadata"] == {
        "$ref": "#/definitions/" + OBJECT_META
    }


def _registry_with_pools() -> Registry:
    registry = Registry()
    registry.set_crd("ipaddresspools.metallb.io", types_from_crd(_crd("ipaddresspools")))
    return registry


def test_v3_documents_carry_each_kinds_schema_and_all_it_refers_to() -> None:
    document = openapi.v3_document(Registry(), "", "v1")
    assert document is not None
    schemas = document["components"]["schemas"]
    service = schemas["io.k8s.api.core.v1.Service"]
    assert service["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Service", "version": "v1"}
    ]
    assert service["properties"]["spec"]["allOf"] == [  # as kube-apiserver v1.31 writes it
        {"$ref": REF_PREFIX + "io.k8s.api.core.v1.ServiceSpec"}
    ]
    assert OBJECT_META in schemas
    referenced: set[str] = set()
    openapi_source._refs(schemas, REF_PREFIX, referenced)
    assert referenced <= set(schemas)  # no dangling reference


def test_a_crd_kind_is_published_under_the_real_servers_name() -> None:
    document = openapi.v3_document(_registry_with_pools(), "metallb.io", "v1beta1")
    assert document is not None
    schemas = document["components"]["schemas"]
    pool = schemas["io.metallb.v1beta1.IPAddressPool"]
    assert pool["x-kubernetes-group-version-kind"] == [
        {"group": "metallb.io", "kind": "IPAddressPool", "version": "v1beta1"}
    ]
    assert pool["properties"]["metadata"] == {"$ref": REF_PREFIX + OBJECT_META}
    assert pool["properties"]["spec"]["required"] == ["addresses"]
    assert OBJECT_META in schemas
    patches = [p["patch"] for p in document["paths"].values()]
    assert any(q["name"] == "fieldValidation" for q in patches[0]["parameters"])


def test_v2_refers_to_definitions() -> None:
    swagger = openapi.v2_document(_registry_with_pools().all())
    assert swagger["swagger"] == "2.0"
    definitions = swagger["definitions"]
    assert "io.metallb.v1beta1.IPAddressPool" in definitions
    assert definitions["io.k8s.api.core.v1.Service"]["properties"]["spec"]["$ref"] == (
        "#/definitions/io.k8s.api.core.v1.ServiceSpec"
    )


def test_the_protobuf_form_writes_gnostics_field_numbers() -> None:
    # Schema{type: TypeItem{value: "string"} (22), description (4)}
    assert openapi_proto.schema({"type": "string", "description": "d"}) == (
        b"\xb2\x01\x08\x0a\x06string" + b"\x22\x01d"
    )
    # Document{swagger (1), info (2) {title, version}, definitions (9) {NamedSchema{name, value}}}
    encoded = openapi_proto.document(
        {"swagger": "2.0", "info": {"title": "t", "version": "v"}, "definitions": {"A": {}}}
    )
    assert (
        encoded
        == b"\x0a\x032.0" + b"\x12\x06\x0a\x01t\x12\x01v" + b"\x4a\x07\x0a\x05\x0a\x01A\x12\x00"
    )


def test_without_the_module_the_server_publishes_the_kinds_and_refuses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = openapi_source.load(None, BUILTIN_TYPES)
    monkeypatch.setattr(openapi_source, "builtins", lambda: made)
    registry = Registry()
    document = openapi.v3_document(registry, "", "v1")
    assert document is not None
    assert "io.k8s.api.core.v1.Service" in document["components"]["schemas"]
    assert "io.metallb" not in json.dumps(openapi.v2_document(registry.all()))
    service = registry.by_kind("v1", "Service")
    assert service is not None
    body = {"apiVersion": "v1", "kind": "Service", "spec": {"selectr": {}}}
    assert fieldvalidation.check(service, body, "Strict") == []
