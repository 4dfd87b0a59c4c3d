"""What the allocator (`pikube.lb.ipam`) works with: what each service asks for (families,
explicit IPs, sharing and backend keys) and its entry. Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pikube.lb.model import (
    ExternalTrafficPolicy,
    IPAddress,
    IPFamilyPolicy,
    Protocol,
    Service,
)

ANNOTATION_PREFIX = "metallb.io/"
LEGACY_ANNOTATION_PREFIX = "metallb.universe.tf/"
LOAD_BALANCER_IPS = "loadBalancerIPs"
ADDRESS_POOL = "address-pool"
ALLOW_SHARED_IP = "allow-shared-ip"


def annotation(service: Service, name: str) -> str | None:
    """A MetalLB annotation of the service: `metallb.io/NAME`, else the legacy prefix."""
    for prefix in (ANNOTATION_PREFIX, LEGACY_ANNOTATION_PREFIX):
        value = service.annotations.get(prefix + name)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class Allocation:
    """The IPs of one service (one per family, the preferred family first) and their pool."""

    ips: tuple[IPAddress, ...]
    pool: str


# --- what a service asks for --------------------------------------------------------------------

Port = tuple[Protocol, int]


@dataclass(frozen=True)
class Families:
    """Address families a service wants, preferred first, and whether it needs all of them."""

    order: tuple[int, ...]  # IP versions: (4,), (6,), (4, 6) or (6, 4)
    require_all: bool

    @property
    def dual(self) -> bool:
        return len(self.order) == 2

    def describe(self) -> str:
        names = [f"IPv{v}" for v in self.order]
        if not self.dual:
            return names[0]
        return " and ".join(names) if self.require_all else " or ".join(names)


class ServiceError(Exception):
    """Why one service gets no IP, in words; becomes an entry of `errors`."""


def families_of(service: Service) -> Families:
    policy = service.ip_family_policy or IPFamilyPolicy.SINGLE_STACK
    if service.cluster_ips:
        # As MetalLB: the cluster IPs say what the cluster gave the service.
        versions: tuple[int, ...] = tuple(
            dict.fromkeys(int(ip.version) for ip in service.cluster_ips)
        )
        if policy is IPFamilyPolicy.REQUIRE_DUAL_STACK and len(versions) < 2:
            raise ServiceError(
                "ipFamilyPolicy RequireDualStack needs two cluster IPs (one per family), "
                "but the service has one"
            )
        if len(versions) == 1 or policy is IPFamilyPolicy.SINGLE_STACK:
            return Families(versions[:1], True)
        return Families(versions, policy is IPFamilyPolicy.REQUIRE_DUAL_STACK)
    versions = tuple(f.version for f in service.ip_families)
    if policy is IPFamilyPolicy.SINGLE_STACK:
        if len(versions) > 1:
            raise ServiceError(
                "spec.ipFamilies lists two families but ipFamilyPolicy is SingleStack"
            )
        return Families(versions or (4,), True)
    first = versions[0] if versions else 4
    return Families((first, 10 - first), policy is IPFamilyPolicy.REQUIRE_DUAL_STACK)


def requested_ips(service: Service) -> tuple[IPAddress, ...]:
    listed = annotation(service, LOAD_BALANCER_IPS)
    if listed is not None and service.load_balancer_ip:
        raise ServiceError(
            "both metallb.io/loadBalancerIPs and spec.loadBalancerIP are set; use one of them"
        )
    source = "metallb.io/loadBalancerIPs" if listed is not None else "spec.loadBalancerIP"
    text = listed if listed is not None else service.load_balancer_ip
    if not text:
        return ()
    ips: list[IPAddress] = []
    for part in text.split(","):
        try:
            ips.append(ipaddress.ip_address(part.strip()))
        except ValueError:
            raise ServiceError(f"{source}: {part.strip()!r} is not an IP address") from None
    if len(ips) > 2 or len({ip.version for ip in ips}) != len(ips):
        raise ServiceError(
            f"{source}: at most two addresses, one IPv4 and one IPv6 (got {text.strip()!r})"
        )
    return tuple(ips)


@dataclass(frozen=True)
class Wants:
    """What a service asks for, read once per version of the service."""

    families: Families
    requested: tuple[IPAddress, ...]  # explicit IPs, if any
    pool_name: str | None  # metallb.io/address-pool


def wants_of(service: Service) -> Wants | str:
    """What the service asks for, or why the request itself is invalid."""
    try:
        return Wants(
            families_of(service), requested_ips(service), annotation(service, ADDRESS_POOL)
        )
    except ServiceError as exc:
        return str(exc)


def check_families(ips: Sequence[IPAddress], families: Families, what: str) -> str | None:
    """Why `ips` do not fit the wanted families, or None if they do."""
    versions = {ip.version for ip in ips}
    if not versions <= set(families.order):
        wrong = next(ip for ip in ips if ip.version not in families.order)
        return (
            f"{what} {wrong} is IPv{wrong.version}, but the service is "
            f"{families.describe()} (see spec.ipFamilies and spec.ipFamilyPolicy)"
        )
    if families.require_all and len(versions) < len(families.order):
        return (
            f"{what}: ipFamilyPolicy RequireDualStack needs one IPv4 and one IPv6 address "
            "(in metallb.io/loadBalancerIPs)"
        )
    return None


def backend_key(service: Service) -> str:
    # Services with externalTrafficPolicy Local may share an IP only if they select the same
    # pods: the announcing node must have endpoints of all of them.
    if service.external_traffic_policy is ExternalTrafficPolicy.LOCAL:
        return ",".join(f"{k}={v}" for k, v in sorted(service.selector.items()))
    return ""


@dataclass
class Entry:
    """What the allocator knows of one service."""

    service: Service
    handled: bool
    sharing_key: str = ""
    backend_key: str = ""
    ports: frozenset[Port] = frozenset()
    allocation: Allocation | None = None
    error: str | None = None
    held: tuple[IPAddress, ...] = ()  # IPs it should keep if still valid
    wants: Wants | str = ""  # or why its request is invalid
    # Before a change: the outcome, and how the old version used its addresses.
    before: tuple[Allocation | None, str | None] | None = None
    old_usage: tuple[frozenset[Port], str, str] | None = None


def sort_for_processing(entries: Iterable[Entry]) -> list[Entry]:
    """The documented order: holders of IPs first, then oldest first (unset last), then by
    namespace and name. Total, so the result never depends on the order of the input."""

    def key(e: Entry) -> tuple[bool, bool, float, str, str]:
        stamp = e.service.creation_timestamp
        return (
            not e.held,
            stamp is None,
            stamp.timestamp() if stamp is not None else 0.0,
            e.service.namespace,
            e.service.name,
        )

    return sorted(entries, key=key)
