"""What one node announces over BGP, to which peer, with which attributes (pure)."""

from __future__ import annotations

import ipaddress
from typing import Any

from pikube.lb.bgp.fsm import RouteAttributes
from pikube.lb.bgp.routes import node_routes, peer_settings
from pikube.lb.model import LargeCommunity, StandardCommunity
from tests.unit.lb.test_announcements import endpoints, node, resources, service

POOL = {
    "apiVersion": "metallb.io/v1beta1",
    "kind": "IPAddressPool",
    "metadata": {"name": "bgp", "namespace": "metallb-system"},
    "spec": {"addresses": ["203.0.113.0/24", "2001:db8:113::/120"]},
}
VIP = ipaddress.ip_address("203.0.113.10")
VIP6 = ipaddress.ip_address("2001:db8:113::10")


def peer(name: str = "router", **spec: Any) -> Any:
    return {
        "apiVersion": "metallb.io/v1beta2",
        "kind": "BGPPeer",
        "metadata": {"name": name, "namespace": "metallb-system"},
        "spec": {"myASN": 64497, "peerASN": 64496, "peerAddress": "198.51.100.1", **spec},
    }


def advertisement(name: str = "adv", **spec: Any) -> Any:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "BGPAdvertisement",
        "metadata": {"name": name, "namespace": "metallb-system"},
        "spec": spec,
    }


NODES = [node("node01"), node("node02"), node("node03")]
ROUTE4 = ipaddress.ip_network("203.0.113.10/32")
ROUTE6 = ipaddress.ip_network("2001:db8:113::10/128")


def test_cluster_policy_every_node_announces_to_every_peer() -> None:
    res = resources(
        POOL, peer(), advertisement(), service("web"), endpoints("web", "node02"), *NODES
    )
    for name in ("node01", "node02", "node03"):
        routes = node_routes(res, {"default/web": [VIP, VIP6]}, name)
        assert [p.name for p in routes.peers] == ["router"]
        assert routes.routes["router"] == {ROUTE4: RouteAttributes(), ROUTE6: RouteAttributes()}
        assert routes.services[ROUTE4] == ("default/web",)


def test_local_policy_only_nodes_with_a_serving_endpoint() -> None:
    res = resources(
        POOL,
        peer(),
        advertisement(),
        service("web", local=True),
        endpoints("web", "node02"),
        *NODES,
    )
    allocations = {"default/web": [VIP]}
    assert node_routes(res, allocations, "node01").routes["router"] == {}
    assert ROUTE4 in node_routes(res, allocations, "node02").routes["router"]


def test_no_serving_endpoint_no_route_and_a_problem() -> None:
    res = resources(
        POOL,
        peer(),
        advertisement(),
        service("web"),
        endpoints("web", "node02", ready=False),
        *NODES,
    )
    routes = node_routes(res, {"default/web": [VIP]}, "node01")
    assert routes.routes["router"] == {}
    assert routes.problems == ("service default/web: no serving endpoint, so it is not announced",)


def test_excluded_node_announces_nothing() -> None:
    excluded = node("node01", **{"node.kubernetes.io/exclude-from-external-load-balancers": ""})
    res = resources(
        POOL, peer(), advertisement(), service("web"), endpoints("web", "node02"), excluded
    )
    routes = node_routes(res, {"default/web": [VIP]}, "node01")
    assert routes.routes["router"] == {}
    assert "announces nothing" in routes.problems[0]


def test_aggregation_local_pref_and_communities() -> None:
    res = resources(
        POOL,
        peer(),
        advertisement(
            aggregationLength=24,
            aggregationLengthV6=120,
            localPref=300,
            communities=["64497:100", "large:64497:1:2"],
        ),
        service("web"),
        endpoints("web", "node02"),
        *NODES,
    )
    table = node_routes(res, {"default/web": [VIP, VIP6]}, "node01").routes["router"]
    expected = RouteAttributes(
        300, (StandardCommunity(64497, 100),), (LargeCommunity(64497, 1, 2),)
    )
    assert table == {
        ipaddress.ip_network("203.0.113.0/24"): expected,
        ipaddress.ip_network("2001:db8:113::/120"): expected,
    }


def test_peers_and_node_selectors_choose_sessions_and_routes() -> None:
    res = resources(
        POOL,
        peer("a"),
        peer("b", peerAddress="198.51.100.2", nodeSelectors=[{"matchLabels": {"rack": "1"}}]),
        advertisement("to-a", peers=["a"], communities=["1:1"]),
        advertisement("to-b", peers=["b"], communities=["2:2"]),
        service("web"),
        endpoints("web", "node02"),
        node("node01", rack="1"),
        node("node02"),
    )
    one = node_routes(res, {"default/web": [VIP]}, "node01")
    assert [p.name for p in one.peers] == ["a", "b"]
    assert one.routes["a"][ROUTE4].communities == (StandardCommunity(1, 1),)
    assert one.routes["b"][ROUTE4].communities == (StandardCommunity(2, 2),)
    two = node_routes(res, {"default/web": [VIP]}, "node02")
    assert [p.name for p in two.peers] == ["a"]


def test_two_advertisements_of_one_route_merge_communities() -> None:
    res = resources(
        POOL,
        peer(),
        advertisement("one", communities=["1:1"]),
        advertisement("two", communities=["2:2", "1:1"]),
        service("web"),
        endpoints("web", "node02"),
        *NODES,
    )
    table = node_routes(res, {"default/web": [VIP]}, "node01").routes["router"]
    assert table[ROUTE4].communities == (StandardCommunity(1, 1), StandardCommunity(2, 2))


def test_peer_settings_follow_the_bgp_peer() -> None:
    res = resources(
        peer(holdTime="9s", routerID="10.0.0.1", enableGracefulRestart=True),
        peer("dyn", dynamicASN="internal", peerASN=None),
    )
    fixed = peer_settings(res.bgp_peers[0])
    assert (fixed.hold_time_s, fixed.keepalive_s) == (9, 3.0)
    assert str(fixed.router_id) == "10.0.0.1"
    assert fixed.graceful_restart
    dynamic = peer_settings(res.bgp_peers[1])
    assert dynamic.peer_asn is None
    assert dynamic.internal is True
    assert dynamic.hold_time_s == 90
