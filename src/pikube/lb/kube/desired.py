"""The speaker's desired state from the API's cached objects, recomputing only what changed.
Pure (it remembers results, but reads no clock, socket or file).

`pikube.lb.announcing.desired_state` over every Service and EndpointSlice costs O(services x
slices): 1.3 s per change with 1,000 Services, when a busy cluster changes EndpointSlices many
times a second. The answer for one Service depends only on the configuration (pools,
L2Advertisements, Nodes, Namespaces), that Service and its EndpointSlices, and the Services
sharing an IP with it (they form one target). So the Services are split into groups of those
sharing IPs, each group's announcements are computed by layer2 on its own and remembered with
the resourceVersions they came from, and a change recomputes only its group (everything, when
the configuration changes). `full_desired_state` is the reference the incremental result must
equal (tests/unit/lb/test_kube_desired.py checks it over random changes).

Must not: talk to the API; decide anything layer2 does not decide.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pikube.lb import announcements as announcing
from pikube.lb.kube.api import (
    ENDPOINT_SLICES,
    IP_ADDRESS_POOLS,
    L2_ADVERTISEMENTS,
    NAMESPACES,
    NODES,
    SERVICES,
    Kind,
    Obj,
)
from pikube.lb.kube.convert import Converter, Problem
from pikube.lb.model import ClusterResources, EndpointSlice, Service, ServiceType
from pikube.lb.sources import Announcement, DesiredState

CONFIG_KINDS = (IP_ADDRESS_POOLS, L2_ADVERTISEMENTS, NODES, NAMESPACES)


def _words(problems: Sequence[Problem]) -> list[str]:
    return [f"{p.kind} {p.namespace + '/' if p.namespace else ''}{p.name}: {p.message}"
            for p in problems]  # fmt: skip


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _handled(service: Service, load_balancer_class: str | None) -> bool:
    return (
        service.type is ServiceType.LOAD_BALANCER
        and service.load_balancer_class == load_balancer_class
        and bool(service.ingress_ips)
    )


def _order(announcement: Announcement) -> bytes:
    """layer2's order of announcements: by the target's key IP, as packed bytes."""
    return ipaddress.ip_address(announcement.target.key).packed


def full_desired_state(
    objects: Mapping[Kind, Sequence[Obj]], load_balancer_class: str | None
) -> DesiredState:
    """Everything recomputed from scratch (the reference)."""
    resources, problems = Converter().resources(
        pools=objects.get(IP_ADDRESS_POOLS, ()),
        l2_advertisements=objects.get(L2_ADVERTISEMENTS, ()),
        services=objects.get(SERVICES, ()),
        namespaces=objects.get(NAMESPACES, ()),
        nodes=objects.get(NODES, ()),
        endpoint_slices=objects.get(ENDPOINT_SLICES, ()),
    )
    allocations = {
        s.key: s.ingress_ips for s in resources.services if _handled(s, load_balancer_class)
    }
    state = announcing.desired_state(resources, allocations, _words(problems))
    ordered = sorted(state.announcements, key=_order)
    return DesiredState(announcements=tuple(ordered), problems=tuple(sorted(state.problems)))


@dataclass
class DesiredStateBuilder:
    load_balancer_class: str | None = None
    converter: Converter = field(default_factory=Converter)
    recomputed_groups: int = 0  # for tests and benches
    _config_signature: tuple[tuple[str, str, str], ...] | None = None
    _config: ClusterResources = field(default_factory=ClusterResources)
    _config_problems: tuple[str, ...] = ()
    # group -> (signature, its state, its announcements' sort keys)
    _groups: dict[tuple[str, ...], tuple[object, DesiredState, tuple[bytes, ...]]] = field(
        default_factory=dict
    )

    def _refresh_config(self, objects: Mapping[Kind, Sequence[Obj]]) -> None:
        signature = tuple(
            sorted(
                (kind.plural, str((o.get("metadata") or {}).get("uid", "")), _rv(o))
                for kind in CONFIG_KINDS
                for o in objects.get(kind, ())
            )
        )
        if signature == self._config_signature:
            return
        self._config_signature = signature
        self._config, problems = self.converter.resources(
            pools=objects.get(IP_ADDRESS_POOLS, ()),
            l2_advertisements=objects.get(L2_ADVERTISEMENTS, ()),
            namespaces=objects.get(NAMESPACES, ()),
            nodes=objects.get(NODES, ()),
        )
        self._config_problems = tuple(_words(problems))
        self._groups.clear()

    def build(self, objects: Mapping[Kind, Sequence[Obj]]) -> DesiredState:
        self._refresh_config(objects)
        problems: list[str] = list(self._config_problems)
        services: dict[str, tuple[Service, str]] = {}
        for obj in objects.get(SERVICES, ()):
            parsed = self.converter.parse(obj)
            if isinstance(parsed, Problem):
                problems.extend(_words([parsed]))
            elif parsed.services and _handled(parsed.services[0], self.load_balancer_class):
                services[parsed.services[0].key] = (parsed.services[0], _rv(obj))
        slices: dict[str, list[tuple[EndpointSlice, str]]] = {}
        for obj in objects.get(ENDPOINT_SLICES, ()):
            parsed = self.converter.parse(obj)
            if isinstance(parsed, Problem):
                problems.extend(_words([parsed]))
                continue
            for eps in parsed.endpoint_slices:
                if eps.service_key in services:
                    slices.setdefault(eps.service_key, []).append((eps, _rv(obj)))
        announcements: list[tuple[bytes, Announcement]] = []
        live: set[tuple[str, ...]] = set()
        for group in _sharing_groups(services):
            live.add(group)
            signature = tuple(
                (key, services[key][1], tuple(sorted(rv for _, rv in slices.get(key, ()))))
                for key in group
            )
            cached = self._groups.get(group)
            if cached is None or cached[0] != signature:
                resources = replace(
                    self._config,
                    services=tuple(services[key][0] for key in group),
                    endpoint_slices=tuple(e for key in group for e, _ in slices.get(key, ())),
                )
                allocations = {key: services[key][0].ingress_ips for key in group}
                state = announcing.desired_state(resources, allocations)
                cached = (signature, state, tuple(_order(a) for a in state.announcements))
                self._groups[group] = cached
                self.recomputed_groups += 1
            announcements.extend(zip(cached[2], cached[1].announcements, strict=True))
            problems.extend(cached[1].problems)
        for group in [g for g in self._groups if g not in live]:
            del self._groups[group]
        announcements.sort(key=lambda pair: pair[0])
        return DesiredState(
            announcements=tuple(a for _, a in announcements), problems=tuple(sorted(problems))
        )


def _sharing_groups(services: Mapping[str, tuple[Service, str]]) -> list[tuple[str, ...]]:
    """Services grouped by shared IPs (connected components), each group's keys sorted."""
    parent = {key: key for key in services}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    owner_of_ip: dict[object, str] = {}
    for key in sorted(services):
        for ip in services[key][0].ingress_ips:
            other = owner_of_ip.setdefault(ip, key)
            if other != key:
                parent[root(key)] = root(other)
    groups: dict[str, list[str]] = {}
    for key in sorted(services):
        groups.setdefault(root(key), []).append(key)
    return [tuple(keys) for keys in groups.values()]
