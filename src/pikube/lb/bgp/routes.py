"""What one node announces over BGP, to which peer, with which attributes. Pure.

MetalLB's rules (speaker/bgp_controller.go `ShouldAnnounce` and the advertisement code), from
the cluster's resources, the services' IPs and this node's name:
- the node has a session with every BGPPeer whose nodeSelectors select it;
- a LoadBalancer service with IPs is announced when it has a serving endpoint somewhere
  (externalTrafficPolicy Cluster: every eligible node announces, the router spreads traffic
  over them by ECMP), or, for externalTrafficPolicy Local, only from nodes with a serving
  endpoint of their own;
- never from a node with NetworkUnavailable or the exclude-from-external-load-balancers label;
- an IP is announced when it lies in a pool that a BGPAdvertisement selects (and the
  advertisement selects the service and this node), as the prefix of the advertisement's
  aggregation length, to the advertisement's peers (all of this node's peers when it names
  none), with its localPref and communities. Two advertisements of one prefix to one peer
  merge their communities.
Also turns a BGPPeer into the session's settings (`peer_settings`). No sockets, no clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pikube.lb.bgp.codec import IPV4_UNICAST, IPV6_UNICAST, IPNetwork
from pikube.lb.bgp.fsm import PeerSettings, RouteAttributes
from pikube.lb.model import (
    BGPPeer,
    ClusterResources,
    DynamicASN,
    ExternalTrafficPolicy,
    IPAddress,
    LargeCommunity,
    Node,
    ServiceType,
    StandardCommunity,
)

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
DEFAULT_HOLD_TIME_S = 90  # MetalLB's native speaker


@dataclass(frozen=True)
class BgpInput:
    """What a source gives the BGP speaker: the cluster's objects, each service's IPs (from the
    allocator, or the Service's status on a cluster) and the problems found reading them."""

    resources: ClusterResources
    allocations: Mapping[str, Sequence[IPAddress]]
    problems: tuple[str, ...] = ()


class BgpSource(Protocol):
    def updates(self) -> AsyncIterator[BgpInput]:
        """Yield the input now and after every change; never end on bad input."""
        ...


@dataclass(frozen=True)
class NodeRoutes:
    """This node's peers and, per peer name, the routes to announce to it."""

    peers: tuple[BGPPeer, ...] = ()
    routes: Mapping[str, Mapping[IPNetwork, RouteAttributes]] = field(default_factory=dict)
    services: Mapping[IPNetwork, tuple[str, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def _node(resources: ClusterResources, name: str) -> Node:
    return next((n for n in resources.nodes if n.name == name), Node(name))


def node_routes(
    resources: ClusterResources,
    allocations: Mapping[str, Sequence[IPAddress]],
    node_name: str,
    problems: Sequence[str] = (),
) -> NodeRoutes:
    node = _node(resources, node_name)
    peers = tuple(p for p in resources.bgp_peers if p.selects_node(node))
    found = list(problems)
    if node.network_unavailable or EXCLUDE_LABEL in node.labels:
        why = "NetworkUnavailable" if node.network_unavailable else f"label {EXCLUDE_LABEL}"
        found.append(f"node {node_name}: announces nothing ({why})")
        return NodeRoutes(peers=peers, routes={p.name: {} for p in peers}, problems=tuple(found))
    routes: dict[str, dict[IPNetwork, RouteAttributes]] = {p.name: {} for p in peers}
    services: dict[IPNetwork, set[str]] = {}
    by_key = {s.key: s for s in resources.services}
    for key in sorted(allocations):
        service = by_key.get(key)
        ips = list(allocations[key])
        if service is None or service.type is not ServiceType.LOAD_BALANCER or not ips:
            continue
        serving_here = False
        serving = False
        for eps in resources.endpoint_slices:
            if eps.service_key != key:
                continue
            for endpoint in eps.endpoints:
                if endpoint.can_serve:
                    serving = True
                    serving_here = serving_here or endpoint.node_name == node_name
        if not serving:
            found.append(f"service {key}: no serving endpoint, so it is not announced")
            continue
        if service.external_traffic_policy is ExternalTrafficPolicy.LOCAL and not serving_here:
            continue  # externalTrafficPolicy Local: only nodes with a local endpoint
        for ip in ips:
            pools = [p for p in resources.pools if p.contains(ip)]
            ads = [
                ad
                for ad in resources.bgp_advertisements
                if ad.selects_service(service)
                and ad.selects_node(node)
                and any(ad.selects_pool(p) for p in pools)
            ]
            for ad in ads:
                length = ad.aggregation_length if ip.version == 4 else ad.aggregation_length_v6
                prefix = ipaddress.ip_network((ip, length), strict=False)
                services.setdefault(prefix, set()).add(key)
                attrs = RouteAttributes(
                    local_pref=ad.local_pref or None,
                    communities=tuple(
                        c for c in ad.communities if isinstance(c, StandardCommunity)
                    ),
                    large_communities=tuple(
                        c for c in ad.communities if isinstance(c, LargeCommunity)
                    ),
                )
                for peer in peers:
                    if ad.selects_peer(peer):
                        table = routes[peer.name]
                        table[prefix] = _merge(table.get(prefix), attrs)
    return NodeRoutes(
        peers=peers,
        routes=routes,
        services={k: tuple(sorted(v)) for k, v in services.items()},
        problems=tuple(found),
    )


def _merge(old: RouteAttributes | None, new: RouteAttributes) -> RouteAttributes:
    if old is None:
        return new
    prefs = [p for p in (old.local_pref, new.local_pref) if p is not None]
    return RouteAttributes(
        local_pref=max(prefs) if prefs else None,
        communities=tuple(dict.fromkeys(old.communities + new.communities)),
        large_communities=tuple(dict.fromkeys(old.large_communities + new.large_communities)),
    )


def peer_settings(peer: BGPPeer, router_id: ipaddress.IPv4Address | None = None) -> PeerSettings:
    """The session settings for `peer`. Router ID: the peer's routerID, else `router_id`,
    else (None) the session's local IPv4 address."""
    hold = DEFAULT_HOLD_TIME_S if peer.hold_time_s is None else int(peer.hold_time_s)
    return PeerSettings(
        local_asn=peer.local_asn or peer.my_asn,
        router_id=peer.router_id or router_id,
        peer_asn=peer.peer_asn,
        internal=None if peer.dynamic_asn is None else peer.dynamic_asn is DynamicASN.INTERNAL,
        hold_time_s=hold,
        keepalive_s=peer.keepalive_time_s,
        families=(IPV4_UNICAST, IPV6_UNICAST),
        graceful_restart=peer.enable_graceful_restart,
    )


def is_external(peer: BGPPeer) -> bool:
    if peer.dynamic_asn is not None:
        return peer.dynamic_asn is DynamicASN.EXTERNAL
    return peer.peer_asn != (peer.local_asn or peer.my_asn)
