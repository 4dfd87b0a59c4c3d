"""What must be announced by ARP/NDP and by which nodes (pure), from MetalLB's objects."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from pikube.lb.announcements import desired_state
from pikube.lb.config import Origin, parse_documents
from pikube.lb.model import ClusterResources

POOL = {
    "apiVersion": "metallb.io/v1beta1",
    "kind": "IPAddressPool",
    "metadata": {"name": "pool", "namespace": "metallb-system"},
    "spec": {"addresses": ["198.51.100.230-198.51.100.250", "2001:db8:68::230/127"]},
}
L2 = {
    "apiVersion": "metallb.io/v1beta1",
    "kind": "L2Advertisement",
    "metadata": {"name": "l2", "namespace": "metallb-system"},
}


def service(name: str, *, local: bool = False, labels: dict[str, str] | None = None) -> Any:
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "ports": [{"port": 80}],
        "selector": {"app": name},
    }
    if local:
        spec["externalTrafficPolicy"] = "Local"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "spec": spec,
    }


def endpoints(name: str, *nodes: str, ready: bool = True) -> Any:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.1"], "nodeName": n, "conditions": {"ready": ready}}
                      for n in nodes],
    }  # fmt: skip


def node(name: str, **labels: str) -> Any:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def resources(*docs: Any) -> ClusterResources:
    return parse_documents([(d, Origin("test.yaml", i + 1)) for i, d in enumerate(docs)])


def ips(*texts: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [ipaddress.ip_address(t) for t in texts]


def test_a_service_with_endpoints_is_announced_by_any_speaker() -> None:
    state = desired_state(
        resources(POOL, L2, service("web"), endpoints("web", "node02")),
        {"default/web": ips("198.51.100.230")},
    )
    (announcement,) = state.announcements
    assert announcement.target.key == "198.51.100.230"
    assert announcement.target.eligible is None
    assert announcement.services == ("default/web",)
    assert state.problems == ()


def test_no_serving_endpoint_means_no_announcement_and_a_reason() -> None:
    state = desired_state(
        resources(POOL, L2, service("web"), endpoints("web", "node02", ready=False)),
        {"default/web": ips("198.51.100.230")},
    )
    assert state.announcements == ()
    assert "no serving endpoint" in state.problems[0]


def test_local_traffic_policy_limits_candidates_to_nodes_with_endpoints() -> None:
    state = desired_state(
        resources(POOL, L2, service("web", local=True), endpoints("web", "node03")),
        {"default/web": ips("198.51.100.230")},
    )
    assert state.announcements[0].target.eligible == frozenset({"node03"})


def test_node_selectors_and_the_exclusion_label_decide_who_may_announce() -> None:
    ad = {**L2, "spec": {"nodeSelectors": [{"matchLabels": {"lb": "yes"}}]}}
    state = desired_state(
        resources(
            POOL, ad, service("web"), endpoints("web", "node01"),
            node("node01", lb="yes"), node("node02", lb="no"),
            node("node03", **{"lb": "yes",
                              "node.kubernetes.io/exclude-from-external-load-balancers": ""}),
        ),
        {"default/web": ips("198.51.100.230")},
    )  # fmt: skip
    assert state.announcements[0].target.eligible == frozenset({"node01"})


def test_dual_stack_ips_and_shared_ips_form_one_target() -> None:
    state = desired_state(
        resources(POOL, L2, service("a"), endpoints("a", "n1"), service("b"), endpoints("b", "n1")),
        {
            "default/a": ips("2001:db8:68::230", "198.51.100.231"),
            "default/b": ips("198.51.100.231"),
        },
    )
    (announcement,) = state.announcements
    assert announcement.target.key == "198.51.100.231"  # IPv4 first, then by address
    assert announcement.target.ips == ("198.51.100.231", "2001:db8:68::230")
    assert announcement.services == ("default/a", "default/b")


def test_ips_outside_pools_are_reported_and_ips_without_l2_advertisement_are_skipped() -> None:
    other_pool = {**POOL, "metadata": {"name": "bgp-only", "namespace": "metallb-system"},
                  "spec": {"addresses": ["203.0.113.0/28"]}}  # fmt: skip
    ad = {**L2, "spec": {"ipAddressPools": ["pool"]}}
    state = desired_state(
        resources(POOL, other_pool, ad, service("a"), endpoints("a", "n1"), service("b"),
                  endpoints("b", "n1"), service("c"), endpoints("c", "n1")),
        {
            "default/a": ips("192.0.2.99"),
            "default/b": ips("203.0.113.5"),
            "default/c": ips("198.51.100.232"),
        },
    )  # fmt: skip
    assert [a.services for a in state.announcements] == [("default/c",)]
    assert any("192.0.2.99 is outside every IPAddressPool" in p for p in state.problems)
    assert not any("203.0.113.5" in p for p in state.problems)  # BGP's business, not an error


def test_advertisement_interfaces_travel_with_the_target() -> None:
    ad = {**L2, "spec": {"interfaces": ["eth0"]}}
    state = desired_state(
        resources(POOL, ad, service("web"), endpoints("web", "n1")),
        {"default/web": ips("198.51.100.230")},
    )
    assert state.announcements[0].interfaces == ("eth0",)


def test_a_cordoned_node_may_not_announce() -> None:
    base = resources(POOL, L2, service("web"), endpoints("web", "node01"), node("node01"),
                     node("node02"))  # fmt: skip
    cordoned = dataclasses.replace(
        base, nodes=(base.nodes[0], dataclasses.replace(base.nodes[1], unschedulable=True))
    )
    state = desired_state(cordoned, {"default/web": ips("198.51.100.230")})
    assert state.announcements[0].target.eligible == frozenset({"node01"})
