"""Discovery documents: what kubectl and client libraries read to learn what the server serves.

Pure functions of a `Registry`:
- legacy discovery: /api (APIVersions), /apis (APIGroupList), /apis/G (APIGroup) and
  /api/v1, /apis/G/V (APIResourceList, with `x/status` subresources);
- aggregated discovery (apidiscovery.k8s.io/v2 APIGroupDiscoveryList), which kubectl asks for
  first on /api and /apis;
- (the OpenAPI documents are openapi.py's)
- /version.

Must not: know about HTTP or the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pikube.lab.kubeapi.resources import STATUS_VERBS, VERBS, Registry, ResourceType

KUBERNETES_VERSION = "v1.31.5"
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


def version_info() -> dict[str, str]:
    major, minor, _patch = KUBERNETES_VERSION[1:].split(".")
    return {
        "major": major,
        "minor": minor,
        # "+pikube" (semver build metadata) says this is the lab's stand-in, not kube-apiserver.
        "gitVersion": f"{KUBERNETES_VERSION}+pikube",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-15T00:00:00Z",
        "goVersion": "none (pikube lab stand-in, Python)",
        "compiler": "none",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_entry(group: str, versions: Sequence[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = [
        _group_entry(group, versions)
        for group, versions in registry.group_versions().items()
        if group
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.types_in(group, version)
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for rt in types:
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular_name,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(VERBS),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        if rt.status_subresource:
            resources.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": list(STATUS_VERBS),
                }
            )
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _discovery_resource(rt: ResourceType) -> dict[str, Any]:
    kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    entry: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": kind,
        "scope": rt.scope,
        "singularResource": rt.singular_name,
        "verbs": list(VERBS),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    if rt.status_subresource:
        entry["subresources"] = [
            {"subresource": "status", "responseKind": kind, "verbs": list(STATUS_VERBS)}
        ]
    return entry


def aggregated(registry: Registry, *, core: bool, api_version: str = "v2") -> dict[str, Any]:
    """The APIGroupDiscoveryList for /api (core) or /apis (every named group)."""
    items = []
    for group, versions in registry.group_versions().items():
        if (group == "") != core:
            continue
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": version,
                        "resources": [
                            _discovery_resource(rt) for rt in registry.types_in(group, version)
                        ],
                        "freshness": "Current",
                    }
                    for version in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{api_version}",
        "metadata": {},
        "items": items,
    }
