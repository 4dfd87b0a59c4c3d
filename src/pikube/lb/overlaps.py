"""Pools against the cluster's own networks: a LoadBalancer IP inside the pod or the service
network is routed into the cluster, never to the LAN, so such a pool is refused.

Pure: pools and networks in, one problem per overlap out. The allocator does not need it
(MetalLB does not know the cluster's CIDRs); `pikube lb allocate --pod-cidr/--service-cidr`
and the cluster builder's spec (pikube.cluster.spec) make the same check.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from pikube.lb.model import IPAddressPool

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.244.0.0/16` or a dual-stack `10.244.0.0/16,fd00:10:244::/56`, as kubeadm writes them.
    Raises ValueError naming the bad part."""
    networks = []
    for part in text.split(","):
        try:
            networks.append(ipaddress.ip_network(part.strip()))
        except ValueError as exc:
            raise ValueError(f"{part.strip()!r} is not a network in CIDR form ({exc})") from None
    return tuple(networks)


def pools_overlapping(
    pools: Iterable[IPAddressPool], networks: Mapping[str, Iterable[Network]]
) -> list[str]:
    """For each pool range that shares an address with a named network: one sentence naming
    both, e.g. "IPAddressPool 'default' 10.96.0.0/24 overlaps the service CIDR 10.96.0.0/12"."""
    problems = []
    for pool in pools:
        for rng in pool.addresses:
            for what, nets in networks.items():
                for net in nets:
                    if net.version == rng.version and (
                        int(rng.first) <= int(net.broadcast_address)
                        and int(net.network_address) <= int(rng.last)
                    ):
                        problems.append(
                            f"IPAddressPool {pool.name!r} {rng} overlaps the {what} {net}"
                        )
    return problems
