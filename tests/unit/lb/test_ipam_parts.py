"""The allocator's parts on their own: the pool index (which pool holds an address, which
pools serve a service, in which order) and the address book (who uses an address, the lowest
usable one, why one may not be used). The allocator's own tests cover them together."""

from __future__ import annotations

import ipaddress

import pytest

from pikube.lb.ipam_addresses import AddressBook
from pikube.lb.ipam_pools import PoolIndex
from pikube.lb.ipam_requests import Entry, ServiceError
from pikube.lb.model import (
    AddressRange,
    IPAddressPool,
    LabelSelector,
    Namespace,
    Protocol,
    Service,
    ServiceAllocation,
    ServiceType,
)

ip = ipaddress.ip_address


def pool(name: str, *spans: tuple[str, str], **kwargs: object) -> IPAddressPool:
    ranges = tuple(AddressRange(ip(a), ip(b)) for a, b in spans)
    return IPAddressPool(name, ranges, **kwargs)  # type: ignore[arg-type]


def entry(name: str, sharing: str = "", backend: str = "", ports: tuple[int, ...] = (80,)) -> Entry:
    service = Service("default", name, type=ServiceType.LOAD_BALANCER)
    return Entry(
        service=service,
        handled=True,
        sharing_key=sharing,
        backend_key=backend,
        ports=frozenset((Protocol.TCP, p) for p in ports),
    )


def n(address: str) -> int:
    return int(ip(address))


# --- the pool index ---


def test_an_address_lies_in_the_pool_of_its_range_and_gaps_belong_to_none() -> None:
    a = pool("a", ("203.0.113.10", "203.0.113.19"), ("2001:db8:68::10", "2001:db8:68::1f"))
    b = pool("b", ("203.0.113.30", "203.0.113.39"))
    index = PoolIndex([b, a])
    assert index.pool_of(ip("203.0.113.10")) is a
    assert index.pool_of(ip("203.0.113.39")) is b
    assert index.pool_of(ip("2001:db8:68::1f")) is a
    for outside in ("203.0.113.9", "203.0.113.20", "203.0.113.40", "2001:db8:68::20"):
        assert index.pool_of(ip(outside)) is None


def test_explicit_ips_must_share_one_pool_and_avoid_its_buggy_addresses() -> None:
    index = PoolIndex(
        [
            pool("a", ("203.0.113.0", "203.0.113.9"), avoid_buggy_ips=True),
            pool("b", ("203.0.113.30", "203.0.113.39"), ("2001:db8:68::1", "2001:db8:68::9")),
        ]
    )
    assert index.pool_of_all([ip("203.0.113.31"), ip("2001:db8:68::2")], "IP").name == "b"
    with pytest.raises(ServiceError, match=r"^IP 203\.0\.113\.0 ends in \.0 or \.255"):
        index.pool_of_all([ip("203.0.113.0")], "IP")
    with pytest.raises(ServiceError, match=r"^IP 198\.51\.100\.1 is not in any IPAddressPool$"):
        index.pool_of_all([ip("198.51.100.1")], "IP")
    with pytest.raises(ServiceError, match=r"^IPs 203\.0\.113\.1,203\.0\.113\.31 are in"):
        index.pool_of_all([ip("203.0.113.1"), ip("203.0.113.31")], "IP")


def test_pinned_pools_are_tried_by_priority_unset_last_then_by_name() -> None:
    def pinned(name: str, priority: int) -> IPAddressPool:
        return pool(
            name, ("203.0.113.1", "203.0.113.1"), service_allocation=ServiceAllocation(priority)
        )

    index = PoolIndex(
        [
            pinned("z-unset", 0),
            pinned("b-two", 2),
            pinned("a-two", 2),
            pinned("c-one", 1),
            pool("manual", ("203.0.113.2", "203.0.113.2"), auto_assign=False),
            pool("y-free", ("203.0.113.3", "203.0.113.3")),
            pool("x-free", ("203.0.113.4", "203.0.113.4")),
        ]
    )
    assert [p.name for p in index.pinned] == ["c-one", "a-two", "b-two", "z-unset"]
    assert [p.name for p in index.fallback] == ["x-free", "y-free"]


def test_a_pool_serves_namespaces_by_name_or_label_and_services_by_label() -> None:
    by_label = ServiceAllocation(
        namespace_selectors=(LabelSelector({"team": "web"}),),
        service_selectors=(LabelSelector({"tier": "front"}),),
    )
    by_name = ServiceAllocation(namespaces=("ops",))
    labelled = pool("l", ("203.0.113.1", "203.0.113.1"), service_allocation=by_label)
    named = pool("n", ("203.0.113.2", "203.0.113.2"), service_allocation=by_name)
    index = PoolIndex([labelled, named], [Namespace("shop", {"team": "web"})])

    def svc(namespace: str, **labels: str) -> Service:
        return Service(namespace, "s", type=ServiceType.LOAD_BALANCER, labels=labels)

    assert index.serves(labelled, svc("shop", tier="front"))
    assert not index.serves(labelled, svc("shop", tier="back"))
    assert not index.serves(labelled, svc("unknown", tier="front"))  # no labels known
    assert index.serves(named, svc("ops"))
    assert not index.serves(named, svc("shop"))
    assert [p.name for p in index.pinned_serving(svc("ops"))] == ["n"]


# --- the address book ---

POOL = pool("p", ("203.0.113.0", "203.0.113.9"))


def test_the_lowest_usable_address_skips_used_ones_and_is_free_again_when_given_back() -> None:
    book = AddressBook()
    a, b, c = entry("a"), entry("b"), entry("c")
    book.take(a, [ip("203.0.113.0")])
    book.take(b, [ip("203.0.113.1")])
    assert book.lowest_in(c, POOL, 4) == n("203.0.113.2")
    book.give_back(a, [ip("203.0.113.0")])
    assert book.lowest_in(c, POOL, 4) == n("203.0.113.0")
    assert book.lowest_in(c, POOL, 6) is None  # the pool has no IPv6 range


def test_avoid_buggy_ips_skips_addresses_ending_in_0_or_255() -> None:
    buggy = pool("b", ("203.0.112.255", "203.0.113.1"), avoid_buggy_ips=True)
    book = AddressBook()
    assert book.lowest_in(entry("a"), buggy, 4) == n("203.0.113.1")
    book.take(entry("x"), [ip("203.0.113.1")])
    assert book.lowest_in(entry("a"), buggy, 4) is None


def test_a_lower_address_shared_under_the_same_key_wins_over_a_free_one() -> None:
    book = AddressBook()
    book.take(entry("low", sharing="k", ports=(80,)), [ip("203.0.113.0")])
    book.take(entry("plain"), [ip("203.0.113.1")])
    book.take(entry("high", sharing="k", ports=(80,)), [ip("203.0.113.5")])
    assert book.lowest_in(entry("s", sharing="k", ports=(443,)), POOL, 4) == n("203.0.113.0")
    # Port 80 is taken on both shared addresses: the lowest free one it is.
    assert book.lowest_in(entry("s", sharing="k", ports=(80,)), POOL, 4) == n("203.0.113.2")
    assert book.lowest_in(entry("s", sharing="other"), POOL, 4) == n("203.0.113.2")


def test_a_shared_address_stays_shared_until_the_last_user_gives_it_back() -> None:
    book = AddressBook()
    a, b = entry("a", sharing="k", ports=(80,)), entry("b", sharing="k", ports=(81,))
    book.take(a, [ip("203.0.113.4")])
    book.take(b, [ip("203.0.113.4")])
    book.take(entry("z"), [ip(f"203.0.113.{i}") for i in (0, 1, 2, 3, 5)])
    book.give_back(a, [ip("203.0.113.4")])
    assert book.lowest_in(entry("c", sharing="k", ports=(80,)), POOL, 4) == n("203.0.113.4")
    assert book.lowest_in(entry("c"), POOL, 4) == n("203.0.113.6")
    book.give_back(b, [ip("203.0.113.4")])
    assert book.conflict(4, n("203.0.113.4"), entry("x")) is None
    assert book.lowest_in(entry("c"), POOL, 4) == n("203.0.113.4")


@pytest.mark.parametrize(
    ("user", "newcomer", "reason"),
    [
        (entry("a"), entry("b"), "is already used by default/a, which does not allow sharing"),
        (
            entry("a", sharing="k"),
            entry("b"),
            "is already used by default/a; sharing it needs metallb.io/allow-shared-ip 'k' "
            "on this service too",
        ),
        (
            entry("a", sharing="k"),
            entry("b", sharing="j"),
            "is already used by default/a with sharing key 'k', not 'j'",
        ),
        (
            entry("a", sharing="k", backend="app=x"),
            entry("b", sharing="k", backend="app=y"),
            "is already used by default/a, and services with externalTrafficPolicy Local "
            "may share an address only if they select the same pods",
        ),
        (
            entry("a", sharing="k", ports=(80, 443)),
            entry("b", sharing="k", ports=(443,)),
            "is already used by default/a on TCP port 443",
        ),
        (entry("a", sharing="k", ports=(80,)), entry("b", sharing="k", ports=(81,)), None),
        (entry("a"), entry("a"), None),  # its own address
    ],
)
def test_why_an_address_in_use_cannot_be_shared(
    user: Entry, newcomer: Entry, reason: str | None
) -> None:
    book = AddressBook()
    book.take(user, [ip("203.0.113.7")])
    assert book.conflict(4, n("203.0.113.7"), newcomer) == reason
    assert book.conflict(4, n("203.0.113.8"), newcomer) is None
