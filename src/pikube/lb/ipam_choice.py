"""The allocator's decisions for one service (`pikube.lb.ipam`, rules 2 to 5): keep what it
holds, take the IPs it asks for, or pick a pool and the lowest usable address of each family in
it; a dual-stack service holding one family may get the other later. Pure.

Each decision either commits addresses in the address book and returns the `Allocation`, or
raises `ServiceError` with the one-line reason the service gets no address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from pikube.lb.ipam_addresses import AddressBook
from pikube.lb.ipam_pools import PoolIndex, join
from pikube.lb.ipam_requests import Allocation, Entry, Families, ServiceError, check_families
from pikube.lb.model import IPAddress, IPAddressPool


class Chooser:
    """Addresses for services from the pools of `pools`, as `book` says they are used."""

    def __init__(self, pools: PoolIndex, book: AddressBook) -> None:
        self.pools = pools
        self.book = book

    def allocate(self, entry: Entry) -> Allocation:
        """New addresses for a service that holds none (or none still valid)."""
        service, pools = entry.service, self.pools
        if not pools.by_name:
            raise ServiceError("no IPAddressPool is configured")
        if isinstance(entry.wants, str):
            raise ServiceError(entry.wants)
        families, requested, pool_name = (
            entry.wants.families,
            entry.wants.requested,
            entry.wants.pool_name,
        )
        if pool_name is not None and pool_name not in pools.by_name:
            raise ServiceError(f"metallb.io/address-pool: there is no IPAddressPool {pool_name!r}")
        if requested:
            return self._assign_requested(entry, requested, families, pool_name)
        if pool_name is not None:
            pool = pools.by_name[pool_name]
            if not pools.serves(pool, service):
                raise ServiceError(
                    f"metallb.io/address-pool: pool {pool_name!r} does not serve this service "
                    "(its serviceAllocation selects other namespaces or services)"
                )
            found = self._best_in(entry, [pool], families)
            if found is None:
                raise ServiceError(
                    f"no free {families.describe()} address in pool {pool_name!r} "
                    "(metallb.io/address-pool)"
                )
            return self._commit(entry, found[1], found[0])
        pinned = pools.pinned_serving(service)
        found = self._best_in(entry, pinned, families)
        if found is None:
            found = self._best_in(entry, pools.fallback, families)
        if found is None:
            tried = [p.name for p in (*pinned, *pools.fallback)]
            if not tried:
                raise ServiceError(
                    "no IPAddressPool may assign addresses to this service automatically "
                    "(autoAssign is false, or serviceAllocation selects other namespaces or "
                    "services); request one with metallb.io/address-pool or loadBalancerIPs"
                )
            raise ServiceError(
                f"no free {families.describe()} address in the pools it may use: "
                + ", ".join(tried)
            )
        return self._commit(entry, found[1], found[0])

    def keep_held(self, entry: Entry) -> Allocation | None:
        """The service's held IPs, committed, if they are still valid for it; else None."""
        held = entry.held
        if isinstance(entry.wants, str):
            return None  # allocate says why
        families, requested = entry.wants.families, entry.wants.requested
        if requested and set(requested) != set(held):
            return None  # the user asks for other IPs now
        if len({ip.version for ip in held}) != len(held) or check_families(held, families, ""):
            return None
        pool = self.pools.pool_of(held[0])
        if pool is None or any(not pool.contains(ip) for ip in held):
            return None
        pool_name = entry.wants.pool_name
        if pool_name is not None and pool.name != pool_name:
            return None
        if not self.pools.serves(pool, entry.service):
            return None
        if any(self.book.conflict(ip.version, int(ip), entry) for ip in held):
            return None
        return self._commit(entry, in_order(held, families), pool)

    def top_up(self, entry: Entry) -> None:
        """A PreferDualStack service holding one family gets the other from the same pool,
        if that pool has one free (MetalLB's AllocateFromPoolForAdditionalFamily)."""
        allocation = entry.allocation
        assert allocation is not None
        assert not isinstance(entry.wants, str)  # it was kept, so its request is valid
        families = entry.wants.families
        if not families.dual or len(allocation.ips) != 1 or entry.wants.requested:
            return
        other = next(v for v in families.order if v != allocation.ips[0].version)
        pool = self.pools.by_name[allocation.pool]
        extra = self.book.lowest_in(entry, pool, other)
        if extra is None:
            return
        self.book.give_back(entry, allocation.ips)
        ips = in_order([allocation.ips[0], address(other, extra)], families)
        entry.allocation = self._commit(entry, ips, pool)

    def _assign_requested(
        self,
        entry: Entry,
        requested: tuple[IPAddress, ...],
        families: Families,
        pool_name: str | None,
    ) -> Allocation:
        what = "requested IP"
        wrong = check_families(requested, families, what)
        if wrong:
            raise ServiceError(wrong)
        pool = self.pools.pool_of_all(requested, what)
        if pool_name is not None and pool.name != pool_name:
            raise ServiceError(
                f"{what} {join(requested)} is in pool {pool.name!r}, but "
                f"metallb.io/address-pool asks for pool {pool_name!r}"
            )
        if not self.pools.serves(pool, entry.service):
            raise ServiceError(
                f"{what} {join(requested)} is in pool {pool.name!r}, which does not serve this "
                "service (its serviceAllocation selects other namespaces or services)"
            )
        for ip in requested:
            conflict = self.book.conflict(ip.version, int(ip), entry)
            if conflict:
                raise ServiceError(f"{what} {ip} {conflict}")
        return self._commit(entry, in_order(requested, families), pool)

    def _best_in(
        self, entry: Entry, pools: Sequence[IPAddressPool], families: Families
    ) -> tuple[IPAddressPool, list[IPAddress]] | None:
        """MetalLB's choice of pool: the first that has every family wanted; for
        PreferDualStack, failing that, the first with the preferred family, then any."""
        primary, secondary = families.order[0], families.order[-1]
        first_primary: tuple[IPAddressPool, list[IPAddress]] | None = None
        first_secondary: tuple[IPAddressPool, list[IPAddress]] | None = None
        for pool in pools:
            found: dict[int, int] = {}
            for version in families.order:
                n = self.book.lowest_in(entry, pool, version)
                if n is not None:
                    found[version] = n
            if len(found) == len(families.order):
                return pool, [address(v, found[v]) for v in families.order]
            if families.require_all:
                continue
            if primary in found and first_primary is None:
                first_primary = pool, [address(primary, found[primary])]
            if secondary in found and first_secondary is None:
                first_secondary = pool, [address(secondary, found[secondary])]
        return first_primary or first_secondary

    def _commit(self, entry: Entry, ips: Sequence[IPAddress], pool: IPAddressPool) -> Allocation:
        self.book.take(entry, ips)
        return Allocation(tuple(ips), pool.name)


def in_order(ips: Iterable[IPAddress], families: Families) -> list[IPAddress]:
    """The addresses with the preferred family first."""
    return sorted(ips, key=lambda ip: families.order.index(ip.version))


def address(version: int, n: int) -> IPAddress:
    return ipaddress.IPv4Address(n) if version == 4 else ipaddress.IPv6Address(n)
