"""How src/pikube/lab/kubeapi/openapi-v1.31.json is made: the Kubernetes v1.31 API schemas of
the built-in kinds the stand-in serves (and every schema they refer to), taken from
kubernetes-validate's copy of the v1.31 OpenAPI (a dev dependency) and put back into OpenAPI
form (`$ref` to components, one type per field, int-or-string as the real server writes it).

Regenerate after adding a built-in kind: `.venv/bin/python -m tests.unit.kubeapi.openapi_data`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]

from pikube.lab.kubeapi.openapi import BUILTIN_SCHEMAS_PATH, REF_PREFIX
from pikube.lab.kubeapi.resources import Registry

SOURCE = (
    Path(kubernetes_validate.__file__).parent
    / "kubernetes-json-schema"
    / "v1.31.0-local"
    / "_definitions.json"
)
_SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "type": "string",
        "format": "int-or-string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
}


def _openapi(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                out[k] = REF_PREFIX + v.removeprefix("#/$defs/")
            elif k == "type" and isinstance(v, list):
                out[k] = next(t for t in v if t != "null")
            elif k == "enum" and key in ("apiVersion", "kind"):
                continue  # added by kubernetes-validate; the real schemas have none there
            elif k == "oneOf" and all(isinstance(o, dict) and set(o) == {"type"} for o in v):
                out["type"] = _openapi(v[0])["type"]
            else:
                out[k] = _openapi(v, k if key == "properties" else "")
        return out
    if isinstance(value, list):
        return [_openapi(v) for v in value]
    return value


def _refs(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "$ref" and isinstance(v, str):
                found.add(v.rsplit("/", 1)[1])
            else:
                _refs(v, found)
    elif isinstance(value, list):
        for v in value:
            _refs(v, found)


def generate() -> dict[str, Any]:
    definitions = json.loads(SOURCE.read_text())["$defs"]
    by_gvk = {
        (g["group"], g["version"], g["kind"]): name
        for name, schema in definitions.items()
        for g in schema.get("x-kubernetes-group-version-kind") or ()
    }
    wanted = [by_gvk[rt.group, rt.version, rt.kind] for rt in Registry().all()]
    wanted.append("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")  # for custom resources
    closure: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in closure:
            continue
        closure.add(name)
        found: set[str] = set()
        _refs(definitions[name], found)
        wanted.extend(found)
    out = {}
    for name in sorted(closure):
        schema = _openapi(definitions[name])
        if name in _SPECIAL:
            schema = {"description": schema.get("description", ""), **_SPECIAL[name]}
        out[name] = schema
    return out


def render(schemas: dict[str, Any]) -> str:
    """One schema per line, sorted: small diffs when Kubernetes changes one."""
    lines = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in schemas.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


if __name__ == "__main__":
    BUILTIN_SCHEMAS_PATH.write_text(render(generate()))
