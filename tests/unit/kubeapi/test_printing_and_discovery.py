"""What kubectl reads besides objects: Tables, discovery documents, URL paths, media types."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from pikube.lab.kubeapi import discovery, openapi
from pikube.lab.kubeapi.resources import Registry, types_from_crd
from pikube.lab.kubeapi.routing import TargetKind, parse_path, wants_aggregated, wants_table
from pikube.lab.kubeapi.tables import human_duration, json_path_values, table

NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (200, "3m20s"),
        (600, "10m"),
        (4 * 3600 + 60 * 12, "4h12m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (40 * 86400, "40d"),
        (-5, "<invalid>"),
    ],
)
def test_ages_read_as_kubectl_prints_them(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def _service_row(status: Mapping[str, object]) -> list[object]:
    registry = Registry()
    services = registry.lookup("", "v1", "services")
    assert services is not None
    svc = {
        "metadata": {"name": "nginx", "creationTimestamp": "2025-01-15T11:59:00Z"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.10",
            "selector": {"app": "nginx"},
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
        },
        "status": status,
    }
    result = table(services, [svc], NOW)
    names = [c["name"] for c in result["columnDefinitions"]]
    assert names == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert result["columnDefinitions"][-1]["priority"] == 1  # shown by -o wide only
    cells: list[object] = result["rows"][0]["cells"]
    return cells


def test_service_rows_match_kubectl_get_svc() -> None:
    assert _service_row({"loadBalancer": {}}) == [
        "nginx",
        "LoadBalancer",
        "10.96.0.10",
        "<pending>",
        "80:30080/TCP",
        "60s",
        "app=nginx",
    ]
    ingress = {"loadBalancer": {"ingress": [{"ip": "198.51.100.230"}]}}
    assert _service_row(ingress)[3] == "198.51.100.230"


def test_crd_printer_columns_use_their_json_paths() -> None:
    crd = {
        "metadata": {"name": "ipaddresspools.metallb.io"},
        "spec": {
            "group": "metallb.io",
            "scope": "Namespaced",
            "names": {"plural": "ipaddresspools", "kind": "IPAddressPool"},
            "versions": [
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [
                        {"name": "Auto Assign", "type": "boolean", "jsonPath": ".spec.autoAssign"},
                        {"name": "Addresses", "type": "string", "jsonPath": ".spec.addresses"},
                    ],
                }
            ],
        },
    }
    [pools] = types_from_crd(crd)
    created = (NOW - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pool = {
        "metadata": {"name": "p", "creationTimestamp": created},
        "spec": {"autoAssign": True, "addresses": ["198.51.100.230-198.51.100.250"]},
    }
    result = table(pools, [pool], NOW)
    assert [c["name"] for c in result["columnDefinitions"]] == [
        "Name",
        "Auto Assign",
        "Addresses",
        "Age",
    ]
    assert result["rows"][0]["cells"] == ["p", True, '["198.51.100.230-198.51.100.250"]', "3m"]


def test_json_path_subset() -> None:
    obj = {"status": {"loadBalancer": {"ingress": [{"ip": "a"}, {"ip": "b"}]}}}
    assert json_path_values(obj, ".status.loadBalancer.ingress[*].ip") == ["a", "b"]
    assert json_path_values(obj, "{.status.loadBalancer.ingress[1].ip}") == ["b"]
    assert json_path_values(obj, ".spec.missing") == []


def test_aggregated_discovery_lists_core_and_groups_with_status_subresources() -> None:
    registry = Registry()
    core = discovery.aggregated(registry, core=True)
    [core_group] = core["items"]
    resources = {r["resource"]: r for r in core_group["versions"][0]["resources"]}
    assert resources["services"]["responseKind"] == {
        "group": "",
        "version": "v1",
        "kind": "Service",
    }
    assert resources["services"]["shortNames"] == ["svc"]
    assert resources["services"]["subresources"][0]["subresource"] == "status"
    groups = {g["metadata"]["name"] for g in discovery.aggregated(registry, core=False)["items"]}
    assert {
        "apps",
        "discovery.k8s.io",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "rbac.authorization.k8s.io",
        "events.k8s.io",
        "policy",
        "admissionregistration.k8s.io",
    } <= groups


def test_openapi_v3_declares_field_validation_for_every_built_in_patch() -> None:
    registry = Registry()
    index = openapi.v3_index(registry)
    assert "api/v1" in index["paths"]
    assert "apis/apps/v1" in index["paths"]
    document = openapi.v3_document(registry, "apps", "v1")
    assert document is not None
    patches = [p["patch"] for p in document["paths"].values()]
    kinds = {p["x-kubernetes-group-version-kind"]["kind"] for p in patches}
    assert {"Deployment", "DaemonSet"} <= kinds
    for patch in patches:
        assert any(q["name"] == "fieldValidation" for q in patch["parameters"])
        # No strategic-merge body: kubectl then computes patches from its compiled-in types.
        assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]


def test_legacy_resource_list_names_status_subresources() -> None:
    listed = discovery.api_resource_list(Registry(), "apps", "v1")
    assert listed is not None
    names = {r["name"] for r in listed["resources"]}
    assert {"deployments", "deployments/status", "daemonsets"} <= names


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/api/v1/namespaces/default/services/nginx/status",
            (TargetKind.RESOURCE, "", "default", "services", "nginx", "status"),
        ),
        ("/api/v1/namespaces/team", (TargetKind.RESOURCE, "", None, "namespaces", "team", None)),
        (
            "/api/v1/namespaces/team/status",
            (TargetKind.RESOURCE, "", None, "namespaces", "team", "status"),
        ),
        (
            "/apis/metallb.io/v1beta1/ipaddresspools",
            (TargetKind.RESOURCE, "metallb.io", None, "ipaddresspools", None, None),
        ),
        ("/apis/apps/v1", (TargetKind.RESOURCES, "apps", None, "", None, None)),
        ("/apis/apps", (TargetKind.GROUP, "apps", None, "", None, None)),
        ("/metrics", (TargetKind.UNKNOWN, "", None, "", None, None)),
    ],
)
def test_paths(path: str, expected: tuple[object, ...]) -> None:
    t = parse_path(path)
    assert (t.kind, t.group, t.namespace, t.plural, t.name, t.subresource) == expected


def test_media_type_negotiation_as_kubectl_sends_it() -> None:
    kubectl_get = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,"
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    )
    assert wants_table(kubectl_get)
    assert not wants_table("application/json")
    discovery_accept = (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
        "application/json"
    )
    assert wants_aggregated(discovery_accept) == "v2"
    assert wants_aggregated("application/json, */*") is None
