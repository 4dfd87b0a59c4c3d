"""Where the built-in kinds' OpenAPI schemas come from: Kubernetes' own documents, read at run time
from the k8s.io/kubernetes module in pikube's Go module cache (decision 0146).

The module (the one the lab's Kubernetes and kubectl are built from, at the version the stand-in
reports) carries the documents kube-apiserver publishes: `api/openapi-spec/v3/*_openapi.json`
(one per group-version, OpenAPI 3) and `api/openapi-spec/swagger.json` (Swagger 2.0). The
stand-in takes from them the schemas of the kinds it serves and of everything they refer to;
nothing of them is copied into pikube.

- `spec_dir()`: the documents' directory, or None when the module is not in the cache.
- `fetch()`: puts the module into the cache (the go command, checked against the kubernetes
  wrapper's go.sum); `pikube lab up` calls it before starting the stand-in, since the stand-in
  runs inside the lab, which has no way out.
- `Builtins`: the schemas for one set of group-versions, v3 and v2. Without the module they are
  made from what the stand-in knows (the kind, apiVersion, kind and metadata; anything else is
  accepted), so `kubectl explain KIND` still answers, with a description saying where the full
  schemas come from, and unknown fields of built-in kinds go unchecked.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pikube.errors import PikubeError
from pikube.lab.hosts.rootfs import cache_dir
from pikube.lab.kubeapi.discovery import KUBERNETES_VERSION
from pikube.lab.kubeapi.resources import BUILTIN_TYPES, ResourceType

MODULE = "k8s.io/kubernetes"
SPEC_PATH = "api/openapi-spec"
REF_PREFIX = "#/components/schemas/"
V2_REF_PREFIX = "#/definitions/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
UNAVAILABLE = (
    f"(Kubernetes {KUBERNETES_VERSION}'s schemas are read from the {MODULE} module in the Go "
    f"module cache, which is missing: `pikube lab build --component kubernetes` fetches it)"
)
_log = logging.getLogger(__name__)


def spec_dir(cache: Path | None = None) -> Path | None:
    """The module's api/openapi-spec directory, if the module is in the cache."""
    module = (cache or cache_dir()) / "go" / "mod" / f"{MODULE}@{KUBERNETES_VERSION}"
    found = module / SPEC_PATH
    return found if (found / "swagger.json").is_file() else None


def fetch() -> Path | None:
    """The spec directory, fetched into the Go module cache first if needed; None (and a log
    line) when it cannot be fetched (no go command, no network)."""
    found = spec_dir()
    if found is not None:
        return found
    from pikube.lab.kubernetes import gobuild  # noqa: PLC0415 (only when the module is missing)

    try:
        gobuild.module_file("kubernetes", f"{SPEC_PATH}/swagger.json")
    except PikubeError as exc:
        _log.warning("the API stand-in's built-in schemas are unavailable: %s", exc)
        return None
    return spec_dir()


def _v3_file(group: str, version: str) -> str:
    return f"api__{version}_openapi.json" if not group else f"apis__{group}__{version}_openapi.json"


def _gvk(rt: ResourceType) -> list[dict[str, str]]:
    return [{"group": rt.group, "kind": rt.kind, "version": rt.version}]


def _refs(value: Any, prefix: str, found: set[str]) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "$ref" and isinstance(child, str) and child.startswith(prefix):
                found.add(child.removeprefix(prefix))
            else:
                _refs(child, prefix, found)
    elif isinstance(value, list):
        for child in value:
            _refs(child, prefix, found)


def closure(
    wanted: Iterable[str], schemas: Mapping[str, Any], prefix: str = REF_PREFIX
) -> dict[str, Any]:
    """The named schemas and every schema they refer to, transitively, sorted by name."""
    out: dict[str, Any] = {}
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name in out or name not in schemas:
            continue
        out[name] = schemas[name]
        found: set[str] = set()
        _refs(schemas[name], prefix, found)
        todo.extend(found)
    return dict(sorted(out.items()))


@dataclass
class Builtins:
    """The built-in kinds' schemas: v3 (components), each served kind's schema name, and v2
    (definitions; read on first use: only `/openapi/v2` needs them). `complete` is False when
    they were made without Kubernetes' documents."""

    v3: Mapping[str, Any]
    names: Mapping[tuple[str, str, str], str]
    complete: bool
    v2_source: Callable[[], Mapping[str, Any]]

    @functools.cached_property
    def v2(self) -> Mapping[str, Any]:
        return self.v2_source()


def _names(schemas: Mapping[str, Any]) -> dict[tuple[str, str, str], str]:
    return {
        (g["group"], g["version"], g["kind"]): name
        for name, schema in schemas.items()
        for g in schema.get("x-kubernetes-group-version-kind") or ()
    }


def from_documents(directory: Path, types: Iterable[ResourceType]) -> Builtins:
    """The served kinds' schemas from Kubernetes' documents in `directory`."""
    types = list(types)
    v3_all: dict[str, Any] = {}
    for group, version in sorted({(rt.group, rt.version) for rt in types}):
        document = json.loads((directory / "v3" / _v3_file(group, version)).read_text())
        v3_all.update(document["components"]["schemas"])
    names = _names(v3_all)
    wanted = [names[rt.group, rt.version, rt.kind] for rt in types] + [OBJECT_META]

    def v2() -> Mapping[str, Any]:
        v2_all = json.loads((directory / "swagger.json").read_text())["definitions"]
        return closure(wanted, v2_all, V2_REF_PREFIX)

    return Builtins(
        v3=closure(wanted, v3_all),
        names={key: names[key] for key in ((rt.group, rt.version, rt.kind) for rt in types)},
        complete=True,
        v2_source=v2,
    )


def generated(types: Iterable[ResourceType]) -> Builtins:
    """What the stand-in knows of its kinds, as schemas: enough for `kubectl explain KIND`."""
    v3: dict[str, Any] = {
        OBJECT_META: {
            "description": f"Standard object's metadata. {UNAVAILABLE}",
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    }
    names: dict[tuple[str, str, str], str] = {}
    for rt in types:
        group = rt.group.removesuffix(".k8s.io") or "core"
        name = f"io.k8s.api.{group}.{rt.version}.{rt.kind}"
        names[rt.group, rt.version, rt.kind] = name
        v3[name] = {
            "description": f"{rt.kind} {UNAVAILABLE}",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"$ref": REF_PREFIX + OBJECT_META},
            },
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-group-version-kind": _gvk(rt),
        }
    v3 = dict(sorted(v3.items()))
    v2 = json.loads(json.dumps(v3).replace(REF_PREFIX, V2_REF_PREFIX))
    return Builtins(v3=v3, names=names, complete=False, v2_source=lambda: v2)


def load(directory: Path | None, types: Iterable[ResourceType]) -> Builtins:
    if directory is None:
        return generated(types)
    return from_documents(directory, types)


@functools.cache
def builtins() -> Builtins:
    """The schemas of the stand-in's built-in kinds (read once per process)."""
    return load(spec_dir(), BUILTIN_TYPES)
