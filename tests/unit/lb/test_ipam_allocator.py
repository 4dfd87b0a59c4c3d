"""The allocator over time: nothing moves but what changed, waiting services get freed IPs,
and nothing is proportional to a pool's size."""

from __future__ import annotations

import dataclasses
import ipaddress
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from pikube.lb.ipam import Allocation, Allocator, allocate
from pikube.lb.ipam_addresses import IntervalSet as _IntervalSet
from pikube.lb.model import (
    AddressRange,
    ClusterResources,
    IPAddressPool,
    IPFamily,
    IPFamilyPolicy,
    Service,
    ServicePort,
    ServiceType,
)

ip = ipaddress.ip_address


def pool(name: str, first: str, last: str, **kwargs: object) -> IPAddressPool:
    return IPAddressPool(name, (AddressRange(ip(first), ip(last)),), **kwargs)  # type: ignore[arg-type]


def lb(name: str, namespace: str = "default", **kwargs: object) -> Service:
    return Service(namespace, name, type=ServiceType.LOAD_BALANCER, **kwargs)  # type: ignore[arg-type]


def ips(allocator: Allocator, key: str) -> list[str]:
    allocation = allocator.allocation(key)
    return [] if allocation is None else [str(a) for a in allocation.ips]


POOL = pool("p", "203.0.113.10", "203.0.113.13")


def test_deleting_a_service_moves_no_other_and_frees_its_ip() -> None:
    # MetalLB #2723: deleting one service gave another service a new IP.
    allocator = Allocator([POOL])
    allocator.sync([lb("a"), lb("b"), lb("c")])
    before = {k: ips(allocator, k) for k in ("default/b", "default/c")}
    assert allocator.delete("default/a") == ("default/a",)
    assert {k: ips(allocator, k) for k in before} == before
    assert allocator.upsert(lb("d")) == ("default/d",)
    assert ips(allocator, "default/d") == ["203.0.113.10"]  # the freed address


def test_sync_applies_removals_changes_and_additions_at_once() -> None:
    allocator = Allocator([POOL])
    allocator.sync([lb("a"), lb("b"), lb("c", load_balancer_ip="203.0.113.13")])
    waiting = lb("aw", load_balancer_ip="203.0.113.10")
    assert allocator.upsert(waiting) == ("default/aw",)
    assert allocator.error("default/aw") is not None
    changed = allocator.sync([lb("b"), lb("c", load_balancer_ip="203.0.113.12"), waiting, lb("d")])
    assert changed == ("default/a", "default/aw", "default/c", "default/d")
    assert ips(allocator, "default/b") == ["203.0.113.11"]
    assert ips(allocator, "default/c") == ["203.0.113.12"]
    assert ips(allocator, "default/aw") == ["203.0.113.10"]  # freed by a, asked for by aw
    assert ips(allocator, "default/d") == ["203.0.113.13"]  # freed by c's change
    assert allocator.allocation("default/a") is None


def test_a_restart_keeps_every_ip_held_in_status() -> None:
    # MetalLB #2443: a restarted controller reassigned IPs. Here the status is the truth, and
    # holders go first, so an older newcomer cannot take a held address.
    first = allocate(ClusterResources(pools=(POOL,), services=(lb("x"), lb("y"))))
    restarted = ClusterResources(
        pools=(POOL,),
        services=(
            lb("y", ingress_ips=first.allocations["default/y"].ips),
            lb("a-newcomer"),
            lb("x", ingress_ips=first.allocations["default/x"].ips),
        ),
    )
    second = allocate(restarted)
    assert second.allocations["default/x"] == first.allocations["default/x"]
    assert second.allocations["default/y"] == first.allocations["default/y"]
    assert second.allocations["default/a-newcomer"].ips == (ip("203.0.113.12"),)


def test_a_waiting_service_gets_the_ip_it_asked_for_once_it_is_free() -> None:
    # MetalLB #321: the second service asking for a fixed IP never got it.
    allocator = Allocator([POOL])
    allocator.sync([lb("old", load_balancer_ip="203.0.113.11")])
    assert allocator.upsert(lb("new", load_balancer_ip="203.0.113.11")) == ("default/new",)
    assert "already used by default/old" in (allocator.error("default/new") or "")
    assert allocator.delete("default/old") == ("default/new", "default/old")
    assert ips(allocator, "default/new") == ["203.0.113.11"]
    assert allocator.result().errors == {}


def test_changing_one_service_moves_only_that_service() -> None:
    shared = {"metallb.io/allow-shared-ip": "k"}
    a = lb("a", annotations=shared, ports=(ServicePort(80),))
    b = lb("b", annotations=shared, ports=(ServicePort(443),))
    allocator = Allocator([POOL])
    allocator.sync([a, b])
    assert ips(allocator, "default/a") == ips(allocator, "default/b") == ["203.0.113.10"]
    # `a` (first in processing order) now clashes with `b` on port 443: `a` moves, not `b`.
    changed = allocator.upsert(dataclasses.replace(a, ports=(ServicePort(443),)))
    assert changed == ("default/a",)
    assert ips(allocator, "default/b") == ["203.0.113.10"]
    assert ips(allocator, "default/a") == ["203.0.113.11"]


def test_an_unchanged_service_is_not_reprocessed() -> None:
    allocator = Allocator([POOL])
    allocator.sync([lb("a")])
    assert allocator.upsert(lb("a")) == ()
    assert allocator.sync([lb("a")]) == ()
    # A change that keeps the IP is not reported either.
    assert allocator.upsert(lb("a", labels={"tier": "web"})) == ()
    assert ips(allocator, "default/a") == ["203.0.113.10"]


def test_a_service_that_stops_being_a_load_balancer_frees_its_ip() -> None:
    allocator = Allocator([POOL])
    allocator.sync([lb("a"), lb("b")])
    assert allocator.upsert(Service("default", "a", type=ServiceType.CLUSTER_IP)) == ("default/a",)
    assert "default/a" not in allocator.result().allocations
    assert "default/a" not in allocator.result().errors
    allocator.upsert(lb("c"))
    assert ips(allocator, "default/c") == ["203.0.113.10"]


def test_a_source_without_status_stays_stable_through_previous() -> None:
    # A directory of manifests has no status: `previous` is what keeps IPs in place.
    services = (lb("a"), lb("b"), lb("c"))
    first = allocate(ClusterResources(pools=(POOL,), services=services))
    fewer = ClusterResources(pools=(POOL,), services=services[1:])
    assert allocate(fewer, previous=first.allocations).allocations == {
        k: v for k, v in first.allocations.items() if k != "default/a"
    }
    # Without it, lowest-free-first would move b and c down.
    assert allocate(fewer).allocations["default/b"].ips == (ip("203.0.113.10"),)


def test_status_wins_over_previous() -> None:
    previous = {"default/a": Allocation((ip("203.0.113.12"),), "p")}
    result = allocate(
        ClusterResources(pools=(POOL,), services=(lb("a", ingress_ips=(ip("203.0.113.13"),)),)),
        previous=previous,
    )
    assert result.allocations["default/a"].ips == (ip("203.0.113.13"),)


def test_a_new_pool_set_keeps_what_is_still_valid() -> None:
    allocator = Allocator([POOL])
    allocator.sync([lb("a"), lb("b"), lb("c")])
    kept = allocator.result().allocations
    shrunk = Allocator([pool("p", "203.0.113.11", "203.0.113.20")])
    shrunk.sync([lb("a"), lb("b"), lb("c")], previous=kept)
    assert ips(shrunk, "default/b") == ["203.0.113.11"]
    assert ips(shrunk, "default/c") == ["203.0.113.12"]
    assert ips(shrunk, "default/a") == ["203.0.113.13"]  # only the one outside the pool moves


def test_a_full_pool_makes_services_wait_until_it_grows() -> None:
    tiny = pool("t", "203.0.113.1", "203.0.113.1")
    result = allocate(ClusterResources(pools=(tiny,), services=(lb("a"), lb("b"))))
    assert "no free IPv4 address" in result.errors["default/b"]
    grown = allocate(
        ClusterResources(
            pools=(pool("t", "203.0.113.1", "203.0.113.2"),), services=(lb("a"), lb("b"))
        ),
        previous=result.allocations,
    )
    assert grown.allocations["default/a"] == result.allocations["default/a"]
    assert grown.allocations["default/b"].ips == (ip("203.0.113.2"),)


def test_a_prefer_dual_stack_top_up_never_takes_a_held_address() -> None:
    dual = IPAddressPool(
        "dual",
        (
            AddressRange(ip("203.0.113.0"), ip("203.0.113.3")),
            AddressRange(ip("2001:db8:68::1"), ip("2001:db8:68::2")),
        ),
    )
    prefer = lb(
        "a", ip_family_policy=IPFamilyPolicy.PREFER_DUAL_STACK, ingress_ips=(ip("203.0.113.0"),)
    )
    v6 = lb("b", ip_families=(IPFamily.IPV6,), ingress_ips=(ip("2001:db8:68::1"),))
    result = allocate(ClusterResources(pools=(dual,), services=(prefer, v6)))
    assert result.allocations["default/b"].ips == (ip("2001:db8:68::1"),)
    assert result.allocations["default/a"].ips == (ip("203.0.113.0"), ip("2001:db8:68::2"))


# --- size: what is allocated, never the pool ----------------------------------------------------


def test_huge_pools_cost_what_their_allocations_cost() -> None:
    # A /8 and an IPv6 /64 would take gigabytes (or forever) if materialised.
    huge = [
        pool("v4", "10.0.0.0", "10.255.255.255", avoid_buggy_ips=True),
        pool("v6", "2001:db8:68::", "2001:db8:68::ffff:ffff:ffff:ffff"),
    ]
    services = [lb(f"s{i:04}") for i in range(600)] + [
        lb(f"v6-{i:04}", ip_families=(IPFamily.IPV6,)) for i in range(300)
    ]
    result = allocate(ClusterResources(pools=tuple(huge), services=tuple(services)))
    assert result.errors == {}
    assert result.allocations["default/s0000"].ips == (ip("10.0.0.1"),)
    assert result.allocations["default/s0599"].ips == (ip("10.0.2.92"),)  # .0 and .255 skipped
    assert result.allocations["default/v6-0299"].ips == (ip("2001:db8:68::12b"),)


def _allocator_bytes(the_pool: IPAddressPool, count: int) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        allocator = Allocator([the_pool])
        allocator.sync([lb(f"s{i}") for i in range(count)])
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert len(allocator.result().allocations) == count
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def test_a_slash_8_pool_takes_the_memory_of_a_slash_30_with_the_same_allocations() -> None:
    small = _allocator_bytes(pool("p", "10.0.0.0", "10.0.0.3"), 4)
    large = _allocator_bytes(pool("p", "10.0.0.0", "10.255.255.255"), 4)
    assert abs(large - small) <= 0.10 * small, (small, large)


# --- the interval set, against a plain set ------------------------------------------------------


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=80), st.integers(0, 45))
def test_the_interval_set_behaves_like_a_set(ops: list[tuple[bool, int]], probe: int) -> None:
    intervals, plain = _IntervalSet(), set()
    for add, n in ops:
        if add:
            intervals.add(n)
            plain.add(n)
        else:
            intervals.discard(n)
            plain.discard(n)
    assert all((n in intervals) == (n in plain) for n in range(-1, 47))
    expected = probe
    while expected in plain:
        expected += 1
    assert intervals.lowest_absent(probe) == expected
    # Merged: as many intervals as runs of consecutive members.
    runs = sum(1 for n in plain if n - 1 not in plain)
    assert intervals.interval_count == runs
