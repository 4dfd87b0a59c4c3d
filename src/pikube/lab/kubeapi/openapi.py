"""OpenAPI documents: what `kubectl explain` reads, and what tells kubectl that the server
validates fields itself. Pure functions of a `Registry` (and of the built-in schemas).

- v3 (`/openapi/v3`, an index of `/openapi/v3/api/v1`, `/openapi/v3/apis/G/V`): per
  group-version, the PATCH operations of its kinds with their `fieldValidation` parameter (so
  kubectl sends `fieldValidation=Strict` and leaves field validation to the server; no
  strategic-merge body is declared, so `kubectl apply` computes its patches from its compiled-in
  types, or as JSON merge patches for custom resources) and the kinds' schemas, each marked
  with `x-kubernetes-group-version-kind` (how `kubectl explain` finds them), with every schema
  they refer to.
- v2 (`/openapi/v2`): one Swagger 2.0 document with every schema, for clients that still read
  it (`kubectl explain --output plaintext-openapiv2`).

Schemas of built-in kinds are Kubernetes v1.31's own, read at run time from the k8s.io/kubernetes
module in the Go module cache (openapi_source, decision 0146). A custom resource's schema is its
CRD version's openAPIV3Schema, with apiVersion, kind and metadata added as the real server adds
them, and is named like the real server's (group reversed: io.metallb.v1beta1.IPAddressPool).

Must not: know about HTTP or the store.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pikube.lab.kubeapi import openapi_source
from pikube.lab.kubeapi.discovery import KUBERNETES_VERSION
from pikube.lab.kubeapi.openapi_source import OBJECT_META, REF_PREFIX, V2_REF_PREFIX, closure
from pikube.lab.kubeapi.resources import Registry, ResourceType

_INFO = {"title": "Kubernetes (pikube lab stand-in)", "version": KUBERNETES_VERSION}


def builtin_schemas() -> Mapping[str, Any]:
    """Kubernetes v1.31's schemas (OpenAPI v3) of the built-in kinds served, and all they refer
    to."""
    return openapi_source.builtins().v3


def schema_name(rt: ResourceType) -> str:
    if not rt.custom:
        return openapi_source.builtins().names[rt.group, rt.version, rt.kind]
    reversed_group = ".".join(reversed(rt.group.split(".")))
    return f"{reversed_group}.{rt.version}.{rt.kind}"


def kind_schema(rt: ResourceType) -> dict[str, Any]:
    """The schema of one kind, as the real server publishes it."""
    if not rt.custom:
        return dict(builtin_schemas()[schema_name(rt)])
    schema = copy.deepcopy(dict(rt.schema or {"type": "object"}))
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {
        "description": "APIVersion defines the versioned schema of this representation of an "
        "object.",
        "type": "string",
    }
    properties["kind"] = {
        "description": "Kind is a string value representing the REST resource this object "
        "represents.",
        "type": "string",
    }
    properties["metadata"] = {"$ref": REF_PREFIX + OBJECT_META}
    schema["x-kubernetes-group-version-kind"] = [
        {"group": rt.group, "kind": rt.kind, "version": rt.version}
    ]
    return schema


def _with_references(schemas: dict[str, Any], builtins: Mapping[str, Any]) -> dict[str, Any]:
    """The schemas, plus every built-in schema they refer to (transitively)."""
    return closure(schemas, {**builtins, **schemas}, REF_PREFIX)


def _path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _patch_operation(rt: ResourceType) -> dict[str, Any]:
    return {
        "patch": {
            "operationId": f"patch{rt.kind}",
            "parameters": [
                {"name": name, "in": "query", "schema": {"type": "string"}}
                for name in ("dryRun", "fieldManager", "fieldValidation", "force")
            ],
            "requestBody": {
                "content": {
                    "application/json-patch+json": {"schema": {"type": "object"}},
                    "application/merge-patch+json": {"schema": {"type": "object"}},
                    "application/apply-patch+yaml": {"schema": {"type": "object"}},
                }
            },
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {
                "group": rt.group,
                "version": rt.version,
                "kind": rt.kind,
            },
        }
    }


def v3_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """One group-version's document: its kinds' PATCH operations and schemas."""
    types = registry.types_in(group, version)
    if not types:
        return None
    paths: dict[str, Any] = {}
    for rt in types:
        prefix = f"/{_path(group, version)}"
        if rt.namespaced:
            paths[f"{prefix}/namespaces/{{namespace}}/{rt.plural}/{{name}}"] = _patch_operation(rt)
        else:
            paths[f"{prefix}/{rt.plural}/{{name}}"] = _patch_operation(rt)
    schemas = _with_references(
        {schema_name(rt): kind_schema(rt) for rt in types}, builtin_schemas()
    )
    return {
        "openapi": "3.0.0",
        "info": _INFO,
        "paths": paths,
        "components": {"schemas": schemas},
    }


def v3_index(registry: Registry) -> dict[str, Any]:
    """Every group-version's document, each with a hash that changes with it (kubectl caches
    documents by that URL)."""
    paths: dict[str, Any] = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            document = v3_document(registry, group, version)
            if document is None:
                continue
            digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()
            key = _path(group, version)
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest[:128].upper()}"}
    return {"paths": paths}


def _v2_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                V2_REF_PREFIX + v.removeprefix(REF_PREFIX)
                if k == "$ref" and isinstance(v, str)
                else _v2_refs(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_v2_refs(v) for v in value]
    return value


def v2_document(types: Iterable[ResourceType]) -> dict[str, Any]:
    """One Swagger 2.0 document with the schemas of every kind served: the built-in kinds' as
    Kubernetes' swagger.json has them, the custom resources' from their CRDs."""
    definitions = dict(openapi_source.builtins().v2)
    definitions.update({schema_name(rt): _v2_refs(kind_schema(rt)) for rt in types if rt.custom})
    return {
        "swagger": "2.0",
        "info": _INFO,
        "paths": {},
        "definitions": dict(sorted(definitions.items())),
    }
