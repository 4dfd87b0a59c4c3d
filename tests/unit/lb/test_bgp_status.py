"""ServiceBGPStatus decisions (pikube.lb.bgp.status) and the BGP source's input from API
objects (pikube.lb.sources.kube_bgp.BgpInputBuilder). Pure: no API, no sockets."""

from __future__ import annotations

import ipaddress
from typing import Any

from pikube.lb.bgp import status
from pikube.lb.bgp.routes import node_routes
from pikube.lb.bgp.status import Create, Delete, Update, plan
from pikube.lb.kube.api import (
    BGP_ADVERTISEMENTS,
    BGP_PEERS,
    COMMUNITIES,
    ENDPOINT_SLICES,
    IP_ADDRESS_POOLS,
    NODES,
    SERVICES,
)
from pikube.lb.sources.kube_bgp import BgpInputBuilder

SVC = "web/nginx"


def existing(
    name: str, node: str, service: str, peers: list[str] | None, created: str = "1"
) -> dict[str, Any]:
    namespace, _, svc = service.partition("/")
    obj: dict[str, Any] = {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "labels": {
                "metallb.io/node": node,
                "metallb.io/service-name": svc,
                "metallb.io/service-namespace": namespace,
            },
        }
    }
    if peers is not None:
        obj["status"] = status.status(node, service, peers)
    return obj


def test_an_advertised_service_without_an_object_gets_one() -> None:
    assert plan("node01", {SVC: {"router", "tor"}}, []) == [Create(SVC, ("router", "tor"))]


def test_an_object_already_right_needs_nothing() -> None:
    assert plan("node01", {SVC: ["router"]}, [existing("bgp-a", "node01", SVC, ["router"])]) == []


def test_a_peer_going_down_or_up_updates_the_peers() -> None:
    obj = existing("bgp-a", "node01", SVC, ["router", "tor"])
    assert plan("node01", {SVC: ["tor"]}, [obj]) == [Update("bgp-a", SVC, ("tor",))]
    created_without_status = existing("bgp-b", "node01", SVC, None)
    assert plan("node01", {SVC: ["tor"]}, [created_without_status]) == [
        Update("bgp-b", SVC, ("tor",))
    ]


def test_a_service_advertised_to_no_peer_has_no_object() -> None:
    obj = existing("bgp-a", "node01", SVC, ["router"])
    assert plan("node01", {SVC: []}, [obj]) == [Delete("bgp-a")]
    assert plan("node01", {}, [obj]) == [Delete("bgp-a")]
    assert plan("node01", {SVC: []}, []) == []


def test_stale_and_duplicate_objects_of_this_node_go_and_other_nodes_are_left_alone() -> None:
    objs = [
        existing("bgp-new", "node01", SVC, ["router"], created="2"),
        existing("bgp-old", "node01", SVC, ["router"], created="1"),
        existing("bgp-gone", "node01", "web/old", ["router"]),  # left by a previous run
        existing("bgp-other", "node02", "web/old", ["router"]),
        {"metadata": {"name": "bgp-nolabels", "labels": {"metallb.io/node": "node01"}}},
    ]
    assert sorted(plan("node01", {SVC: ["router"]}, objs), key=str) == sorted(
        [Delete("bgp-new"), Delete("bgp-gone"), Delete("bgp-nolabels")], key=str
    )


def test_new_object_has_metallbs_shape_and_the_pod_as_owner() -> None:
    obj = status.new_object("node01", SVC, "metallb-system", {"name": "speaker-x", "uid": "u1"})
    assert obj == {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "ServiceBGPStatus",
        "metadata": {
            "generateName": "bgp-",
            "namespace": "metallb-system",
            "labels": {
                "metallb.io/node": "node01",
                "metallb.io/service-name": "nginx",
                "metallb.io/service-namespace": "web",
            },
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": "speaker-x", "uid": "u1"}
            ],
        },
    }
    assert "ownerReferences" not in status.new_object("n", SVC, "m", None)["metadata"]
    assert status.status("node01", SVC, ["tor", "router"]) == {
        "node": "node01",
        "serviceName": "nginx",
        "serviceNamespace": "web",
        "peers": ["router", "tor"],
    }


def test_advertised_services_come_from_each_sessions_prefixes() -> None:
    p1 = ipaddress.ip_network("203.0.113.10/32")
    p2 = ipaddress.ip_network("203.0.113.0/24")
    services = {p1: ("web/a", "web/b"), p2: ("web/c",)}
    got = status.advertised_services(services, {"router": [p1], "tor": [p1, p2], "idle": []})
    assert got == {
        "web/a": frozenset({"router", "tor"}),
        "web/b": frozenset({"router", "tor"}),
        "web/c": frozenset({"tor"}),
    }


# -- the source's input from API objects ------------------------------------------------------

NS = "metallb-system"


def api_objects() -> dict[Any, list[dict[str, Any]]]:
    def meta(name: str, uid: str, namespace: str = NS) -> dict[str, str]:
        return {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "1"}

    objects: dict[Any, list[dict[str, Any]]] = {
        IP_ADDRESS_POOLS: [{"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                            "metadata": meta("bgp-pool", "p"),
                            "spec": {"addresses": ["203.0.113.0/24"]}}],
        BGP_PEERS: [{"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
                     "metadata": meta("router", "r"),
                     "spec": {"myASN": 64497, "peerASN": 64496, "peerAddress": "198.51.100.1"}}],
        COMMUNITIES: [{"apiVersion": "metallb.io/v1beta1", "kind": "Community",
                       "metadata": meta("c", "c"),
                       "spec": {"communities": [{"name": "mine", "value": "64497:7"}]}}],
        BGP_ADVERTISEMENTS: [{"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
                              "metadata": meta("adv", "a"),
                              "spec": {"ipAddressPools": ["bgp-pool"], "communities": ["mine"]}}],
        SERVICES: [{"apiVersion": "v1", "kind": "Service",
                    "metadata": meta("nginx", "s", "web"),
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                    "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}}],
        ENDPOINT_SLICES: [{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": "nginx-1", "namespace": "web", "uid": "e",
                                        "resourceVersion": "1",
                                        "labels": {"kubernetes.io/service-name": "nginx"}},
                           "addressType": "IPv4",
                           "endpoints": [{"addresses": ["198.51.100.22"], "nodeName": "node02",
                                          "conditions": {"ready": True}}]}],
        NODES: [{"apiVersion": "v1", "kind": "Node",
                 "metadata": {"name": "node01", "uid": "n", "resourceVersion": "1"}}],
    }  # fmt: skip
    return objects


def test_the_input_takes_the_ips_from_the_service_status_and_resolves_community_aliases() -> None:
    item = BgpInputBuilder().build(api_objects())
    assert item.problems == ()
    assert item.allocations == {"web/nginx": (ipaddress.ip_address("203.0.113.10"),)}
    routes = node_routes(item.resources, item.allocations, "node01", item.problems)
    (attrs,) = routes.routes["router"].values()
    assert [str(c) for c in attrs.communities] == ["64497:7"]
    assert routes.services == {ipaddress.ip_network("203.0.113.10/32"): ("web/nginx",)}


def test_a_service_without_an_ip_in_its_status_or_of_another_class_is_not_announced() -> None:
    objs = api_objects()
    service = objs[SERVICES][0]
    no_ip = {**service, "status": {}, "metadata": {**service["metadata"], "resourceVersion": "2"}}
    assert BgpInputBuilder().build(api_objects() | {SERVICES: [no_ip]}).allocations == {}
    assert BgpInputBuilder("other-class").build(objs).allocations == {}


def test_a_bad_bgp_configuration_keeps_the_last_valid_one_and_says_why() -> None:
    builder = BgpInputBuilder()
    good = builder.build(api_objects())
    bad_ad = {**api_objects()[BGP_ADVERTISEMENTS][0]}
    bad_ad["metadata"] = {**bad_ad["metadata"], "resourceVersion": "2"}
    bad_ad["spec"] = {"ipAddressPools": ["bgp-pool"], "communities": ["no-such-alias"]}
    item = builder.build(api_objects() | {BGP_ADVERTISEMENTS: [bad_ad]})
    assert item.resources.bgp_advertisements == good.resources.bgp_advertisements
    (problem,) = item.problems
    assert problem.startswith("BGP configuration: BGPAdvertisement")
    assert "no-such-alias" in problem
    assert problem.endswith("keeping the last valid one")
