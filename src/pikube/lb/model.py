"""The load balancer's model: pools, advertisements, peers, services, namespaces, nodes, endpoints.

These are pikube's own values, independent of where they come from (a directory of manifests,
later the Kubernetes API): plain frozen dataclasses, enums for closed sets, `ipaddress` objects
for addresses. Defaults are MetalLB's defaults, already applied, so a reader never has to ask
"what does unset mean here?".

The few rules that are properties of the values themselves live here too (a label selector
matches a set of labels; an advertisement selects a pool, a node, a service; an endpoint can
serve), because every consumer must compute them the same way.

Values holding labels or annotations (plain dicts, read-only by convention) compare by value
but are not hashable: key them by `name` or `Service.key`.

This module must not know YAML, the shape of Kubernetes objects as dicts, files or sockets:
turning manifests into these values is `pikube.lb.config`'s job.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # names an EndpointSlice's Service
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # the API server puts it on every Namespace


# --- label selectors --------------------------------------------------------------------------


class SelectorOperator(enum.Enum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class LabelSelectorRequirement:
    """One `matchExpressions` entry. In/NotIn carry values; Exists/DoesNotExist carry none."""

    key: str
    operator: SelectorOperator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator is SelectorOperator.IN:
            return self.key in labels and labels[self.key] in self.values
        if self.operator is SelectorOperator.NOT_IN:
            # As in Kubernetes: a missing key satisfies NotIn.
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator is SelectorOperator.EXISTS:
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector; every label and every expression must hold (AND).

    The empty selector matches everything, as in Kubernetes.
    """

    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(expr.matches(labels) for expr in self.match_expressions)


def any_selector_matches(selectors: tuple[LabelSelector, ...], labels: Mapping[str, str]) -> bool:
    """True if one of `selectors` matches (OR). An empty list matches nothing; callers for
    which "no selector" means "everything" say so explicitly."""
    return any(s.matches(labels) for s in selectors)


# --- address pools ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AddressRange:
    """An inclusive range of addresses of one family: a CIDR, or `first-last` as written."""

    first: IPAddress
    last: IPAddress

    def __post_init__(self) -> None:
        if self.first.version != self.last.version:
            raise ValueError(f"{self.first} and {self.last} are of different address families")
        if int(self.last) < int(self.first):
            raise ValueError(f"range {self.first}-{self.last} ends before it starts")

    @property
    def version(self) -> int:
        return self.first.version

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return ip.version == self.version and int(self.first) <= int(ip) <= int(self.last)

    def __str__(self) -> str:
        host_bits = (self.size - 1).bit_length()
        if self.size == 1 << host_bits and int(self.first) % self.size == 0:
            return f"{self.first}/{self.first.max_prefixlen - host_bits}"
        return f"{self.first}-{self.last}"


@dataclass(frozen=True)
class ServiceAllocation:
    """`serviceAllocation` of a pool: which services the pool is pinned to, and how strongly.

    `priority` 0 means unset: such a pool is tried after the pools with a priority. A pool
    serves a service when the service's namespace is listed in `namespaces` or matches one of
    `namespace_selectors` (no restriction if both are empty), and the service matches one of
    `service_selectors` (no restriction if empty).
    """

    priority: int = 0
    namespaces: tuple[str, ...] = ()
    namespace_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()


@dataclass(frozen=True)
class IPAddressPool:
    """An `IPAddressPool`: addresses pikube may hand out, in the order they are written."""

    name: str
    addresses: tuple[AddressRange, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False  # skip IPv4 addresses ending in .0 or .255
    service_allocation: ServiceAllocation | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # for ipAddressPoolSelectors

    def contains(self, ip: IPAddress) -> bool:
        """True if `ip` is one of the pool's addresses pikube may hand out."""
        if self.avoid_buggy_ips and is_buggy_ip(ip):
            return False
        return any(ip in r for r in self.addresses)

    @property
    def versions(self) -> frozenset[int]:
        return frozenset(r.version for r in self.addresses)


def is_buggy_ip(ip: IPAddress) -> bool:
    """IPv4 addresses ending in .0 or .255, which some old consumer equipment drops."""
    return ip.version == 4 and int(ip) & 0xFF in (0, 0xFF)


# --- advertisements ---------------------------------------------------------------------------


def _selects_pool(
    names: tuple[str, ...], selectors: tuple[LabelSelector, ...], pool: IPAddressPool
) -> bool:
    # MetalLB: an advertisement that names no pool and has no pool selector covers every pool.
    if not names and not selectors:
        return True
    return pool.name in names or any_selector_matches(selectors, pool.labels)


@dataclass(frozen=True)
class L2Advertisement:
    """An `L2Advertisement`: which pools' IPs are announced by ARP/NDP, from which nodes and
    interfaces, for which services. Empty lists mean "all"."""

    name: str
    ip_address_pools: tuple[str, ...] = ()
    ip_address_pool_selectors: tuple[LabelSelector, ...] = ()
    node_selectors: tuple[LabelSelector, ...] = ()
    interfaces: tuple[str, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()

    def selects_pool(self, pool: IPAddressPool) -> bool:
        return _selects_pool(self.ip_address_pools, self.ip_address_pool_selectors, pool)

    def selects_node(self, node: Node) -> bool:
        return not self.node_selectors or any_selector_matches(self.node_selectors, node.labels)

    def selects_service(self, service: Service) -> bool:
        return not self.service_selectors or any_selector_matches(
            self.service_selectors, service.labels
        )


@dataclass(frozen=True)
class StandardCommunity:
    """A standard (RFC 1997) BGP community, written `asn:value` (two 16-bit numbers)."""

    asn: int
    value: int

    def __str__(self) -> str:
        return f"{self.asn}:{self.value}"


@dataclass(frozen=True)
class LargeCommunity:
    """A large (RFC 8092) BGP community, written `large:global:local1:local2` (32-bit each)."""

    global_administrator: int
    local_data_1: int
    local_data_2: int

    def __str__(self) -> str:
        return f"large:{self.global_administrator}:{self.local_data_1}:{self.local_data_2}"


BGPCommunity = StandardCommunity | LargeCommunity


@dataclass(frozen=True)
class CommunityAlias:
    name: str
    value: BGPCommunity


@dataclass(frozen=True)
class Community:
    """A `Community` object: names for BGP community values, usable in BGPAdvertisements."""

    name: str
    aliases: tuple[CommunityAlias, ...] = ()


@dataclass(frozen=True)
class BGPAdvertisement:
    """A `BGPAdvertisement`, with community aliases already resolved to values."""

    name: str
    aggregation_length: int = 32
    aggregation_length_v6: int = 128
    local_pref: int = 0
    communities: tuple[BGPCommunity, ...] = ()
    ip_address_pools: tuple[str, ...] = ()
    ip_address_pool_selectors: tuple[LabelSelector, ...] = ()
    node_selectors: tuple[LabelSelector, ...] = ()
    peers: tuple[str, ...] = ()  # empty: every peer
    service_selectors: tuple[LabelSelector, ...] = ()

    def selects_pool(self, pool: IPAddressPool) -> bool:
        return _selects_pool(self.ip_address_pools, self.ip_address_pool_selectors, pool)

    def selects_node(self, node: Node) -> bool:
        return not self.node_selectors or any_selector_matches(self.node_selectors, node.labels)

    def selects_service(self, service: Service) -> bool:
        return not self.service_selectors or any_selector_matches(
            self.service_selectors, service.labels
        )

    def selects_peer(self, peer: BGPPeer) -> bool:
        return not self.peers or peer.name in self.peers


# --- BGP peers and BFD ------------------------------------------------------------------------


class DynamicASN(enum.Enum):
    INTERNAL = "internal"  # the peer must use our ASN
    EXTERNAL = "external"  # the peer must use another ASN


@dataclass(frozen=True)
class BFDProfile:
    """A `BFDProfile`, with FRR's defaults (which MetalLB documents) filled in."""

    name: str
    receive_interval_ms: int = 300
    transmit_interval_ms: int = 300
    detect_multiplier: int = 3
    echo_interval_ms: int = 50
    echo_mode: bool = False
    passive_mode: bool = False
    minimum_ttl: int = 254


@dataclass(frozen=True)
class BGPPeer:
    """A `BGPPeer` (v1beta2; v1beta1 objects are converted). Exactly one of `peer_asn` and
    `dynamic_asn` is set. Timers are None when unset (the BGP speaker's defaults apply); when
    one of hold/keepalive is set the other is derived as MetalLB does (keepalive = hold / 3)."""

    name: str
    my_asn: int
    peer_address: IPAddress
    peer_asn: int | None = None
    dynamic_asn: DynamicASN | None = None
    local_asn: int | None = None
    source_address: IPAddress | None = None
    peer_port: int = 179
    hold_time_s: float | None = None
    keepalive_time_s: float | None = None
    connect_time_s: int | None = None
    router_id: ipaddress.IPv4Address | None = None
    node_selectors: tuple[LabelSelector, ...] = ()  # empty: every node
    password: str | None = field(default=None, repr=False)
    bfd_profile: str | None = None
    ebgp_multihop: bool = False
    enable_graceful_restart: bool = False
    disable_mp: bool = False
    dual_stack_address_family: bool = False

    def selects_node(self, node: Node) -> bool:
        return not self.node_selectors or any_selector_matches(self.node_selectors, node.labels)


# --- Kubernetes objects the load balancer reads -----------------------------------------------


class ServiceType(enum.Enum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_NAME = "ExternalName"


class ExternalTrafficPolicy(enum.Enum):
    CLUSTER = "Cluster"
    LOCAL = "Local"


class IPFamily(enum.Enum):
    IPV4 = "IPv4"
    IPV6 = "IPv6"

    @property
    def version(self) -> int:
        return 4 if self is IPFamily.IPV4 else 6

    @classmethod
    def of(cls, ip: IPAddress) -> IPFamily:
        return cls.IPV4 if ip.version == 4 else cls.IPV6


class IPFamilyPolicy(enum.Enum):
    SINGLE_STACK = "SingleStack"
    PREFER_DUAL_STACK = "PreferDualStack"
    REQUIRE_DUAL_STACK = "RequireDualStack"


class Protocol(enum.Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


@dataclass(frozen=True)
class ServicePort:
    port: int
    protocol: Protocol = Protocol.TCP
    name: str | None = None


@dataclass(frozen=True)
class Service:
    """A Kubernetes Service, reduced to what the load balancer reads.

    `load_balancer_ip` and the annotations are kept as written: a bad value there is the
    service's own problem (reported for that service), not an invalid configuration.
    `ingress_ips` are the IPs in status.loadBalancer.ingress, i.e. what the service holds now.
    """

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    type: ServiceType = ServiceType.CLUSTER_IP
    load_balancer_ip: str | None = None
    load_balancer_class: str | None = None
    external_traffic_policy: ExternalTrafficPolicy = ExternalTrafficPolicy.CLUSTER
    selector: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[ServicePort, ...] = ()
    ip_families: tuple[IPFamily, ...] = ()
    ip_family_policy: IPFamilyPolicy | None = None  # None: unset (SingleStack)
    cluster_ips: tuple[IPAddress, ...] = ()  # empty: unset or headless
    ingress_ips: tuple[IPAddress, ...] = ()
    creation_timestamp: datetime | None = None

    @property
    def key(self) -> str:
        """`namespace/name`, the service's identity everywhere in pikube."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    network_unavailable: bool = False  # the NetworkUnavailable condition is True
    unschedulable: bool = False  # spec.unschedulable (cordoned)


class AddressType(enum.Enum):
    IPV4 = "IPv4"
    IPV6 = "IPv6"
    FQDN = "FQDN"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of an EndpointSlice. `ready`/`serving` are None when unset."""

    addresses: tuple[str, ...]
    node_name: str | None = None
    ready: bool | None = None
    serving: bool | None = None

    @property
    def can_serve(self) -> bool:
        # MetalLB's rule (EndpointCanServe): ready unset or true, or serving true.
        return self.ready is None or self.ready or bool(self.serving)


@dataclass(frozen=True)
class EndpointSlice:
    namespace: str
    name: str
    service_name: str | None  # from the kubernetes.io/service-name label
    address_type: AddressType = AddressType.IPV4
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def service_key(self) -> str | None:
        """`namespace/name` of the Service this slice belongs to, if it says."""
        return None if self.service_name is None else f"{self.namespace}/{self.service_name}"


@dataclass(frozen=True)
class ClusterResources:
    """Everything the load balancer reads, as parsed (input order kept)."""

    pools: tuple[IPAddressPool, ...] = ()
    l2_advertisements: tuple[L2Advertisement, ...] = ()
    bgp_peers: tuple[BGPPeer, ...] = ()
    bgp_advertisements: tuple[BGPAdvertisement, ...] = ()
    communities: tuple[Community, ...] = ()
    bfd_profiles: tuple[BFDProfile, ...] = ()
    services: tuple[Service, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    nodes: tuple[Node, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()

    def pool(self, name: str) -> IPAddressPool | None:
        return next((p for p in self.pools if p.name == name), None)
