"""The allocator: which IPs each LoadBalancer service gets, and from which pool. Pure.

Rules (MetalLB's allocator's, minus its surprises; docs/decisions/0011):

1. Only services of type LoadBalancer whose loadBalancerClass is the one handled (by default:
   none) are handled; others appear nowhere in the result.
2. A service asks for IPs explicitly with `metallb.io/loadBalancerIPs` (a comma list; the
   legacy `metallb.universe.tf/` prefix is honoured) or `spec.loadBalancerIP`, never both.
   Explicit IPs may come from `autoAssign: false` pools, must all lie in one pool that serves
   the service, and in the `metallb.io/address-pool` pool if that is set.
3. Otherwise `metallb.io/address-pool` restricts allocation to that one pool. Otherwise the
   pools pinned to the service by `serviceAllocation` are tried (priority: lower first, unset
   last, ties by pool name), then the `autoAssign` pools without `serviceAllocation` (by name).
4. Inside a pool, ranges in the order written, lowest usable address first; `avoidBuggyIPs`
   skips IPv4 addresses ending in .0 or .255. An address is usable if it is free, or if the
   services on it share this service's `allow-shared-ip` key, none uses one of its
   port/protocol pairs and, for externalTrafficPolicy Local, they select the same pods.
5. Families: from the cluster IPs if the service has them, else from `ipFamilyPolicy` and
   `ipFamilies` (IPv4 first when unsaid). RequireDualStack needs one pool with both families;
   PreferDualStack takes both from one pool if it can, else one, preferring the first family.
6. Stability: a service keeps the IPs it holds (status.loadBalancer.ingress, or what this
   allocator gave it before) while they are still valid for it. Services are processed in one
   documented order: those holding IPs first, then by creationTimestamp (unset last), then by
   namespace/name; so the result does not depend on the order objects were read in. Changing
   or deleting one service never moves another: an `Allocator` only reprocesses the service
   that changed, and services still waiting for an IP.

Theory of operation: nothing is proportional to a pool's size. Used addresses are kept per
family as sorted, merged intervals of integers, so "lowest free address at or after x" is a
binary search, and a /8 or an IPv6 /64 costs what its allocations cost.

This module must not read files, talk to Kubernetes, or know YAML.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pikube.lb.ipam_requests import (
    ADDRESS_POOL,
    ALLOW_SHARED_IP,
    ANNOTATION_PREFIX,
    LEGACY_ANNOTATION_PREFIX,
    LOAD_BALANCER_IPS,
    Allocation,
    Entry,
    Families,
    IntervalSet,
    IPUse,
    ServiceError,
    annotation,
    backend_key,
    check_families,
    sort_for_processing,
    wants_of,
)
from pikube.lb.model import (
    NAMESPACE_NAME_LABEL,
    ClusterResources,
    IPAddress,
    IPAddressPool,
    Namespace,
    Service,
    ServiceType,
    any_selector_matches,
)

__all__ = [
    "ADDRESS_POOL",
    "ALLOW_SHARED_IP",
    "ANNOTATION_PREFIX",
    "LEGACY_ANNOTATION_PREFIX",
    "LOAD_BALANCER_IPS",
    "Allocation",
    "AllocationResult",
    "Allocator",
    "allocate",
    "annotation",
]


@dataclass(frozen=True)
class AllocationResult:
    """Every handled service is in exactly one of the two maps (keys are `namespace/name`)."""

    allocations: Mapping[str, Allocation]
    errors: Mapping[str, str]

    def to_json(self) -> dict[str, dict[str, object]]:
        """The shape `pikube lb allocate -o json` prints, keys sorted."""
        return {
            "allocations": {
                key: {"ips": [str(ip) for ip in a.ips], "pool": a.pool}
                for key, a in sorted(self.allocations.items())
            },
            "errors": dict(sorted(self.errors.items())),
        }


def allocate(
    resources: ClusterResources,
    *,
    load_balancer_class: str | None = None,
    previous: Mapping[str, Allocation] | None = None,
) -> AllocationResult:
    """IPs for every LoadBalancer service in `resources` (what `pikube lb allocate` prints).

    `previous`: what an earlier call gave each service. A service without status IPs keeps its
    previous IPs while they stay valid, so a source without status (a directory of manifests)
    still never moves a service when another is deleted or changed.
    """
    allocator = Allocator(
        resources.pools, resources.namespaces, load_balancer_class=load_balancer_class
    )
    allocator.sync(resources.services, previous=previous)
    return allocator.result()


# --- the allocator -------------------------------------------------------------------------------


class Allocator:
    """Allocation state for one set of pools; services come and go through `sync`, `upsert`
    and `delete`, each of which touches only the services it must.

    When pools or namespaces change, build a new Allocator and pass the old one's
    allocations as `previous` to `sync`: services keep what is still valid.
    """

    def __init__(
        self,
        pools: Iterable[IPAddressPool],
        namespaces: Iterable[Namespace] = (),
        *,
        load_balancer_class: str | None = None,
    ) -> None:
        self._pools = {p.name: p for p in pools}
        self._load_balancer_class = load_balancer_class
        self._namespace_labels = {
            ns.name: {**ns.labels, NAMESPACE_NAME_LABEL: ns.name} for ns in namespaces
        }
        # Per family: (first, last, pool) sorted by first; pools never overlap.
        self._ranges: dict[int, list[tuple[int, int, IPAddressPool]]] = {4: [], 6: []}
        for pool in self._pools.values():
            for rng in pool.addresses:
                self._ranges[rng.version].append((int(rng.first), int(rng.last), pool))
        for spans in self._ranges.values():
            spans.sort(key=lambda s: s[0])
        self._range_starts = {v: [s[0] for s in spans] for v, spans in self._ranges.items()}
        self._pinned = sorted(
            (p for p in self._pools.values() if p.service_allocation and p.auto_assign),
            key=lambda p: (
                p.service_allocation is not None and p.service_allocation.priority == 0,
                p.service_allocation.priority if p.service_allocation else 0,
                p.name,
            ),
        )
        self._fallback = sorted(
            (p for p in self._pools.values() if p.auto_assign and not p.service_allocation),
            key=lambda p: p.name,
        )
        self._entries: dict[str, Entry] = {}
        self._waiting: dict[str, Entry] = {}  # handled, but no address (yet)
        self._used: dict[int, IntervalSet] = {4: IntervalSet(), 6: IntervalSet()}
        self._uses: dict[int, dict[int, IPUse]] = {4: {}, 6: {}}
        # sharing key -> family -> sorted addresses whose services use that key
        self._shared: dict[str, dict[int, list[int]]] = {}

    # --- the public side ---

    def sync(
        self, services: Iterable[Service], *, previous: Mapping[str, Allocation] | None = None
    ) -> tuple[str, ...]:
        """Make the allocator's services exactly `services`; returns the keys whose outcome
        changed. Unchanged services are not looked at again."""
        wanted = {s.key: s for s in services}
        removed = [key for key in self._entries if key not in wanted]
        touched: list[Entry] = []
        changed: set[str] = set()
        for key, service in wanted.items():
            entry = self._entries.get(key)
            if entry is not None and entry.service == service:
                continue
            remembered = previous.get(key) if previous else None
            touched.append(self._replace(service, remembered))
        freed = {a.pool for key in removed if (a := self._entries[key].allocation) is not None}
        for key in removed:
            changed |= self._forget(key)
        changed |= self._process(touched, freed=freed)
        return tuple(sorted(changed))

    def upsert(self, service: Service) -> tuple[str, ...]:
        """A service was created or changed; returns the keys whose outcome changed."""
        entry = self._entries.get(service.key)
        if entry is not None and entry.service == service:
            return ()
        return tuple(sorted(self._process([self._replace(service, None)], freed=set())))

    def delete(self, key: str) -> tuple[str, ...]:
        """A service is gone; its IPs are free. Returns the keys whose outcome changed."""
        if key not in self._entries:
            return ()
        allocation = self._entries[key].allocation
        changed = self._forget(key)
        changed |= self._process([], freed={allocation.pool} if allocation else set())
        return tuple(sorted(changed))

    def allocation(self, key: str) -> Allocation | None:
        entry = self._entries.get(key)
        return entry.allocation if entry else None

    def error(self, key: str) -> str | None:
        entry = self._entries.get(key)
        return entry.error if entry else None

    def result(self) -> AllocationResult:
        allocations: dict[str, Allocation] = {}
        errors: dict[str, str] = {}
        for key, entry in self._entries.items():
            if entry.allocation is not None:
                allocations[key] = entry.allocation
            elif entry.error is not None:
                errors[key] = entry.error
        return AllocationResult(allocations, errors)

    # --- bookkeeping ---

    def _replace(self, service: Service, remembered: Allocation | None) -> Entry:
        old = self._entries.get(service.key)
        old_allocation = old.allocation if old is not None else None
        if old is not None and old_allocation is not None:
            remembered = old_allocation
            self._release(old)
        handled = (
            service.type is ServiceType.LOAD_BALANCER
            and service.load_balancer_class == self._load_balancer_class
        )
        entry = Entry(
            service=service,
            handled=handled,
            sharing_key=annotation(service, ALLOW_SHARED_IP) or "",
            backend_key=backend_key(service),
            ports=frozenset((p.protocol, p.port) for p in service.ports),
            held=service.ingress_ips or (remembered.ips if remembered else ()),
            wants=wants_of(service),
        )
        self._waiting.pop(service.key, None)
        entry.before = (old_allocation, old.error if old else None)
        if old is not None:
            entry.old_usage = (old.ports, old.sharing_key, old.backend_key)
        self._entries[service.key] = entry
        return entry

    def _forget(self, key: str) -> set[str]:
        entry = self._entries.pop(key)
        self._waiting.pop(key, None)
        if entry.allocation is not None:
            self._release(entry)
            return {key}
        return {key} if entry.error is not None else set()

    def _process(self, touched: list[Entry], *, freed: set[str] | None) -> set[str]:
        """Decide for the touched services, and for the waiting ones that what was given back
        (in the pools `freed`; None: anything) might now serve. Holders keep what is valid
        first, so nothing can take a held address."""
        befores: dict[int, tuple[Allocation | None, str | None]] = {}

        def start(entries: Iterable[Entry]) -> list[Entry]:
            ordered = sort_for_processing(entries)
            for entry in ordered:
                befores[id(entry)] = entry.before or (entry.allocation, entry.error)
                entry.before = None
                entry.allocation, entry.error = None, None
                if entry.handled and entry.held:
                    entry.allocation = self._keep_held(entry)
            return ordered

        # Phase 1: holders keep their addresses if still valid.
        todo = start(touched)
        if freed is not None:
            for entry in todo:
                old = befores[id(entry)][0]
                if old is not None and self._frees(entry, old):
                    freed.add(old.pool)
        if freed is None or freed:
            # A waiting service can only succeed now if something it may use was given back.
            ids = {id(e) for e in todo}
            waiting = [
                e
                for e in self._waiting.values()
                if id(e) not in ids and (freed is None or self._may_use_any(e, freed))
            ]
            todo = sort_for_processing([*todo, *start(waiting)])
        # Phase 2: in processing order, the others get addresses; holders may get their
        # missing family.
        for entry in todo:
            if not entry.handled:
                continue
            try:
                if entry.allocation is None:
                    entry.allocation = self._allocate(entry)
                else:
                    self._top_up(entry)
            except ServiceError as exc:
                entry.error = str(exc)
        for entry in todo:
            if entry.handled and entry.allocation is None:
                self._waiting[entry.service.key] = entry
            else:
                self._waiting.pop(entry.service.key, None)
        return {
            entry.service.key
            for entry in todo
            if (entry.allocation, entry.error) != befores[id(entry)]
        }

    @staticmethod
    def _frees(entry: Entry, old: Allocation) -> bool:
        """True if the change to this service (after phase 1) may have freed something
        another service could use: an address, or on a shared address a port, or the terms
        of sharing."""
        if entry.allocation is None or not set(old.ips) <= set(entry.allocation.ips):
            return True
        ports, sharing_key, backend_key = entry.old_usage or (entry.ports, "", "")
        if not sharing_key and not entry.sharing_key:
            return False  # nobody could share it before or after
        return (
            not ports <= entry.ports
            or sharing_key != entry.sharing_key
            or backend_key != entry.backend_key
        )

    def _may_use_any(self, entry: Entry, pools: set[str]) -> bool:
        """True if the waiting service could get an address from one of these pools."""
        wants = entry.wants
        if isinstance(wants, str):
            return False  # its own request is invalid until it changes
        for addresses in (entry.held, wants.requested):
            if addresses:
                pool = self._pool_of(addresses[0])
                if pool is not None and pool.name in pools:
                    return True
        if wants.requested:
            return False
        if wants.pool_name is not None:
            return wants.pool_name in pools
        return any(
            self._pools[name].auto_assign and self._serves(self._pools[name], entry.service)
            for name in pools
            if name in self._pools
        )

    def _commit(self, entry: Entry, ips: Sequence[IPAddress], pool: IPAddressPool) -> Allocation:
        key = entry.service.key
        for ip in ips:
            n = int(ip)
            uses = self._uses[ip.version]
            use = uses.get(n)
            if use is None:
                use = uses[n] = IPUse(entry.sharing_key, entry.backend_key)
                self._used[ip.version].add(n)
                if entry.sharing_key:
                    by_family = self._shared.setdefault(entry.sharing_key, {4: [], 6: []})
                    insort(by_family[ip.version], n)
            use.services.add(key)
            for port in entry.ports:
                use.ports[port] = key
        return Allocation(tuple(ips), pool.name)

    def _release(self, entry: Entry) -> None:
        allocation, key = entry.allocation, entry.service.key
        assert allocation is not None
        for ip in allocation.ips:
            n = int(ip)
            use = self._uses[ip.version][n]
            use.services.discard(key)
            for port in entry.ports:
                if use.ports.get(port) == key:
                    del use.ports[port]
            if not use.services:
                del self._uses[ip.version][n]
                self._used[ip.version].discard(n)
                if use.sharing_key:
                    shared = self._shared[use.sharing_key][ip.version]
                    del shared[bisect_left(shared, n)]
        entry.allocation = None

    # --- decisions ---

    def _allocate(self, entry: Entry) -> Allocation:
        service = entry.service
        if not self._pools:
            raise ServiceError("no IPAddressPool is configured")
        if isinstance(entry.wants, str):
            raise ServiceError(entry.wants)
        families, requested, pool_name = (
            entry.wants.families,
            entry.wants.requested,
            entry.wants.pool_name,
        )
        if pool_name is not None and pool_name not in self._pools:
            raise ServiceError(f"metallb.io/address-pool: there is no IPAddressPool {pool_name!r}")
        if requested:
            return self._assign_requested(entry, requested, families, pool_name)
        if pool_name is not None:
            pool = self._pools[pool_name]
            if not self._serves(pool, service):
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
        pinned = [p for p in self._pinned if self._serves(p, service)]
        found = self._best_in(entry, pinned, families)
        if found is None:
            found = self._best_in(entry, self._fallback, families)
        if found is None:
            tried = [p.name for p in (*pinned, *self._fallback)]
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
        pool = self._pool_of_all(requested, what)
        if pool_name is not None and pool.name != pool_name:
            raise ServiceError(
                f"{what} {_join(requested)} is in pool {pool.name!r}, but "
                f"metallb.io/address-pool asks for pool {pool_name!r}"
            )
        if not self._serves(pool, entry.service):
            raise ServiceError(
                f"{what} {_join(requested)} is in pool {pool.name!r}, which does not serve this "
                "service (its serviceAllocation selects other namespaces or services)"
            )
        for ip in requested:
            conflict = self._conflict(ip.version, int(ip), entry)
            if conflict:
                raise ServiceError(f"{what} {ip} {conflict}")
        return self._commit(entry, self._in_order(requested, families), pool)

    def _keep_held(self, entry: Entry) -> Allocation | None:
        """The service's held IPs, committed, if they are still valid for it; else None."""
        held = entry.held
        if isinstance(entry.wants, str):
            return None  # phase 2 says why
        families, requested = entry.wants.families, entry.wants.requested
        if requested and set(requested) != set(held):
            return None  # the user asks for other IPs now
        if len({ip.version for ip in held}) != len(held) or check_families(held, families, ""):
            return None
        pool = self._pool_of(held[0])
        if pool is None or any(not pool.contains(ip) for ip in held):
            return None
        pool_name = entry.wants.pool_name
        if pool_name is not None and pool.name != pool_name:
            return None
        if not self._serves(pool, entry.service):
            return None
        if any(self._conflict(ip.version, int(ip), entry) for ip in held):
            return None
        return self._commit(entry, self._in_order(held, families), pool)

    def _top_up(self, entry: Entry) -> None:
        """A PreferDualStack service holding one family gets the other from the same pool,
        if that pool has one free (MetalLB's AllocateFromPoolForAdditionalFamily)."""
        allocation = entry.allocation
        assert allocation is not None
        assert not isinstance(entry.wants, str)  # it was kept, so its request is valid
        families = entry.wants.families
        if not families.dual or len(allocation.ips) != 1 or entry.wants.requested:
            return
        other = next(v for v in families.order if v != allocation.ips[0].version)
        pool = self._pools[allocation.pool]
        extra = self._free_in_pool(entry, pool, other)
        if extra is None:
            return
        self._release(entry)
        ips = self._in_order([allocation.ips[0], _address(other, extra)], families)
        entry.allocation = self._commit(entry, ips, pool)

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
                n = self._free_in_pool(entry, pool, version)
                if n is not None:
                    found[version] = n
            if len(found) == len(families.order):
                return pool, [_address(v, found[v]) for v in families.order]
            if families.require_all:
                continue
            if primary in found and first_primary is None:
                first_primary = pool, [_address(primary, found[primary])]
            if secondary in found and first_secondary is None:
                first_secondary = pool, [_address(secondary, found[secondary])]
        return first_primary or first_secondary

    def _free_in_pool(self, entry: Entry, pool: IPAddressPool, version: int) -> int | None:
        for rng in pool.addresses:
            if rng.version == version:
                n = self._lowest_usable(entry, version, int(rng.first), int(rng.last), pool)
                if n is not None:
                    return n
        return None

    def _lowest_usable(
        self, entry: Entry, version: int, first: int, last: int, pool: IPAddressPool
    ) -> int | None:
        used = self._used[version]
        avoid = pool.avoid_buggy_ips and version == 4
        free: int | None = used.lowest_absent(first)
        while free is not None and free <= last and avoid and free & 0xFF in (0, 0xFF):
            free = used.lowest_absent(free + 1)
        if free is not None and free > last:
            free = None
        if entry.sharing_key:
            # A lower address already shared under the same key wins over a free one.
            shared = self._shared.get(entry.sharing_key, {}).get(version, [])
            for n in shared[bisect_left(shared, first) :]:
                if n > last or (free is not None and n > free):
                    break
                if avoid and n & 0xFF in (0, 0xFF):
                    continue
                if self._conflict(version, n, entry) is None:
                    return n
        return free

    def _conflict(self, version: int, n: int, entry: Entry) -> str | None:
        """Why `entry`'s service cannot use address n, or None if it can (free or shareable)."""
        use = self._uses[version].get(n)
        key = entry.service.key
        if use is None or use.services <= {key}:
            return None
        others = sorted(use.services - {key})
        owner = others[0] + (f" and {len(others) - 1} more" if len(others) > 1 else "")
        if not use.sharing_key:
            return f"is already used by {owner}, which does not allow sharing"
        if not entry.sharing_key:
            return (
                f"is already used by {owner}; sharing it needs metallb.io/allow-shared-ip "
                f"{use.sharing_key!r} on this service too"
            )
        if use.sharing_key != entry.sharing_key:
            return (
                f"is already used by {owner} with sharing key {use.sharing_key!r}, "
                f"not {entry.sharing_key!r}"
            )
        if use.backend_key != entry.backend_key:
            return (
                f"is already used by {owner}, and services with externalTrafficPolicy Local "
                "may share an address only if they select the same pods"
            )
        for proto, port in sorted(entry.ports, key=lambda p: (p[0].value, p[1])):
            user = use.ports.get((proto, port))
            if user is not None and user != key:
                return f"is already used by {user} on {proto.value} port {port}"
        return None

    # --- lookups ---

    def _pool_of(self, ip: IPAddress) -> IPAddressPool | None:
        n = int(ip)
        i = bisect_right(self._range_starts[ip.version], n) - 1
        if i < 0:
            return None
        first, last, pool = self._ranges[ip.version][i]
        return pool if first <= n <= last else None

    def _pool_of_all(self, ips: Sequence[IPAddress], what: str) -> IPAddressPool:
        pools: list[IPAddressPool] = []
        for ip in ips:
            pool = self._pool_of(ip)
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
                f"{what}s {_join(ips)} are in different pools "
                f"({', '.join(p.name for p in pools)}); both must come from one pool"
            )
        return pools[0]

    def _serves(self, pool: IPAddressPool, service: Service) -> bool:
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

    @staticmethod
    def _in_order(ips: Iterable[IPAddress], families: Families) -> list[IPAddress]:
        return sorted(ips, key=lambda ip: families.order.index(ip.version))


def _address(version: int, n: int) -> IPAddress:
    return ipaddress.IPv4Address(n) if version == 4 else ipaddress.IPv6Address(n)


def _join(ips: Iterable[IPAddress]) -> str:
    return ",".join(str(ip) for ip in ips)
