"""Properties of the allocator over random small clusters (hypothesis).

- no address is given to two services that may not share it;
- every allocated address lies in a pool the service may use;
- the result does not depend on the order objects were read in;
- deleting a service never changes another's IPs (with an Allocator, and across fresh
  allocations once the result is written back as status, as a controller does; there a
  PreferDualStack service holding one family may gain the other, never lose or swap one).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from pikube.lb.ipam import AllocationResult, Allocator, allocate, annotation
from pikube.lb.model import (
    NAMESPACE_NAME_LABEL,
    AddressRange,
    ClusterResources,
    ExternalTrafficPolicy,
    IPAddress,
    IPAddressPool,
    IPFamily,
    IPFamilyPolicy,
    LabelSelector,
    Namespace,
    Protocol,
    Service,
    ServiceAllocation,
    ServicePort,
    ServiceType,
)

ip = ipaddress.ip_address

# Disjoint ranges that pools are built from (so every generated config is valid).
RANGES = [
    AddressRange(ip("203.0.113.0"), ip("203.0.113.3")),
    AddressRange(ip("203.0.113.8"), ip("203.0.113.9")),
    AddressRange(ip("203.0.113.254"), ip("203.0.113.255")),
    AddressRange(ip("2001:db8:68::"), ip("2001:db8:68::2")),
    AddressRange(ip("2001:db8:68::10"), ip("2001:db8:68::11")),
    AddressRange(ip("198.51.100.0"), ip("198.51.100.1")),
]
ADDRESSES: list[IPAddress] = [
    ipaddress.IPv4Address(n) if r.version == 4 else ipaddress.IPv6Address(n)
    for r in RANGES
    for n in range(int(r.first), int(r.last) + 1)
]
OUTSIDE = ip("203.0.113.100")
PORTS = [ServicePort(80), ServicePort(443), ServicePort(53, Protocol.UDP)]
TIMES = [None, datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)]
SELECTORS = [LabelSelector({"tier": "web"}), LabelSelector({"env": "prod"})]


@st.composite
def pools(draw: st.DrawFn) -> tuple[IPAddressPool, ...]:
    owner = draw(st.lists(st.integers(-1, 2), min_size=len(RANGES), max_size=len(RANGES)))
    result = []
    for index in range(3):
        ranges = tuple(r for r, o in zip(RANGES, owner, strict=True) if o == index)
        if not ranges:
            continue
        allocation = None
        if draw(st.booleans()):
            allocation = ServiceAllocation(
                priority=draw(st.integers(0, 2)),
                namespaces=tuple(
                    draw(st.lists(st.sampled_from(["a", "b"]), unique=True, max_size=1))
                ),
                namespace_selectors=tuple(
                    draw(st.lists(st.sampled_from(SELECTORS[1:]), max_size=1))
                ),
                service_selectors=tuple(draw(st.lists(st.sampled_from(SELECTORS[:1]), max_size=1))),
            )
        result.append(
            IPAddressPool(
                name=f"pool{index}",
                addresses=tuple(draw(st.permutations(ranges))),
                auto_assign=draw(st.booleans()),
                avoid_buggy_ips=draw(st.booleans()),
                service_allocation=allocation,
            )
        )
    return tuple(result)


@st.composite
def services(draw: st.DrawFn) -> tuple[Service, ...]:
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from("stuvwxyz")),
            unique=True,
            max_size=9,
        )
    )
    result = []
    for namespace, name in keys:
        annotations: dict[str, str] = {}
        sharing = draw(st.sampled_from([None, "k1", "k2", ""]))
        if sharing is not None:
            annotations["metallb.io/allow-shared-ip"] = sharing
        requested = draw(st.lists(st.sampled_from([*ADDRESSES, OUTSIDE]), max_size=2, unique=True))
        request_by = draw(st.sampled_from(["annotation", "spec", "legacy"]))
        load_balancer_ip = None
        if requested and request_by == "spec":
            load_balancer_ip = str(requested[0])
        elif requested:
            prefix = "metallb.io/" if request_by == "annotation" else "metallb.universe.tf/"
            annotations[prefix + "loadBalancerIPs"] = ",".join(str(a) for a in requested)
        if draw(st.integers(0, 4)) == 0:
            annotations["metallb.io/address-pool"] = draw(
                st.sampled_from(["pool0", "pool1", "nope"])
            )
        policy = draw(st.sampled_from([None, *IPFamilyPolicy]))
        families = draw(
            st.sampled_from(
                [(), (IPFamily.IPV4,), (IPFamily.IPV6,), (IPFamily.IPV6, IPFamily.IPV4)]
            )
        )
        if policy in (None, IPFamilyPolicy.SINGLE_STACK):
            families = families[:1]
        result.append(
            Service(
                namespace=namespace,
                name=name,
                labels=draw(st.sampled_from([{}, {"tier": "web"}])),
                annotations=annotations,
                type=draw(
                    st.sampled_from([ServiceType.LOAD_BALANCER] * 4 + [ServiceType.CLUSTER_IP])
                ),
                load_balancer_ip=load_balancer_ip,
                load_balancer_class=draw(st.sampled_from([None] * 5 + ["other"])),
                external_traffic_policy=draw(st.sampled_from(list(ExternalTrafficPolicy))),
                selector=draw(st.sampled_from([{"app": "x"}, {"app": "y"}])),
                ports=tuple(draw(st.lists(st.sampled_from(PORTS), unique=True, max_size=2))),
                ip_families=families,
                ip_family_policy=policy,
                ingress_ips=tuple(
                    draw(st.lists(st.sampled_from(ADDRESSES), max_size=2, unique=True))
                ),
                creation_timestamp=draw(st.sampled_from(TIMES)),
            )
        )
    return tuple(result)


@st.composite
def clusters(draw: st.DrawFn) -> ClusterResources:
    namespaces = (
        Namespace("a", draw(st.sampled_from([{}, {"env": "prod"}]))),
        Namespace("b", {"env": "prod"}),
    )
    return ClusterResources(pools=draw(pools()), services=draw(services()), namespaces=namespaces)


# --- independent oracles of the rules -----------------------------------------------------------


def sharing_key(service: Service) -> str:
    return annotation(service, "allow-shared-ip") or ""


def backend(service: Service) -> object:
    if service.external_traffic_policy is ExternalTrafficPolicy.LOCAL:
        return sorted(service.selector.items())
    return None


def may_share(one: Service, other: Service) -> bool:
    ports = {(p.protocol, p.port) for p in one.ports}
    return (
        sharing_key(one) != ""
        and sharing_key(one) == sharing_key(other)
        and backend(one) == backend(other)
        and not ports & {(p.protocol, p.port) for p in other.ports}
    )


def serves(pool: IPAddressPool, service: Service, namespaces: tuple[Namespace, ...]) -> bool:
    sa = pool.service_allocation
    if sa is None:
        return True
    labels = {NAMESPACE_NAME_LABEL: service.namespace}
    for ns in namespaces:
        if ns.name == service.namespace:
            labels.update(ns.labels)
    in_namespace = (
        (not sa.namespaces and not sa.namespace_selectors)
        or service.namespace in sa.namespaces
        or any(s.matches(labels) for s in sa.namespace_selectors)
    )
    selected = not sa.service_selectors or any(
        s.matches(service.labels) for s in sa.service_selectors
    )
    return in_namespace and selected


def requested(service: Service) -> set[IPAddress]:
    text = annotation(service, "loadBalancerIPs") or service.load_balancer_ip or ""
    return {ip(t) for t in text.split(",") if t}


def allocated_ips(result: AllocationResult) -> dict[str, tuple[IPAddress, ...]]:
    return {key: a.ips for key, a in result.allocations.items()}


# --- the properties -----------------------------------------------------------------------------


@settings(max_examples=200)
@given(clusters())
def test_no_address_is_given_to_services_that_may_not_share_it(cluster: ClusterResources) -> None:
    result = allocate(cluster)
    by_key = {s.key: s for s in cluster.services}
    users: dict[IPAddress, list[str]] = {}
    for key, allocation in result.allocations.items():
        for address in allocation.ips:
            users.setdefault(address, []).append(key)
    for address, keys in users.items():
        for one, other in itertools.combinations(keys, 2):
            assert may_share(by_key[one], by_key[other]), (address, one, other)


@settings(max_examples=200)
@given(clusters())
def test_every_allocated_address_lies_in_a_pool_the_service_may_use(
    cluster: ClusterResources,
) -> None:
    result = allocate(cluster)
    by_key = {s.key: s for s in cluster.services}
    for key, allocation in result.allocations.items():
        service = by_key[key]
        assert service.type is ServiceType.LOAD_BALANCER
        assert service.load_balancer_class is None
        pool = cluster.pool(allocation.pool)
        assert pool is not None
        assert all(pool.contains(a) for a in allocation.ips), (key, allocation)
        assert len({a.version for a in allocation.ips}) == len(allocation.ips) >= 1
        assert serves(pool, service, cluster.namespaces)
        wanted_pool = annotation(service, "address-pool")
        assert wanted_pool in (None, pool.name)
        if requested(service):
            assert set(allocation.ips) == requested(service)
        elif not pool.auto_assign and wanted_pool is None:
            assert set(allocation.ips) & set(service.ingress_ips), (key, allocation)
    handled = {
        s.key
        for s in cluster.services
        if s.type is ServiceType.LOAD_BALANCER and s.load_balancer_class is None
    }
    assert set(result.allocations) | set(result.errors) == handled
    assert not set(result.allocations) & set(result.errors)


@settings(max_examples=200)
@given(clusters(), st.randoms(use_true_random=False))
def test_the_result_does_not_depend_on_reading_order(
    cluster: ClusterResources, rnd: random.Random
) -> None:
    shuffled = ClusterResources(
        pools=tuple(rnd.sample(cluster.pools, len(cluster.pools))),
        services=tuple(rnd.sample(cluster.services, len(cluster.services))),
        namespaces=tuple(rnd.sample(cluster.namespaces, len(cluster.namespaces))),
    )
    assert allocate(shuffled) == allocate(cluster)


@settings(max_examples=200)
@given(clusters(), st.data())
def test_deleting_a_service_never_changes_anothers_ips(
    cluster: ClusterResources, data: st.DataObject
) -> None:
    if not cluster.services:
        return
    gone = data.draw(st.sampled_from(cluster.services)).key
    remaining = tuple(s for s in cluster.services if s.key != gone)

    # With an Allocator: the controller's case.
    allocator = Allocator(cluster.pools, cluster.namespaces)
    allocator.sync(cluster.services)
    before = allocated_ips(allocator.result())
    allocator.delete(gone)
    after = allocated_ips(allocator.result())
    for key, addresses in before.items():
        if key != gone:
            assert after.get(key) == addresses, key

    # From scratch, once the result is the services' status (a restarted controller).
    first = allocate(cluster)
    with_status = tuple(
        dataclasses.replace(s, ingress_ips=first.allocations[s.key].ips)
        if s.key in first.allocations
        else dataclasses.replace(s, ingress_ips=())
        for s in remaining
    )
    second = allocate(dataclasses.replace(cluster, services=with_status))
    by_key = {s.key: s for s in cluster.services}
    for key, allocation in first.allocations.items():
        if key == gone:
            continue
        now = second.allocations.get(key)
        assert now is not None, key
        assert now.pool == allocation.pool, key
        if now != allocation:
            # The one allowed difference: a PreferDualStack service holding one family gets
            # the other from its pool when an address is free (MetalLB does the same).
            assert by_key[key].ip_family_policy is IPFamilyPolicy.PREFER_DUAL_STACK, key
            assert len(allocation.ips) == 1, key
            assert allocation.ips[0] in now.ips, key


@settings(max_examples=200)
@given(clusters(), st.data())
def test_waiting_services_are_retried_whenever_they_could_succeed(
    cluster: ClusterResources, data: st.DataObject
) -> None:
    # The allocator skips retrying waiting services when a change gave nothing back; check
    # that such a retry would indeed have changed nothing.
    allocator = Allocator(cluster.pools, cluster.namespaces)
    allocator.sync(cluster.services)
    current = {s.key: s for s in cluster.services}
    for _ in range(data.draw(st.integers(1, 6))):
        if not current:
            break
        service = data.draw(st.sampled_from(sorted(current.values(), key=lambda s: s.key)))
        how = data.draw(st.sampled_from(["delete", "ports", "sharing", "type", "request"]))
        if how == "delete":
            allocator.delete(service.key)
            del current[service.key]
            continue
        if how == "ports":
            service = dataclasses.replace(
                service,
                ports=tuple(data.draw(st.lists(st.sampled_from(PORTS), unique=True, max_size=2))),
            )
        elif how == "sharing":
            key = data.draw(st.sampled_from(["k1", "k2", ""]))
            service = dataclasses.replace(
                service, annotations={**service.annotations, "metallb.io/allow-shared-ip": key}
            )
        elif how == "type":
            service = dataclasses.replace(
                service, type=data.draw(st.sampled_from(list(ServiceType)))
            )
        else:
            address = data.draw(st.sampled_from(ADDRESSES))
            service = dataclasses.replace(
                service,
                annotations={
                    k: v for k, v in service.annotations.items() if "loadBalancerIPs" not in k
                },
                load_balancer_ip=str(address),
            )
        allocator.upsert(service)
        current[service.key] = service
        assert allocator._process([], freed=None) == set()
