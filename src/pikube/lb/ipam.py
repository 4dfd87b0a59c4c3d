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

The parts: `Allocator` (here) keeps one entry per service and decides which services to look
at again after a change (rule 6); `ipam_choice.Chooser` decides for one service (rules 2-5);
`ipam_pools.PoolIndex` says which pool holds an address and which pools serve a service;
`ipam_addresses.AddressBook` records who uses each address and finds the lowest usable one;
`ipam_requests` reads what a service asks for.

This module must not read files, talk to Kubernetes, or know YAML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pikube.lb.ipam_addresses import AddressBook
from pikube.lb.ipam_choice import Chooser
from pikube.lb.ipam_pools import PoolIndex
from pikube.lb.ipam_requests import (
    ADDRESS_POOL,
    ALLOW_SHARED_IP,
    ANNOTATION_PREFIX,
    LEGACY_ANNOTATION_PREFIX,
    LOAD_BALANCER_IPS,
    Allocation,
    Entry,
    ServiceError,
    annotation,
    backend_key,
    sort_for_processing,
    wants_of,
)
from pikube.lb.model import ClusterResources, IPAddressPool, Namespace, Service, ServiceType

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
        self._pools = PoolIndex(pools, namespaces)
        self._book = AddressBook()
        self._choose = Chooser(self._pools, self._book)
        self._load_balancer_class = load_balancer_class
        self._entries: dict[str, Entry] = {}
        self._waiting: dict[str, Entry] = {}  # handled, but no address (yet)

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
                    entry.allocation = self._choose.keep_held(entry)
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
                    entry.allocation = self._choose.allocate(entry)
                else:
                    self._choose.top_up(entry)
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
                pool = self._pools.pool_of(addresses[0])
                if pool is not None and pool.name in pools:
                    return True
        if wants.requested:
            return False
        if wants.pool_name is not None:
            return wants.pool_name in pools
        by_name = self._pools.by_name
        return any(
            by_name[name].auto_assign and self._pools.serves(by_name[name], entry.service)
            for name in pools
            if name in by_name
        )

    def _release(self, entry: Entry) -> None:
        assert entry.allocation is not None
        self._book.give_back(entry, entry.allocation.ips)
        entry.allocation = None
