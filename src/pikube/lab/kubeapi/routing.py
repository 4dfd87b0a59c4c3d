"""URL paths and request headers of the Kubernetes API, parsed into plain values. Pure.

    /api, /apis, /apis/G                      discovery
    /api/v1, /apis/G/V                        resource lists
    /api/v1/R[/NAME[/SUB]]                    cluster-scoped, or namespaced across namespaces
    /api/v1/namespaces/NS/R[/NAME[/SUB]]      namespaced
    /apis/G/V/...                             the same for a named group
    /api/v1/watch/..., /apis/G/V/watch/...    the deprecated watch prefix

Must not: know which kinds exist (the server looks the resource up) or touch HTTP objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pikube.lab.kubeapi.store import PatchType


class TargetKind(enum.Enum):
    CORE_GROUPS = "core-groups"  # /api
    GROUPS = "groups"  # /apis
    GROUP = "group"  # /apis/G
    RESOURCES = "resources"  # /api/v1, /apis/G/V
    RESOURCE = "resource"  # a collection, an object, or a subresource
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    group: str = ""
    version: str = ""
    namespace: str | None = None
    plural: str = ""
    name: str | None = None
    subresource: str | None = None
    watch_prefix: bool = False


def parse_path(path: str) -> Target:
    parts = [p for p in path.split("/") if p]
    if not parts:
        return Target(TargetKind.UNKNOWN)
    if parts[0] == "api":
        if len(parts) == 1:
            return Target(TargetKind.CORE_GROUPS)
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            return Target(TargetKind.GROUPS)
        if len(parts) == 2:
            return Target(TargetKind.GROUP, group=parts[1])
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Target(TargetKind.UNKNOWN)
    if not rest:
        return Target(TargetKind.RESOURCES, group=group, version=version)
    watch = False
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
        if not rest:
            return Target(TargetKind.UNKNOWN)
    namespace: str | None = None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return Target(TargetKind.UNKNOWN)
    return Target(
        TargetKind.RESOURCE,
        group=group,
        version=version,
        namespace=namespace,
        plural=rest[0],
        name=rest[1] if len(rest) > 1 else None,
        subresource=rest[2] if len(rest) > 2 else None,
        watch_prefix=watch,
    )


def media_types(header: str | None) -> list[tuple[str, dict[str, str]]]:
    """An Accept or Content-Type header as (type, parameters) pairs, in order."""
    result = []
    for item in (header or "").split(","):
        pieces = [p.strip() for p in item.split(";")]
        if not pieces[0]:
            continue
        params = {}
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            params[key.strip().lower()] = value.strip()
        result.append((pieces[0].lower(), params))
    return result


def wants_table(accept: str | None) -> bool:
    return any(
        params.get("as") == "Table" and params.get("g") == "meta.k8s.io"
        for _type, params in media_types(accept)
    )


def wants_aggregated(accept: str | None) -> str | None:
    """The aggregated discovery version the client accepts first ("v2", "v2beta1"), if any."""
    for _type, params in media_types(accept):
        if params.get("as") == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io":
            version = params.get("v")
            if version in ("v2", "v2beta1"):
                return version
        elif _type in ("application/json", "*/*"):
            return None
    return None


def patch_type(content_type: str | None) -> PatchType | None:
    types = media_types(content_type)
    if not types:
        return None
    for candidate in PatchType:
        if types[0][0] == candidate.value:
            return candidate
    if types[0][0] == "application/apply-patch+json":
        return PatchType.APPLY
    return None


def parse_bool(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")
