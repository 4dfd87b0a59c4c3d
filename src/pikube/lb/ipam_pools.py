"""The allocator's view of its pools (`pikube.lb.ipam`): which pool an address lies in, which
pools may serve a service, and in which order pools are tried (rule 3 of ipam.py). Pure.

Pools never overlap (the configuration refuses that), so the ranges of each family, sorted by
their first address, answer "which pool holds x" by binary search.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence

from pikube.lb.ipam_requests import ServiceError
from pikube.lb.model import (
    NAMESPACE_NAME_LABEL,
    IPAddress,
    IPAddressPool,
    Namespace,
    Service,
    any_selector_matches,
)


class PoolIndex:
    """The pools by name and by address, and the namespaces' labels their selectors match."""

    def __init__(
        self, pools: Iterable[IPAddressPool], namespaces: Iterable[Namespace] = ()
    ) -> None:
        self.by_name = {p.name: p for p in pools}
        self._namespace_labels = {
            ns.name: {**ns.labels, NAMESPACE_NAME_LABEL: ns.name} for ns in namespaces
        }
        # Per family: (first, last, pool) sorted by first.
        self._ranges: dict[int, list[tuple[int, int, IPAddressPool]]] = {4: [], 6: []}
        for pool in self.by_name.values():
            for rng in pool.addresses:
                self._ranges[rng.version].append((int(rng.first), int(rng.last), pool))
        for spans in self._ranges.values():
            spans.sort(key=lambda s: s[0])
        self._range_starts = {v: [s[0] for s in spans] for v, spans in self._ranges.items()}
        # Rule 3: pools pinned by serviceAllocation (priority: lower first, unset last, ties
        # by name), then the autoAssign pools without serviceAllocation (by name).
        self.pinned = sorted(
            (p for p in self.by_name.values() if p.service_allocation and p.auto_assign),
            key=lambda p: (
                p.service_allocation is not None and p.service_allocation.priority == 0,
                p.service_allocation.priority if p.service_allocation else 0,
                p.name,
            ),
        )
        self.fallback = sorted(
            (p for p in self.by_name.values() if p.auto_assign and not p.service_allocation),
            key=lambda p: p.name,
        )

    def pool_of(self, ip: IPAddress) -> IPAddressPool | None:
        """The pool whose ranges hold ip (even an address its avoidBuggyIPs skips), or None."""
        n = int(ip)
        i = bisect_right(self._range_starts[ip.version], n) - 1
        if i < 0:
            return None
        first, last, pool = self._ranges[ip.version][i]
        return pool if first <= n <= last else None

    def pool_of_all(self, ips: Sequence[IPAddress], what: str) -> IPAddressPool:
        """The one pool that holds every address of ips; ServiceError says why there is none."""
        pools: list[IPAddressPool] = []
        for ip in ips:
            pool = self.pool_of(ip)
            if pool is None:
                raise ServiceError(f"{what} {ip} is not in any IPAddressPool")
            if not pool.contains(ip):
                raise ServiceError(
                    f"{what} {ip} ends in .0 or .255, which pool {pool.name!r} avoids "
                    "(avoidBuggyIPs)"
                )
            pools.append(pool)
        if len({p.name for p in pools}) > 1:
            raise ServiceError(
                f"{what}s {join(ips)} are in different pools "
                f"({', '.join(p.name for p in pools)}); both must come from one pool"
            )
        return pools[0]

    def serves(self, pool: IPAddressPool, service: Service) -> bool:
        """True if the pool's serviceAllocation (if any) lets it serve this service."""
        sa = pool.service_allocation
        if sa is None:
            return True
        if (sa.namespaces or sa.namespace_selectors) and service.namespace not in sa.namespaces:
            labels = self._namespace_labels.get(
                service.namespace, {NAMESPACE_NAME_LABEL: service.namespace}
            )
            if not any_selector_matches(sa.namespace_selectors, labels):
                return False
        return not sa.service_selectors or any_selector_matches(
            sa.service_selectors, service.labels
        )

    def pinned_serving(self, service: Service) -> list[IPAddressPool]:
        """The pools pinned to this service by serviceAllocation, in the order they are tried."""
        return [p for p in self.pinned if self.serves(p, service)]


def join(ips: Iterable[IPAddress]) -> str:
    return ",".join(str(ip) for ip in ips)
