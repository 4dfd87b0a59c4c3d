"""What must be announced by ARP/NDP, and which nodes may announce it. Pure.

The announcement model (`Announcement`, `DesiredState`) is what every source yields and the
speaker consumes; `desired_state` builds it from the cluster's resources.

Given the cluster's resources and each LoadBalancer service's IPs, build the election targets,
following MetalLB's rules (speaker/layer2_controller.go `ShouldAnnounce`), improved where
pikube's issues say so:
- a service with no serving endpoint anywhere is not announced;
- an IP must lie in a pool, and an L2Advertisement must select that pool and the service;
- candidate nodes: selected by one of those advertisements' node selectors, schedulable,
  without NetworkUnavailable, without the node.kubernetes.io/exclude-from-external-load-balancers
  label; for externalTrafficPolicy Local, only nodes with a serving endpoint of the service;
- the IPs of one service (dual-stack), and services sharing an IP, form one target that one
  node announces, keyed by its lowest IP.
Whatever cannot be announced is reported in words, per service.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pikube.lb.election import Target
from pikube.lb.model import (
    ClusterResources,
    ExternalTrafficPolicy,
    IPAddress,
    L2Advertisement,
    Service,
    ServiceType,
)

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


@dataclass(frozen=True)
class Announcement:
    """A target to announce by ARP/NDP, with who may announce it and where."""

    target: Target
    services: tuple[str, ...]  # namespace/name of every service using these IPs
    interfaces: tuple[str, ...] = ()  # from L2Advertisement.interfaces; empty: all


@dataclass(frozen=True)
class DesiredState:
    announcements: tuple[Announcement, ...] = ()
    problems: tuple[str, ...] = ()  # what could not be announced, and why, in words


def _serving_nodes(resources: ClusterResources, service: Service) -> tuple[bool, set[str]]:
    """(has any serving endpoint, nodes with a serving endpoint)."""
    any_serving = False
    nodes: set[str] = set()
    for eps in resources.endpoint_slices:
        if eps.service_key != service.key:
            continue
        for endpoint in eps.endpoints:
            if endpoint.can_serve:
                any_serving = True
                if endpoint.node_name:
                    nodes.add(endpoint.node_name)
    return any_serving, nodes


def _eligible_nodes(
    resources: ClusterResources, ads: Sequence[L2Advertisement]
) -> frozenset[str] | None:
    """Nodes the advertisements allow; None for "any speaker" when nothing restricts it."""
    restricted = any(ad.node_selectors for ad in ads)
    excluded = {
        n.name
        for n in resources.nodes
        if n.network_unavailable or n.unschedulable or EXCLUDE_LABEL in n.labels
    }
    if not restricted:
        if not excluded:
            return None
        known = {n.name for n in resources.nodes}
        return frozenset(known - excluded)
    return frozenset(
        n.name
        for n in resources.nodes
        if n.name not in excluded and any(ad.selects_node(n) for ad in ads)
    )


def desired_state(
    resources: ClusterResources,
    allocations: Mapping[str, Sequence[IPAddress]],
    problems: Sequence[str] = (),
) -> DesiredState:
    """The announcements for every LoadBalancer service that has IPs in `allocations`."""
    found_problems = list(problems)
    groups: list[tuple[set[IPAddress], list[str], frozenset[str] | None, set[str]]] = []
    services = {s.key: s for s in resources.services}
    for key in sorted(allocations):
        service = services.get(key)
        ips = list(allocations[key])
        if service is None or service.type is not ServiceType.LOAD_BALANCER or not ips:
            continue
        any_serving, local_nodes = _serving_nodes(resources, service)
        if not any_serving:
            found_problems.append(
                f"service {key}: no serving endpoint, so {', '.join(map(str, ips))} "
                "is not announced"
            )
            continue
        ads: list[L2Advertisement] = []
        unannounced = []
        for ip in ips:
            pools = [p for p in resources.pools if p.contains(ip)]
            if not pools:
                found_problems.append(
                    f"service {key}: {ip} is outside every IPAddressPool; not announced"
                )
                unannounced.append(ip)
                continue
            matching = [
                ad
                for ad in resources.l2_advertisements
                if ad.selects_service(service) and any(ad.selects_pool(p) for p in pools)
            ]
            if not matching:
                unannounced.append(ip)  # not layer 2 (perhaps BGP): nothing to report here
                continue
            ads.extend(matching)
        ips = [ip for ip in ips if ip not in unannounced]
        if not ips:
            continue
        eligible = _eligible_nodes(resources, ads)
        if service.external_traffic_policy is ExternalTrafficPolicy.LOCAL:
            eligible = frozenset(local_nodes) if eligible is None else eligible & local_nodes
        if eligible is not None and not eligible:
            found_problems.append(
                f"service {key}: no node may announce {', '.join(map(str, ips))} "
                "(node selectors, excluded nodes, or no local endpoint)"
            )
            continue
        interfaces: set[str] = set()
        if all(ad.interfaces for ad in ads):
            for ad in ads:
                interfaces.update(ad.interfaces)
        groups.append((set(ips), [key], eligible, interfaces))

    # Services sharing an IP become one target (merge groups that share any address).
    merged: list[tuple[set[IPAddress], list[str], frozenset[str] | None, set[str]]] = []
    for group in groups:
        ips_set, names, eligible, interfaces = (
            set(group[0]),
            list(group[1]),
            group[2],
            set(group[3]),
        )
        for other in [g for g in merged if g[0] & ips_set]:
            merged.remove(other)
            ips_set |= other[0]
            names += other[1]
            if other[2] is not None:
                eligible = other[2] if eligible is None else eligible & other[2]
            interfaces |= other[3]
        merged.append((ips_set, names, eligible, interfaces))

    announcements = []
    for ips_set, names, eligible, interfaces in merged:
        ordered = sorted(ips_set, key=lambda ip: (ip.version, int(ip)))
        key_ip = str(ordered[0])
        announcements.append(
            Announcement(
                target=Target(key=key_ip, ips=tuple(str(ip) for ip in ordered), eligible=eligible),
                services=tuple(sorted(names)),
                interfaces=tuple(sorted(interfaces)),
            )
        )
    announcements.sort(key=lambda a: ipaddress.ip_address(a.target.key).packed)
    return DesiredState(announcements=tuple(announcements), problems=tuple(found_problems))
