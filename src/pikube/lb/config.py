"""MetalLB-compatible manifests -> pikube's model, with validation errors that say where.

`parse_documents` is pure: it takes documents that are already loaded (dicts, as YAML or the
Kubernetes API gives them) together with where each came from, and returns one
`ClusterResources`. `load_manifests` is the thin adapter that reads files and directories.

What is read:
- `metallb.io` IPAddressPool, L2Advertisement, BGPAdvertisement, Community, BFDProfile
  (v1beta1) and BGPPeer (v1beta2, and v1beta1 converted). Every spec field MetalLB documents is
  either read into the model or rejected by name with the reason (`_REJECTED`); a field MetalLB
  does not know is an error, as `kubectl apply` with strict validation would say.
- Services, Namespaces, Nodes (v1) and EndpointSlices (discovery.k8s.io/v1): only the fields
  the load balancer uses are read, the rest of those objects is not pikube's business.
- `kind: List` documents (what `kubectl get -o yaml` prints) are opened.
- Anything else (Deployments, ConfigMaps, ...) and the status objects MetalLB writes are skipped.

Every error is a `ConfigError` whose one line names the file, the document, the object
(kind and name) and the field, then says what is wrong in the user's words.

This module must not allocate addresses (that is `pikube.lb.ipam`) nor watch files.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import yaml

from pikube.errors import PikubeError
from pikube.inputs import MANIFESTS_LIMIT_BYTES, InputBudget
from pikube.lb.model import (
    SERVICE_NAME_LABEL,
    AddressRange,
    AddressType,
    BFDProfile,
    BGPAdvertisement,
    BGPCommunity,
    BGPPeer,
    ClusterResources,
    Community,
    CommunityAlias,
    DynamicASN,
    Endpoint,
    EndpointSlice,
    ExternalTrafficPolicy,
    IPAddress,
    IPAddressPool,
    IPFamily,
    IPFamilyPolicy,
    L2Advertisement,
    LabelSelector,
    LabelSelectorRequirement,
    LargeCommunity,
    Namespace,
    Node,
    Protocol,
    SelectorOperator,
    Service,
    ServiceAllocation,
    ServicePort,
    ServiceType,
    StandardCommunity,
)

METALLB_GROUP = "metallb.io"
MAX_ASN = 2**32 - 1

# Documented MetalLB fields pikube does not implement: field -> why, and what to do instead.
_REJECTED: Mapping[tuple[str, str], str] = {
    ("L2Advertisement", "preferredNodeSelectors"): (
        "not supported by pikube: its election keeps the current announcer while it stays "
        "eligible and spreads new IPs by load, so weighted node preferences do not apply; "
        "restrict the announcers with nodeSelectors instead"
    ),
    ("BGPPeer", "vrf"): (
        "not supported by pikube: its BGP speaker peers from the node's main routing table "
        "only; remove the field to peer outside a VRF"
    ),
    ("BGPPeer", "interface"): (
        "not supported by pikube: BGP unnumbered (peering over an interface's IPv6 "
        "link-local address) is not implemented; give spec.peerAddress instead"
    ),
}

# MetalLB writes these; a dump of a cluster contains them. They carry no configuration.
_METALLB_STATUS_KINDS = frozenset({"ServiceL2Status", "ServiceBGPStatus", "ConfigurationState"})


# --- where things come from, and errors -----------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where a document came from: a file (or any source name) and its document number,
    counted from 1 like line numbers; `item` is the position inside a `kind: List`."""

    path: str
    index: int
    item: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}, document {self.index}"
        return where if self.item is None else f"{where}, items[{self.item}]"


class ConfigError(PikubeError):
    """Invalid input: names the file, document, object and field. The CLI exits with 2."""

    exit_code = 2

    def __init__(
        self,
        problem: str,
        *,
        origin: Origin | str | None = None,
        obj: str | None = None,
        field: str | None = None,
    ) -> None:
        parts = [str(p) for p in (origin, obj, field) if p]
        # One line, always: the CLI prints it as is.
        super().__init__(" ".join(": ".join([*parts, problem]).split()))
        self.origin = origin
        self.obj = obj
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class _Where:
    origin: Origin
    obj: str  # e.g. "IPAddressPool 'default'"


class _Fields:
    """A mapping being read. It knows where it is, so every error names its field."""

    def __init__(self, data: Mapping[str, object], where: _Where, path: str) -> None:
        self.data = data
        self.where = where
        self.path = path

    def at(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str | int | None, problem: str) -> NoReturn:
        raise ConfigError(
            problem,
            origin=self.where.origin,
            obj=self.where.obj,
            field=self.path if key is None else self.at(key),
        )

    def get(self, key: str) -> object:
        # null means unset, as in Kubernetes.
        return self.data.get(key)

    def check_keys(self, kind: str, supported: Iterable[str]) -> None:
        allowed = set(supported)
        for key in self.data:
            if (kind, str(key)) in _REJECTED:
                self.fail(str(key), _REJECTED[kind, str(key)])
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                self.fail(str(key), f"unknown field (known fields here: {known})")

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.get(key)
        if value is None:
            if required:
                self.fail(key, "required")
            return None
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_describe(value)}")
        if required and not value:
            self.fail(key, "must not be empty")
        return value

    def required_string(self, key: str) -> str:
        value = self.string(key, required=True)
        assert value is not None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_describe(value)}")
        return value

    def optional_boolean(self, key: str) -> bool | None:
        value = self.get(key)
        if value is None:
            return None
        return self.boolean(key, False)

    def integer(self, key: str, minimum: int, maximum: int) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected a whole number, got {_describe(value)}")
        if not minimum <= value <= maximum:
            self.fail(key, f"{value} is out of range ({minimum} to {maximum})")
        return value

    def mapping(self, key: str) -> _Fields | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {_describe(value)}")
        return _Fields(value, self.where, self.at(key))

    def items(self, key: str) -> list[tuple[str, object]]:
        """The entries of a list field, each with its own field path."""
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected a list, got {_describe(value)}")
        return [(f"{self.at(key)}[{i}]", item) for i, item in enumerate(value)]

    def mappings(self, key: str) -> list[_Fields]:
        out = []
        for path, item in self.items(key):
            if not isinstance(item, dict):
                raise ConfigError(
                    f"expected a mapping, got {_describe(item)}",
                    origin=self.where.origin,
                    obj=self.where.obj,
                    field=path,
                )
            out.append(_Fields(item, self.where, path))
        return out

    def strings(self, key: str, *, unique: bool = True) -> tuple[str, ...]:
        out: list[str] = []
        for path, item in self.items(key):
            problem = None
            if not isinstance(item, str):
                problem = f"expected a string, got {_describe(item)}"
            elif not item:
                problem = "must not be empty"
            elif unique and item in out:
                problem = f"{item!r} is listed twice"
            if problem is not None:
                raise ConfigError(problem, origin=self.where.origin, obj=self.where.obj, field=path)
            assert isinstance(item, str)
            out.append(item)
        return tuple(out)

    def string_map(self, key: str) -> dict[str, str]:
        """Labels, annotations, selectors: string keys and string values."""
        value = self.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping of strings, got {_describe(value)}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                self.fail(key, f"key {k!r} must be a string")
            if v is None:
                out[k] = ""
                continue
            if not isinstance(v, str):
                self.fail(f"{key}.{k}", f'must be a string (quote it: "{_yaml_text(v)}")')
            out[k] = v
        return out

    def selectors(self, key: str) -> tuple[LabelSelector, ...]:
        parsed: list[LabelSelector] = []
        for item in self.mappings(key):
            selector = _label_selector(item)
            if selector in parsed:
                item.fail(None, "the same selector is listed twice")
            parsed.append(selector)
        return tuple(parsed)


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{type(value).__name__} {value!r}"


def _yaml_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _label_selector(fields: _Fields) -> LabelSelector:
    fields.check_keys("LabelSelector", ("matchLabels", "matchExpressions"))
    labels = fields.string_map("matchLabels")
    expressions: list[LabelSelectorRequirement] = []
    for expr in fields.mappings("matchExpressions"):
        expr.check_keys("LabelSelectorRequirement", ("key", "operator", "values"))
        key = expr.required_string("key")
        op_text = expr.required_string("operator")
        try:
            operator = SelectorOperator(op_text)
        except ValueError:
            names = ", ".join(o.value for o in SelectorOperator)
            expr.fail("operator", f"unknown operator {op_text!r} (use one of {names})")
        values = expr.strings("values")
        if operator in (SelectorOperator.IN, SelectorOperator.NOT_IN) and not values:
            expr.fail("values", f"operator {operator.value} needs at least one value")
        if operator in (SelectorOperator.EXISTS, SelectorOperator.DOES_NOT_EXIST) and values:
            expr.fail("values", f"operator {operator.value} takes no values")
        requirement = LabelSelectorRequirement(key, operator, tuple(sorted(values)))
        if requirement in expressions:
            expr.fail(None, "the same expression is listed twice")
        expressions.append(requirement)
    return LabelSelector(labels, tuple(expressions))


# --- object metadata ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Meta:
    name: str
    namespace: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    creation_timestamp: datetime | None


def _metadata(doc: _Fields, kind: str, *, namespaced: bool) -> tuple[_Meta, _Where]:
    where = _Where(doc.where.origin, kind)
    meta = doc.mapping("metadata")
    if meta is None:
        raise ConfigError("metadata.name is required", origin=where.origin, obj=kind)
    meta = _Fields(meta.data, where, "metadata")
    name = meta.required_string("name")
    namespace = meta.string("namespace") if namespaced else None
    shown = f"{namespace or 'default'}/{name}" if namespaced else name
    where = _Where(doc.where.origin, f"{kind} {shown!r}")
    meta = _Fields(meta.data, where, "metadata")
    stamp = meta.get("creationTimestamp")
    created: datetime | None
    if stamp is None:
        created = None
    elif isinstance(stamp, datetime):
        created = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    elif isinstance(stamp, str):
        try:
            created = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            meta.fail("creationTimestamp", f"{stamp!r} is not an RFC 3339 time")
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
    else:
        meta.fail("creationTimestamp", f"expected a time, got {_describe(stamp)}")
    return (
        _Meta(
            name=name,
            namespace=namespace,
            labels=meta.string_map("labels"),
            annotations=meta.string_map("annotations"),
            creation_timestamp=created,
        ),
        where,
    )


def _spec(doc: _Fields, where: _Where) -> _Fields:
    spec = _Fields(doc.data, where, "").mapping("spec")
    return spec if spec is not None else _Fields({}, where, "spec")


# --- addresses ------------------------------------------------------------------------------------


def parse_address_range(text: str) -> AddressRange:
    """`10.0.0.0/24`, `10.0.0.10-10.0.0.20` or `fd00::/120` -> AddressRange; ValueError says why."""
    text = text.strip()
    if "-" in text:
        first_text, _, last_text = text.partition("-")
        try:
            first = ipaddress.ip_address(first_text.strip())
            last = ipaddress.ip_address(last_text.strip())
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid address range: {exc}") from None
        if first.version != last.version:
            raise ValueError(f"range {text!r} mixes IPv4 and IPv6")
        if int(last) < int(first):
            raise ValueError(f"range {text!r} ends before it starts")
        return AddressRange(first, last)
    if "/" not in text:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a CIDR nor a range like a.b.c.d-e.f.g.h"
            ) from None
        raise ValueError(f"{text!r} is a single address; write it as {ip}/{ip.max_prefixlen}")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid CIDR: {exc}") from None
    address = ipaddress.ip_address(text.partition("/")[0])
    if address != network.network_address:
        raise ValueError(
            f"CIDR {text!r} has host bits set: write {network} for the whole network, "
            f"or {address}-{network.broadcast_address} for a range"
        )
    return AddressRange(network.network_address, network.broadcast_address)


def _widest_prefix(rng: AddressRange) -> int:
    """The shortest prefix length among the CIDRs that exactly cover `rng`."""
    return min(n.prefixlen for n in ipaddress.summarize_address_range(rng.first, rng.last))


def _ip(fields: _Fields, key: str) -> IPAddress | None:
    text = fields.string(key)
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        fields.fail(key, f"{text!r} is not an IP address")


# --- the MetalLB kinds ----------------------------------------------------------------------------


@dataclass
class _PoolEntry:
    pool: IPAddressPool
    origin: Origin
    obj: str


@dataclass
class _BGPAdvDraft:
    """A BGPAdvertisement whose community aliases are resolved once every Community is read."""

    adv: BGPAdvertisement
    communities: list[tuple[str, str]]  # (field path, text)
    where: _Where


@dataclass
class _Seen:
    """Everything read so far, with where each named object came from."""

    pools: list[_PoolEntry] = field(default_factory=list)
    l2: list[L2Advertisement] = field(default_factory=list)
    bgp_advs: list[_BGPAdvDraft] = field(default_factory=list)
    peers: list[tuple[BGPPeer, _Where]] = field(default_factory=list)
    communities: list[tuple[Community, _Where]] = field(default_factory=list)
    bfd: list[BFDProfile] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    namespaces: list[Namespace] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    slices: list[EndpointSlice] = field(default_factory=list)
    names: dict[tuple[str, str], Origin] = field(default_factory=dict)

    def claim(self, kind: str, name: str, where: _Where) -> None:
        earlier = self.names.get((kind, name))
        if earlier is not None:
            raise ConfigError(
                f"defined twice (first in {earlier})", origin=where.origin, obj=where.obj
            )
        self.names[kind, name] = where.origin


def _pool(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "IPAddressPool", namespaced=False)
    spec = _spec(doc, where)
    spec.check_keys(
        "IPAddressPool", ("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation")
    )
    ranges: list[AddressRange] = []
    entries = spec.items("addresses")
    if not entries:
        spec.fail("addresses", "a pool needs at least one CIDR or address range")
    for path, text in entries:
        if not isinstance(text, str):
            raise ConfigError(
                f"expected a CIDR or range as a string, got {_describe(text)}",
                origin=where.origin,
                obj=where.obj,
                field=path,
            )
        try:
            ranges.append(parse_address_range(text))
        except ValueError as exc:
            raise ConfigError(str(exc), origin=where.origin, obj=where.obj, field=path) from None
    allocation = None
    sa = spec.mapping("serviceAllocation")
    if sa is not None:
        sa.check_keys(
            "serviceAllocation",
            ("priority", "namespaces", "namespaceSelectors", "serviceSelectors"),
        )
        allocation = ServiceAllocation(
            priority=sa.integer("priority", 0, 2**31 - 1) or 0,
            namespaces=sa.strings("namespaces"),
            namespace_selectors=sa.selectors("namespaceSelectors"),
            service_selectors=sa.selectors("serviceSelectors"),
        )
    pool = IPAddressPool(
        name=meta.name,
        addresses=tuple(ranges),
        auto_assign=spec.boolean("autoAssign", True),
        avoid_buggy_ips=spec.boolean("avoidBuggyIPs", False),
        service_allocation=allocation,
        labels=meta.labels,
    )
    seen.claim("IPAddressPool", meta.name, where)
    seen.pools.append(_PoolEntry(pool, where.origin, where.obj))


def _l2_advertisement(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "L2Advertisement", namespaced=False)
    spec = _spec(doc, where)
    spec.check_keys(
        "L2Advertisement",
        (
            "ipAddressPools",
            "ipAddressPoolSelectors",
            "nodeSelectors",
            "interfaces",
            "serviceSelectors",
        ),
    )
    adv = L2Advertisement(
        name=meta.name,
        ip_address_pools=spec.strings("ipAddressPools"),
        ip_address_pool_selectors=spec.selectors("ipAddressPoolSelectors"),
        node_selectors=spec.selectors("nodeSelectors"),
        interfaces=spec.strings("interfaces"),
        service_selectors=spec.selectors("serviceSelectors"),
    )
    seen.claim("L2Advertisement", meta.name, where)
    seen.l2.append(adv)


def _bgp_advertisement(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "BGPAdvertisement", namespaced=False)
    spec = _spec(doc, where)
    spec.check_keys(
        "BGPAdvertisement",
        (
            "aggregationLength",
            "aggregationLengthV6",
            "localPref",
            "communities",
            "ipAddressPools",
            "ipAddressPoolSelectors",
            "nodeSelectors",
            "peers",
            "serviceSelectors",
        ),
    )
    length = spec.integer("aggregationLength", 1, 32)
    length_v6 = spec.integer("aggregationLengthV6", 1, 128)
    service_selectors = spec.selectors("serviceSelectors")
    if service_selectors:
        # Aggregated routes cannot belong to one service.
        if length not in (None, 32):
            spec.fail("aggregationLength", "cannot be combined with serviceSelectors (only 32)")
        if length_v6 not in (None, 128):
            spec.fail("aggregationLengthV6", "cannot be combined with serviceSelectors (only 128)")
    communities = [(path, text) for path, text in spec.items("communities")]
    texts: list[str] = []
    for path, text in communities:
        if not isinstance(text, str):
            raise ConfigError(
                f"expected a community as a string, got {_describe(text)}",
                origin=where.origin,
                obj=where.obj,
                field=path,
            )
        if text in texts:
            raise ConfigError(
                f"{text!r} is listed twice", origin=where.origin, obj=where.obj, field=path
            )
        texts.append(text)
    adv = BGPAdvertisement(
        name=meta.name,
        aggregation_length=32 if length is None else length,
        aggregation_length_v6=128 if length_v6 is None else length_v6,
        local_pref=spec.integer("localPref", 0, 2**32 - 1) or 0,
        ip_address_pools=spec.strings("ipAddressPools"),
        ip_address_pool_selectors=spec.selectors("ipAddressPoolSelectors"),
        node_selectors=spec.selectors("nodeSelectors"),
        peers=spec.strings("peers"),
        service_selectors=service_selectors,
    )
    seen.claim("BGPAdvertisement", meta.name, where)
    seen.bgp_advs.append(_BGPAdvDraft(adv, [(p, str(t)) for p, t in communities], where))


def parse_community(text: str) -> BGPCommunity:
    """`64500:100` or `large:64500:1:2` -> a community; ValueError says why."""
    parts = text.split(":")
    numbers: list[int] = []
    if len(parts) == 2:
        limit, values = 0xFFFF, parts
    elif len(parts) == 4 and parts[0] == "large":
        limit, values = 0xFFFFFFFF, parts[1:]
    else:
        raise ValueError(
            f"{text!r} is not a community: write asn:value (16 bits each) or "
            "large:global:local1:local2 (32 bits each)"
        )
    for part in values:
        if not part.isdigit() or int(part) > limit:
            raise ValueError(f"{text!r}: {part!r} is not a number from 0 to {limit}")
        numbers.append(int(part))
    if len(numbers) == 2:
        return StandardCommunity(numbers[0], numbers[1])
    return LargeCommunity(numbers[0], numbers[1], numbers[2])


def _community(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "Community", namespaced=False)
    spec = _spec(doc, where)
    spec.check_keys("Community", ("communities",))
    aliases: list[CommunityAlias] = []
    for entry in spec.mappings("communities"):
        entry.check_keys("Community", ("name", "value"))
        name = entry.required_string("name")
        value = entry.get("value")
        if not isinstance(value, str):
            entry.fail("value", f"expected a community as a string, got {_describe(value)}")
        try:
            aliases.append(CommunityAlias(name, parse_community(value)))
        except ValueError as exc:
            entry.fail("value", str(exc))
    seen.claim("Community", meta.name, where)
    seen.communities.append((Community(meta.name, tuple(aliases)), where))


def _bfd_profile(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "BFDProfile", namespaced=False)
    spec = _spec(doc, where)
    spec.check_keys(
        "BFDProfile",
        (
            "receiveInterval",
            "transmitInterval",
            "detectMultiplier",
            "echoInterval",
            "echoMode",
            "passiveMode",
            "minimumTtl",
        ),
    )
    defaults = BFDProfile(meta.name)

    def number(key: str, low: int, high: int, default: int) -> int:
        value = spec.integer(key, low, high)
        return default if value is None else value

    profile = BFDProfile(
        name=meta.name,
        receive_interval_ms=number("receiveInterval", 10, 60000, defaults.receive_interval_ms),
        transmit_interval_ms=number("transmitInterval", 10, 60000, defaults.transmit_interval_ms),
        detect_multiplier=number("detectMultiplier", 2, 255, defaults.detect_multiplier),
        echo_interval_ms=number("echoInterval", 10, 60000, defaults.echo_interval_ms),
        echo_mode=spec.boolean("echoMode", False),
        passive_mode=spec.boolean("passiveMode", False),
        minimum_ttl=number("minimumTtl", 1, 254, defaults.minimum_ttl),
    )
    seen.claim("BFDProfile", meta.name, where)
    seen.bfd.append(profile)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration_s(text: str) -> float:
    """A Kubernetes (Go) duration such as `90s`, `1m30s`, `500ms` -> seconds."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f"{text!r} is not a duration (examples: 90s, 1m30s, 500ms)")
        total += float(match.group(1)) * _DURATION_UNITS_S[match.group(2)]
        pos = match.end()
    if not text:
        raise ValueError("empty duration")
    return total


def _duration(spec: _Fields, key: str) -> float | None:
    text = spec.get(key)
    if text is None:
        return None
    if not isinstance(text, str):
        spec.fail(key, f"expected a duration such as 90s, got {_describe(text)}")
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        spec.fail(key, str(exc))


_PEER_FIELDS_V1BETA1 = (
    "myASN",
    "peerASN",
    "peerAddress",
    "sourceAddress",
    "peerPort",
    "holdTime",
    "keepaliveTime",
    "routerID",
    "nodeSelectors",
    "password",
    "bfdProfile",
    "ebgpMultiHop",
)
_PEER_FIELDS_V1BETA2 = (
    *_PEER_FIELDS_V1BETA1,
    "localASN",
    "dynamicASN",
    "connectTime",
    "passwordSecret",
    "enableGracefulRestart",
    "disableMP",
    "dualStackAddressFamily",
)


def _bgp_peer(doc: _Fields, seen: _Seen, version: str) -> None:
    meta, where = _metadata(doc, "BGPPeer", namespaced=False)
    spec = _spec(doc, where)
    v1beta1 = version == "v1beta1"
    spec.check_keys("BGPPeer", _PEER_FIELDS_V1BETA1 if v1beta1 else _PEER_FIELDS_V1BETA2)
    my_asn = spec.integer("myASN", 0, MAX_ASN)
    if not my_asn:
        spec.fail("myASN", "required: the AS number of the nodes' end of the session")
    peer_asn = spec.integer("peerASN", 0, MAX_ASN) or None
    dynamic_text = spec.string("dynamicASN")
    dynamic = None
    if dynamic_text:
        try:
            dynamic = DynamicASN(dynamic_text)
        except ValueError:
            spec.fail("dynamicASN", f"{dynamic_text!r} is neither 'internal' nor 'external'")
    if peer_asn is None and dynamic is None:
        spec.fail("peerASN", "required (or, in v1beta2, dynamicASN)")
    if peer_asn is not None and dynamic is not None:
        spec.fail("dynamicASN", "cannot be combined with peerASN: give one of them")
    ebgp_multihop = spec.boolean("ebgpMultiHop", False)
    if ebgp_multihop and (peer_asn == my_asn or dynamic is DynamicASN.INTERNAL):
        spec.fail("ebgpMultiHop", "is for eBGP peers, but this peer is iBGP (same AS)")
    address = _ip(spec, "peerAddress")
    if address is None:
        spec.fail("peerAddress", "required: the address of the router to peer with")
    hold, keepalive = _timers(spec)
    connect = _duration(spec, "connectTime")
    if connect is not None and (connect != int(connect) or not 1 <= connect <= 65535):
        spec.fail("connectTime", "must be a whole number of seconds from 1s to 65535s")
    router_id = _ip(spec, "routerID")
    if router_id is not None and router_id.version != 4:
        spec.fail("routerID", "a BGP router ID is a 32-bit number written as an IPv4 address")
    password = spec.string("password")
    secret = spec.mapping("passwordSecret")
    secret_name = None
    if secret is not None:
        secret.check_keys("passwordSecret", ("name", "namespace"))
        secret_name = secret.string("name")
    if password and secret_name:
        spec.fail("passwordSecret", "cannot be combined with password: give one of them")
    if secret_name:
        spec.fail(
            "passwordSecret",
            "not supported by pikube yet: it reads no Secrets; give the password in "
            "spec.password, or leave it out",
        )
    port = spec.integer("peerPort", 0 if v1beta1 else 1, 16384)
    peer = BGPPeer(
        name=meta.name,
        my_asn=my_asn,
        peer_address=address,
        peer_asn=peer_asn,
        dynamic_asn=dynamic,
        local_asn=spec.integer("localASN", 1, MAX_ASN),
        source_address=_ip(spec, "sourceAddress"),
        peer_port=port or 179,
        hold_time_s=hold,
        keepalive_time_s=keepalive,
        connect_time_s=None if connect is None else int(connect),
        router_id=router_id if isinstance(router_id, ipaddress.IPv4Address) else None,
        node_selectors=spec.selectors("nodeSelectors"),
        password=password or None,
        bfd_profile=spec.string("bfdProfile") or None,
        ebgp_multihop=ebgp_multihop,
        enable_graceful_restart=spec.boolean("enableGracefulRestart", False),
        disable_mp=spec.boolean("disableMP", False),
        dual_stack_address_family=spec.boolean("dualStackAddressFamily", False),
    )
    seen.claim("BGPPeer", meta.name, where)
    seen.peers.append((peer, where))


def _timers(spec: _Fields) -> tuple[float | None, float | None]:
    hold = _duration(spec, "holdTime")
    keepalive = _duration(spec, "keepaliveTime")
    if hold is None and keepalive is None:
        return None, None
    # MetalLB (RFC 4271 sec. 10 suggests a keepalive of a third of the hold time).
    if keepalive is None:
        assert hold is not None
        keepalive = hold / 3
    if hold is None:
        hold = keepalive * 3
    if int(hold) != 0 and int(hold) < 3:
        spec.fail("holdTime", "must be 0 (no keepalives) or at least 3s")
    if keepalive > hold:
        spec.fail("keepaliveTime", "must not be longer than holdTime")
    return hold, keepalive


# --- the Kubernetes kinds -------------------------------------------------------------------------


_ANNOTATION_PREFIX = "metallb.io/"


def _service(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "Service", namespaced=True)
    spec = _spec(doc, where)
    type_text = spec.string("type") or ServiceType.CLUSTER_IP.value
    try:
        svc_type = ServiceType(type_text)
    except ValueError:
        names = ", ".join(t.value for t in ServiceType)
        spec.fail("type", f"unknown service type {type_text!r} (one of {names})")
    etp_text = spec.string("externalTrafficPolicy") or ExternalTrafficPolicy.CLUSTER.value
    try:
        etp = ExternalTrafficPolicy(etp_text)
    except ValueError:
        spec.fail("externalTrafficPolicy", f"{etp_text!r} is neither Cluster nor Local")
    ports: list[ServicePort] = []
    for port in spec.mappings("ports"):
        number = port.integer("port", 1, 65535)
        if number is None:
            port.fail("port", "required")
        proto_text = port.string("protocol") or "TCP"
        try:
            proto = Protocol(proto_text)
        except ValueError:
            port.fail("protocol", f"{proto_text!r} is not TCP, UDP or SCTP")
        ports.append(ServicePort(number, proto, port.string("name")))
    families: list[IPFamily] = []
    for path, text in spec.items("ipFamilies"):
        family = next(
            (f for f in IPFamily if isinstance(text, str) and f.value.lower() == text.lower()),
            None,
        )
        if family is None or family in families:
            problem = "listed twice" if family else f"{text!r} is neither IPv4 nor IPv6"
            raise ConfigError(problem, origin=where.origin, obj=where.obj, field=path)
        families.append(family)
    policy_text = spec.string("ipFamilyPolicy")
    policy = None
    if policy_text:
        try:
            policy = IPFamilyPolicy(policy_text)
        except ValueError:
            names = ", ".join(p.value for p in IPFamilyPolicy)
            spec.fail("ipFamilyPolicy", f"unknown policy {policy_text!r} (one of {names})")
    cluster_texts = [t for _, t in spec.items("clusterIPs")] or [spec.get("clusterIP")]
    cluster_ips: list[IPAddress] = []
    for text in cluster_texts:
        if text in (None, "", "None"):
            continue
        if not isinstance(text, str):
            spec.fail("clusterIPs", f"expected addresses as strings, got {_describe(text)}")
        try:
            cluster_ips.append(ipaddress.ip_address(text))
        except ValueError:
            spec.fail("clusterIPs", f"{text!r} is not an IP address")
    ingress_ips: list[IPAddress] = []
    status = _Fields(doc.data, where, "").mapping("status")
    balancer = status.mapping("loadBalancer") if status else None
    for entry in balancer.mappings("ingress") if balancer else []:
        ip = _ip(entry, "ip")
        if ip is not None:
            ingress_ips.append(ip)
    service = Service(
        namespace=meta.namespace or "default",
        name=meta.name,
        labels=meta.labels,
        annotations=meta.annotations,
        type=svc_type,
        load_balancer_ip=spec.string("loadBalancerIP") or None,
        load_balancer_class=spec.string("loadBalancerClass") or None,
        external_traffic_policy=etp,
        selector=spec.string_map("selector"),
        ports=tuple(ports),
        ip_families=tuple(families),
        ip_family_policy=policy,
        cluster_ips=tuple(cluster_ips),
        ingress_ips=tuple(ingress_ips),
        creation_timestamp=meta.creation_timestamp,
    )
    seen.claim("Service", service.key, where)
    seen.services.append(service)


def _namespace(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "Namespace", namespaced=False)
    seen.claim("Namespace", meta.name, where)
    seen.namespaces.append(Namespace(meta.name, meta.labels))


def _node(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "Node", namespaced=False)
    status = _Fields(doc.data, where, "").mapping("status")
    unavailable = False
    for condition in status.mappings("conditions") if status else []:
        if condition.get("type") == "NetworkUnavailable":
            unavailable = condition.get("status") == "True"
    seen.claim("Node", meta.name, where)
    seen.nodes.append(Node(meta.name, meta.labels, unavailable))


def _endpoint_slice(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "EndpointSlice", namespaced=True)
    top = _Fields(doc.data, where, "")
    type_text = top.string("addressType") or AddressType.IPV4.value
    try:
        address_type = AddressType(type_text)
    except ValueError:
        top.fail("addressType", f"{type_text!r} is not IPv4, IPv6 or FQDN")
    endpoints: list[Endpoint] = []
    for entry in top.mappings("endpoints"):
        conditions = entry.mapping("conditions")
        endpoints.append(
            Endpoint(
                addresses=entry.strings("addresses", unique=False),
                node_name=entry.string("nodeName") or None,
                ready=conditions.optional_boolean("ready") if conditions else None,
                serving=conditions.optional_boolean("serving") if conditions else None,
            )
        )
    namespace = meta.namespace or "default"
    seen.claim("EndpointSlice", f"{namespace}/{meta.name}", where)
    seen.slices.append(
        EndpointSlice(
            namespace=namespace,
            name=meta.name,
            service_name=meta.labels.get(SERVICE_NAME_LABEL) or None,
            address_type=address_type,
            endpoints=tuple(endpoints),
        )
    )


def _legacy_configmap(doc: _Fields, _seen: _Seen, _version: str) -> None:
    data = doc.get("data")
    if isinstance(data, dict) and "address-pools" in str(data.get("config", "")):
        meta = doc.mapping("metadata")
        name = meta.string("name") if meta else None
        raise ConfigError(
            "this is MetalLB's ConfigMap configuration (before v0.13), which pikube does not "
            "read: convert it to IPAddressPool and L2Advertisement/BGPAdvertisement objects "
            "(MetalLB's configmaptocrs tool does that)",
            origin=doc.where.origin,
            obj=f"ConfigMap {name!r}",
            field="data.config",
        )


_Parser = Callable[[_Fields, _Seen, str], None]

_KINDS: Mapping[tuple[str, str], tuple[frozenset[str], _Parser]] = {
    (METALLB_GROUP, "IPAddressPool"): (frozenset({"v1beta1"}), _pool),
    (METALLB_GROUP, "L2Advertisement"): (frozenset({"v1beta1"}), _l2_advertisement),
    (METALLB_GROUP, "BGPAdvertisement"): (frozenset({"v1beta1"}), _bgp_advertisement),
    (METALLB_GROUP, "Community"): (frozenset({"v1beta1"}), _community),
    (METALLB_GROUP, "BFDProfile"): (frozenset({"v1beta1"}), _bfd_profile),
    (METALLB_GROUP, "BGPPeer"): (frozenset({"v1beta1", "v1beta2"}), _bgp_peer),
    ("", "Service"): (frozenset({"v1"}), _service),
    ("", "Namespace"): (frozenset({"v1"}), _namespace),
    ("", "Node"): (frozenset({"v1"}), _node),
    ("", "ConfigMap"): (frozenset({"v1"}), _legacy_configmap),
    ("discovery.k8s.io", "EndpointSlice"): (frozenset({"v1"}), _endpoint_slice),
}


# --- documents -> resources -----------------------------------------------------------------------


def parse_documents(documents: Iterable[tuple[object, Origin]]) -> ClusterResources:
    """Parse loaded documents (with where each came from) into one `ClusterResources`.

    Raises ConfigError for the first problem found, in input order.
    """
    seen = _Seen()
    for doc, origin in documents:
        for obj, obj_origin in _objects(doc, origin):
            _parse_object(obj, obj_origin, seen)
    _check_pools_do_not_overlap(seen.pools)
    communities = _community_aliases(seen.communities)
    bgp_advertisements = tuple(_resolve_communities(d, communities) for d in seen.bgp_advs)
    pools = tuple(entry.pool for entry in seen.pools)
    profiles = {p.name: p for p in seen.bfd}
    for peer, where in seen.peers:
        if peer.bfd_profile is not None and peer.bfd_profile not in profiles:
            raise ConfigError(
                f"no BFDProfile named {peer.bfd_profile!r}",
                origin=where.origin,
                obj=where.obj,
                field="spec.bfdProfile",
            )
    for i, (draft, adv) in enumerate(zip(seen.bgp_advs, bgp_advertisements, strict=True)):
        _check_aggregation(draft.where, adv, pools)
        _check_bfd_echo(draft.where, adv, pools, [p for p, _ in seen.peers], profiles)
        _check_local_pref(draft.where, adv, bgp_advertisements[:i], pools, seen.nodes)
    return ClusterResources(
        pools=pools,
        l2_advertisements=tuple(seen.l2),
        bgp_peers=tuple(p for p, _ in seen.peers),
        bgp_advertisements=bgp_advertisements,
        communities=tuple(c for c, _ in seen.communities),
        bfd_profiles=tuple(seen.bfd),
        services=tuple(seen.services),
        namespaces=tuple(seen.namespaces),
        nodes=tuple(seen.nodes),
        endpoint_slices=tuple(seen.slices),
    )


def _objects(doc: object, origin: Origin) -> Iterator[tuple[dict[str, object], Origin]]:
    """The Kubernetes objects in a document: itself, or the items of a `kind: List`."""
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise ConfigError(
            f"expected a Kubernetes object (a mapping with apiVersion and kind), "
            f"got {_describe(doc)}",
            origin=origin,
        )
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        for i, item in enumerate(doc["items"]):
            item_origin = Origin(origin.path, origin.index, i)
            if not isinstance(item, dict):
                raise ConfigError(f"expected an object, got {_describe(item)}", origin=item_origin)
            yield item, item_origin
        return
    yield doc, origin


def _parse_object(obj: dict[str, object], origin: Origin, seen: _Seen) -> None:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ConfigError("not a Kubernetes object: 'kind' is missing", origin=origin)
    if not isinstance(api_version, str) or not api_version:
        raise ConfigError("'apiVersion' is missing", origin=origin, obj=kind)
    group, _, version = api_version.rpartition("/")
    if group == METALLB_GROUP and kind in _METALLB_STATUS_KINDS:
        return
    entry = _KINDS.get((group, kind))
    if entry is None:
        if group == METALLB_GROUP:
            known = ", ".join(sorted(k for g, k in _KINDS if g == METALLB_GROUP))
            raise ConfigError(
                f"unknown MetalLB kind (pikube reads {known})", origin=origin, obj=kind
            )
        return  # not the load balancer's business (Deployments, ConfigMaps, ...)
    versions, parse = entry
    if group == METALLB_GROUP:
        for key in obj:
            if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
                raise ConfigError(
                    "unknown field (a MetalLB object has apiVersion, kind, metadata, spec, status)",
                    origin=origin,
                    obj=kind,
                    field=str(key),
                )
    if version not in versions:
        wanted = " or ".join(f"{group + '/' if group else ''}{v}" for v in sorted(versions))
        if group != METALLB_GROUP:
            return  # another API's object of the same name (e.g. a Knative Service)
        raise ConfigError(
            f"apiVersion {api_version!r} is not supported for {kind} (use {wanted})",
            origin=origin,
            obj=kind,
        )
    parse(_Fields(obj, _Where(origin, kind), ""), seen, version)


def _check_pools_do_not_overlap(entries: Sequence[_PoolEntry]) -> None:
    spans: list[tuple[int, int, int, int, int]] = []  # version, first, last, pool #, address #
    for p, entry in enumerate(entries):
        for a, rng in enumerate(entry.pool.addresses):
            spans.append((rng.version, int(rng.first), int(rng.last), p, a))
    spans.sort()
    widest: tuple[int, int, int, int, int] | None = None
    for span in spans:
        if widest is not None and widest[0] == span[0] and span[1] <= widest[2]:
            # Blame the one read later, and name the one read first.
            first, later = sorted((widest, span), key=lambda s: (s[3], s[4]))
            old, new = entries[first[3]], entries[later[3]]
            old_range = old.pool.addresses[first[4]]
            new_range = new.pool.addresses[later[4]]
            where = "" if old is new else f" of {old.obj} ({old.origin})"
            raise ConfigError(
                f"{new_range} overlaps {old_range}{where}; pools must not share addresses",
                origin=new.origin,
                obj=new.obj,
                field=f"spec.addresses[{later[4]}]",
            )
        if widest is None or widest[0] != span[0] or span[2] > widest[2]:
            widest = span


def _community_aliases(
    communities: Sequence[tuple[Community, _Where]],
) -> dict[str, BGPCommunity]:
    aliases: dict[str, BGPCommunity] = {}
    for community, where in communities:
        for i, alias in enumerate(community.aliases):
            if alias.name in aliases:
                raise ConfigError(
                    f"community alias {alias.name!r} is defined twice",
                    origin=where.origin,
                    obj=where.obj,
                    field=f"spec.communities[{i}].name",
                )
            aliases[alias.name] = alias.value
    return aliases


def _resolve_communities(
    draft: _BGPAdvDraft, aliases: Mapping[str, BGPCommunity]
) -> BGPAdvertisement:
    values: list[BGPCommunity] = []
    for path, text in draft.communities:
        if text in aliases:
            values.append(aliases[text])
            continue
        if ":" not in text:
            known = ", ".join(sorted(aliases)) or "none defined"
            raise ConfigError(
                f"unknown community alias {text!r} (aliases: {known})",
                origin=draft.where.origin,
                obj=draft.where.obj,
                field=path,
            )
        try:
            values.append(parse_community(text))
        except ValueError as exc:
            raise ConfigError(
                f"{exc}; nor is it a defined alias",
                origin=draft.where.origin,
                obj=draft.where.obj,
                field=path,
            ) from None
    return dataclasses.replace(draft.adv, communities=tuple(values))


def _check_aggregation(
    where: _Where, adv: BGPAdvertisement, pools: Sequence[IPAddressPool]
) -> None:
    # An aggregate shorter than a pool's own prefix would attract addresses outside the pool.
    for pool in pools:
        if not adv.selects_pool(pool):
            continue
        for rng in pool.addresses:
            length = adv.aggregation_length if rng.version == 4 else adv.aggregation_length_v6
            key = "aggregationLength" if rng.version == 4 else "aggregationLengthV6"
            widest = _widest_prefix(rng)
            if length < widest:
                raise ConfigError(
                    f"/{length} is wider than /{widest} of {rng} in IPAddressPool "
                    f"{pool.name!r}: the aggregate would cover addresses outside the pool",
                    origin=where.origin,
                    obj=where.obj,
                    field=f"spec.{key}",
                )


def _check_local_pref(
    where: _Where,
    adv: BGPAdvertisement,
    earlier: Sequence[BGPAdvertisement],
    pools: Sequence[IPAddressPool],
    nodes: Sequence[Node],
) -> None:
    # As MetalLB: one route cannot carry two LOCAL_PREFs. Two advertisements of the same
    # pool clash when they would send the same prefix (same aggregation length for a family
    # the pool has) to a common peer from a common node with different localPref. Service
    # selectors make the overlap unknowable, so they are left alone.
    if adv.service_selectors:
        return
    for other in earlier:
        if other.service_selectors or other.local_pref == adv.local_pref:
            continue
        if adv.peers and other.peers and not set(adv.peers) & set(other.peers):
            continue
        ours = {n.name for n in nodes if adv.selects_node(n)}
        if not ours & {n.name for n in nodes if other.selects_node(n)}:
            continue
        for pool in pools:
            if not (adv.selects_pool(pool) and other.selects_pool(pool)):
                continue
            same_v4 = 4 in pool.versions and adv.aggregation_length == other.aggregation_length
            same_v6 = (
                6 in pool.versions and adv.aggregation_length_v6 == other.aggregation_length_v6
            )
            if same_v4 or same_v6:
                raise ConfigError(
                    f"localPref {adv.local_pref} differs from localPref {other.local_pref} of "
                    f"BGPAdvertisement {other.name!r} for the same routes (pool {pool.name!r}, "
                    "same aggregation length, common peers and nodes)",
                    origin=where.origin,
                    obj=where.obj,
                    field="spec.localPref",
                )


def _check_bfd_echo(
    where: _Where,
    adv: BGPAdvertisement,
    pools: Sequence[IPAddressPool],
    peers: Sequence[BGPPeer],
    profiles: Mapping[str, BFDProfile],
) -> None:
    # BFD echo mode only exists for IPv4 (RFC 5881), as MetalLB checks.
    if not any(adv.selects_pool(p) and 6 in p.versions for p in pools):
        return
    for peer in peers:
        profile = profiles.get(peer.bfd_profile or "")
        if adv.selects_peer(peer) and profile is not None and profile.echo_mode:
            raise ConfigError(
                f"advertises IPv6 addresses to BGPPeer {peer.name!r}, whose BFDProfile "
                f"{profile.name!r} has echoMode on, which IPv6 cannot do",
                origin=where.origin,
                obj=where.obj,
                field="spec.peers" if adv.peers else "spec",
            )


# --- the adapter: files and directories -> documents ----------------------------------------------


def _manifest_loader() -> type[yaml.SafeLoader]:
    base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class ManifestLoader(base):  # type: ignore[valid-type,misc]
        """YAML as Kubernetes reads it: `1234:1` stays a string (YAML 1.1 would read a
        base-60 number, and every unquoted BGP community would silently change), and a key
        written twice in one mapping is an error, not a silent override."""

        def construct_mapping(
            self, node: yaml.MappingNode, deep: bool = False
        ) -> dict[object, object]:
            keys: set[object] = set()
            for key_node, _ in node.value:
                if (
                    isinstance(key_node, yaml.ScalarNode)
                    and key_node.tag != "tag:yaml.org,2002:merge"
                ):
                    key = self.construct_object(key_node, deep=deep)
                    if key in keys:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key {key!r} is written twice", key_node.start_mark
                        )
                    keys.add(key)
            return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    for first, entries in base.yaml_implicit_resolvers.items():
        kept = []
        for tag, pattern in entries:
            if tag.endswith((":int", ":float")):
                kept.append((tag, re.compile(r"(?!.*:)" + pattern.pattern, pattern.flags)))
            else:
                kept.append((tag, pattern))
        resolvers[first] = kept
    ManifestLoader.yaml_implicit_resolvers = resolvers
    return ManifestLoader


_LOADER = _manifest_loader()


def documents_from_text(text: str, path: str) -> list[tuple[object, Origin]]:
    """The YAML documents in `text`, each with its origin; a syntax error is a ConfigError."""
    docs: list[tuple[object, Origin]] = []
    try:
        for doc in yaml.load_all(text, Loader=_LOADER):  # a safe loader
            docs.append((doc, Origin(path, len(docs) + 1)))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"invalid YAML{where}: {problem}", origin=Origin(path, len(docs) + 1)
        ) from None
    return docs


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files given, and *.yaml/*.yml in directories given (sorted, not recursive, no dotfiles)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    f
                    for f in path.iterdir()
                    if f.suffix in (".yaml", ".yml") and f.is_file() and not f.name.startswith(".")
                )
            )
        elif path.exists():
            files.append(path)
        else:
            raise ConfigError("no such file or directory", origin=str(raw))
    return files


def read_documents(paths: Iterable[str | Path]) -> list[tuple[object, Origin]]:
    """Every YAML document of the given files and directories, with its origin. `-` is stdin."""
    docs: list[tuple[object, Origin]] = []
    budget = InputBudget(MANIFESTS_LIMIT_BYTES, "manifests")
    for raw in paths:
        if str(raw) == "-":
            docs.extend(documents_from_text(budget.read_stdin(), "<stdin>"))
            continue
        for path in manifest_files([raw]):
            try:
                text = budget.read_text(path)
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigError(f"cannot read it: {reason}", origin=str(path)) from None
            docs.extend(documents_from_text(text, str(path)))
    return docs


def load_manifests(paths: Iterable[str | Path]) -> ClusterResources:
    """Read files (multi-document YAML) and directories (*.yaml, *.yml) and parse them."""
    return parse_documents(read_documents(paths))
