"""MetalLB manifests -> model: every documented field read or refused by name, and errors
that name the file, the document, the object and the field."""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pikube.errors import PikubeError
from pikube.lb.config import (
    ConfigError,
    Origin,
    documents_from_text,
    load_manifests,
    parse_documents,
    parse_duration_s,
)
from pikube.lb.model import (
    AddressRange,
    AddressType,
    ClusterResources,
    DynamicASN,
    ExternalTrafficPolicy,
    IPFamily,
    IPFamilyPolicy,
    LabelSelector,
    LabelSelectorRequirement,
    LargeCommunity,
    Protocol,
    SelectorOperator,
    ServiceType,
    StandardCommunity,
)

ip = ipaddress.ip_address


def parse(text: str, path: str = "m.yaml") -> ClusterResources:
    return parse_documents(documents_from_text(textwrap.dedent(text), path))


def error_of(text: str, path: str = "m.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, path)
    message = info.value.message
    assert "\n" not in message
    return message


def metallb(kind: str, name: str, spec: str, version: str = "v1beta1") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ") if spec.strip() else "  {}"
    return (
        f"---\napiVersion: metallb.io/{version}\nkind: {kind}\n"
        f"metadata:\n  name: {name}\n  namespace: metallb-system\nspec:\n{body}\n"
    )


POOL = metallb("IPAddressPool", "p", "addresses: [203.0.113.0/24]")
PEER = "myASN: 64500\npeerASN: 64501\npeerAddress: 203.0.113.1"


# --- every field MetalLB documents: read into the model, or refused by name ---------------------

Check = Callable[[ClusterResources], object]

# (kind, api version, minimal spec, field: value as YAML, what the model must then say)
SUPPORTED: list[tuple[str, str, str, str, Check, object]] = [
    (
        "IPAddressPool",
        "v1beta1",
        "",
        "addresses: [203.0.113.0/30, 203.0.113.8-203.0.113.9]",
        lambda r: r.pools[0].addresses,
        (
            AddressRange(ip("203.0.113.0"), ip("203.0.113.3")),
            AddressRange(ip("203.0.113.8"), ip("203.0.113.9")),
        ),
    ),
    (
        "IPAddressPool",
        "v1beta1",
        "addresses: [203.0.113.0/24]",
        "autoAssign: false",
        lambda r: r.pools[0].auto_assign,
        False,
    ),
    (
        "IPAddressPool",
        "v1beta1",
        "addresses: [203.0.113.0/24]",
        "avoidBuggyIPs: true",
        lambda r: r.pools[0].avoid_buggy_ips,
        True,
    ),
    (
        "IPAddressPool",
        "v1beta1",
        "addresses: [203.0.113.0/24]",
        "serviceAllocation: {priority: 7}",
        lambda r: r.pools[0].service_allocation and r.pools[0].service_allocation.priority,
        7,
    ),
    (
        "IPAddressPool",
        "v1beta1",
        "addresses: [203.0.113.0/24]",
        "serviceAllocation: {namespaces: [a, b]}",
        lambda r: r.pools[0].service_allocation and r.pools[0].service_allocation.namespaces,
        ("a", "b"),
    ),
    (
        "IPAddressPool",
        "v1beta1",
        "addresses: [203.0.113.0/24]",
        "serviceAllocation: {namespaceSelectors: [{matchLabels: {env: prod}}]}",
        lambda r: (
            r.pools[0].service_allocation and r.pools[0].service_allocation.namespace_selectors
        ),
        (LabelSelector({"env": "prod"}),),
    ),
    (
        "IPAddressPool",
        "v1beta1",
        "addresses: [203.0.113.0/24]",
        "serviceAllocation: {serviceSelectors: [{matchExpressions: [{key: app, operator: In, "
        "values: [b, a]}]}]}",
        lambda r: r.pools[0].service_allocation and r.pools[0].service_allocation.service_selectors,
        (
            LabelSelector(
                match_expressions=(
                    LabelSelectorRequirement("app", SelectorOperator.IN, ("a", "b")),
                )
            ),
        ),
    ),
    (
        "L2Advertisement",
        "v1beta1",
        "",
        "ipAddressPools: [p]",
        lambda r: r.l2_advertisements[0].ip_address_pools,
        ("p",),
    ),
    (
        "L2Advertisement",
        "v1beta1",
        "",
        "ipAddressPoolSelectors: [{matchLabels: {t: x}}]",
        lambda r: r.l2_advertisements[0].ip_address_pool_selectors,
        (LabelSelector({"t": "x"}),),
    ),
    (
        "L2Advertisement",
        "v1beta1",
        "",
        "nodeSelectors: [{matchLabels: {t: x}}]",
        lambda r: r.l2_advertisements[0].node_selectors,
        (LabelSelector({"t": "x"}),),
    ),
    (
        "L2Advertisement",
        "v1beta1",
        "",
        "interfaces: [eth0]",
        lambda r: r.l2_advertisements[0].interfaces,
        ("eth0",),
    ),
    (
        "L2Advertisement",
        "v1beta1",
        "",
        "serviceSelectors: [{matchLabels: {t: x}}]",
        lambda r: r.l2_advertisements[0].service_selectors,
        (LabelSelector({"t": "x"}),),
    ),
    (
        "BGPAdvertisement",
        "v1beta1",
        "",
        "aggregationLength: 24",
        lambda r: r.bgp_advertisements[0].aggregation_length,
        24,
    ),
    (
        "BGPAdvertisement",
        "v1beta1",
        "",
        "aggregationLengthV6: 64",
        lambda r: r.bgp_advertisements[0].aggregation_length_v6,
        64,
    ),
    (
        "BGPAdvertisement",
        "v1beta1",
        "",
        "localPref: 100",
        lambda r: r.bgp_advertisements[0].local_pref,
        100,
    ),
    (
        "BGPAdvertisement",
        "v1beta1",
        "",
        "communities: [65535:65282, 'large:64500:1:2']",
        lambda r: r.bgp_advertisements[0].communities,
        (StandardCommunity(65535, 65282), LargeCommunity(64500, 1, 2)),
    ),
    (
        "BGPAdvertisement",
        "v1beta1",
        "",
        "ipAddressPools: [p]",
        lambda r: r.bgp_advertisements[0].ip_address_pools,
        ("p",),
    ),
    (
        "BGPAdvertisement",
        "v1beta1",
        "",
        "ipAddressPoolSelectors: [{matchLabels: {t: x}}]",
        lambda r: r.bgp_advertisements[0].ip_address_pool_selectors,
        (LabelSelector({"t": "x"}),),
    ),
    (
        "BGPAdvertisement",
        "v1beta1",
        "",
        "nodeSelectors: [{matchLabels: {t: x}}]",
        lambda r: r.bgp_advertisements[0].node_selectors,
        (LabelSelector({"t": "x"}),),
    ),
    (
        "BGPAdvertisement",
        "v1beta1",
        "",
        "peers: [r1]",
        lambda r: r.bgp_advertisements[0].peers,
        ("r1",),
    ),
    (
        "BGPAdvertisement",
        "v1beta1",
        "",
        "serviceSelectors: [{matchLabels: {t: x}}]",
        lambda r: r.bgp_advertisements[0].service_selectors,
        (LabelSelector({"t": "x"}),),
    ),
    (
        "Community",
        "v1beta1",
        "",
        "communities: [{name: vpn-only, value: 1234:1}]",
        lambda r: [(a.name, a.value) for a in r.communities[0].aliases],
        [("vpn-only", StandardCommunity(1234, 1))],
    ),
    (
        "BFDProfile",
        "v1beta1",
        "",
        "receiveInterval: 100",
        lambda r: r.bfd_profiles[0].receive_interval_ms,
        100,
    ),
    (
        "BFDProfile",
        "v1beta1",
        "",
        "transmitInterval: 110",
        lambda r: r.bfd_profiles[0].transmit_interval_ms,
        110,
    ),
    (
        "BFDProfile",
        "v1beta1",
        "",
        "detectMultiplier: 5",
        lambda r: r.bfd_profiles[0].detect_multiplier,
        5,
    ),
    (
        "BFDProfile",
        "v1beta1",
        "",
        "echoInterval: 60",
        lambda r: r.bfd_profiles[0].echo_interval_ms,
        60,
    ),
    ("BFDProfile", "v1beta1", "", "echoMode: true", lambda r: r.bfd_profiles[0].echo_mode, True),
    (
        "BFDProfile",
        "v1beta1",
        "",
        "passiveMode: true",
        lambda r: r.bfd_profiles[0].passive_mode,
        True,
    ),
    ("BFDProfile", "v1beta1", "", "minimumTtl: 10", lambda r: r.bfd_profiles[0].minimum_ttl, 10),
]
for _version in ("v1beta1", "v1beta2"):
    SUPPORTED += [
        (
            "BGPPeer",
            _version,
            "peerASN: 64501\npeerAddress: 203.0.113.1",
            "myASN: 64500",
            lambda r: r.bgp_peers[0].my_asn,
            64500,
        ),
        (
            "BGPPeer",
            _version,
            "myASN: 64500\npeerAddress: 203.0.113.1",
            "peerASN: 64501",
            lambda r: r.bgp_peers[0].peer_asn,
            64501,
        ),
        (
            "BGPPeer",
            _version,
            "myASN: 64500\npeerASN: 64501",
            "peerAddress: 203.0.113.1",
            lambda r: r.bgp_peers[0].peer_address,
            ip("203.0.113.1"),
        ),
        (
            "BGPPeer",
            _version,
            PEER,
            "sourceAddress: 203.0.113.2",
            lambda r: r.bgp_peers[0].source_address,
            ip("203.0.113.2"),
        ),
        ("BGPPeer", _version, PEER, "peerPort: 1179", lambda r: r.bgp_peers[0].peer_port, 1179),
        (
            "BGPPeer",
            _version,
            PEER,
            "holdTime: 9s",
            lambda r: (r.bgp_peers[0].hold_time_s, r.bgp_peers[0].keepalive_time_s),
            (9.0, 3.0),
        ),
        (
            "BGPPeer",
            _version,
            PEER,
            "keepaliveTime: 1m",
            lambda r: (r.bgp_peers[0].hold_time_s, r.bgp_peers[0].keepalive_time_s),
            (180.0, 60.0),
        ),
        (
            "BGPPeer",
            _version,
            PEER,
            "routerID: 203.0.113.9",
            lambda r: r.bgp_peers[0].router_id,
            ip("203.0.113.9"),
        ),
        (
            "BGPPeer",
            _version,
            PEER,
            "nodeSelectors: [{matchLabels: {rack: a}}]",
            lambda r: r.bgp_peers[0].node_selectors,
            (LabelSelector({"rack": "a"}),),
        ),
        (
            "BGPPeer",
            _version,
            PEER,
            "password: s3cret",
            lambda r: r.bgp_peers[0].password,
            "s3cret",
        ),
        (
            "BGPPeer",
            _version,
            PEER,
            "ebgpMultiHop: true",
            lambda r: r.bgp_peers[0].ebgp_multihop,
            True,
        ),
    ]
SUPPORTED += [
    ("BGPPeer", "v1beta2", PEER, "localASN: 64510", lambda r: r.bgp_peers[0].local_asn, 64510),
    (
        "BGPPeer",
        "v1beta2",
        "myASN: 64500\npeerAddress: 203.0.113.1",
        "dynamicASN: external",
        lambda r: (r.bgp_peers[0].dynamic_asn, r.bgp_peers[0].peer_asn),
        (DynamicASN.EXTERNAL, None),
    ),
    ("BGPPeer", "v1beta2", PEER, "connectTime: 5s", lambda r: r.bgp_peers[0].connect_time_s, 5),
    (
        "BGPPeer",
        "v1beta2",
        PEER,
        "enableGracefulRestart: true",
        lambda r: r.bgp_peers[0].enable_graceful_restart,
        True,
    ),
    ("BGPPeer", "v1beta2", PEER, "disableMP: true", lambda r: r.bgp_peers[0].disable_mp, True),
    (
        "BGPPeer",
        "v1beta2",
        PEER,
        "dualStackAddressFamily: true",
        lambda r: r.bgp_peers[0].dual_stack_address_family,
        True,
    ),
]

REFUSED: list[tuple[str, str, str, str]] = [
    ("L2Advertisement", "v1beta1", "", "preferredNodeSelectors: [{weight: 10, preference: {}}]"),
    ("BGPPeer", "v1beta2", PEER, "vrf: red"),
    ("BGPPeer", "v1beta2", "myASN: 64500\npeerASN: 64501", "interface: eth0"),
    ("BGPPeer", "v1beta2", PEER, "passwordSecret: {name: bgp-secret}"),
]


@pytest.mark.parametrize(
    "case", SUPPORTED, ids=[f"{k}/{v}/{f.split(':')[0]}" for k, v, _, f, _, _ in SUPPORTED]
)
def test_every_documented_field_reaches_the_model(
    case: tuple[str, str, str, str, Check, object],
) -> None:
    kind, version, base, field, check, expected = case
    extra = metallb("BFDProfile", "slow", "") if kind == "BGPPeer" else ""
    resources = parse(metallb(kind, "obj", base + "\n" + field, version) + extra)
    assert check(resources) == expected


@pytest.mark.parametrize(
    ("kind", "version", "base", "field"),
    REFUSED,
    ids=[f"{k}/{f.split(':')[0]}" for k, _, _, f in REFUSED],
)
def test_documented_fields_pikube_does_not_do_are_refused_by_name(
    kind: str, version: str, base: str, field: str
) -> None:
    name = field.split(":", maxsplit=1)[0]
    message = error_of(metallb(kind, "obj", base + "\n" + field, version))
    assert f"{kind} 'obj': spec.{name}: not supported by pikube" in message


def test_v1beta1_peers_do_not_know_v1beta2_fields() -> None:
    message = error_of(metallb("BGPPeer", "r", PEER + "\nconnectTime: 5s", "v1beta1"))
    assert "spec.connectTime: unknown field" in message


@pytest.mark.parametrize(
    "kind",
    ["IPAddressPool", "L2Advertisement", "BGPAdvertisement", "Community", "BFDProfile", "BGPPeer"],
)
def test_a_field_metallb_does_not_know_is_refused_by_name(kind: str) -> None:
    base = {"IPAddressPool": "addresses: [203.0.113.0/24]", "BGPPeer": PEER}.get(kind, "")
    message = error_of(
        metallb(
            kind, "obj", base + "\nautoassign: true", "v1beta2" if kind == "BGPPeer" else "v1beta1"
        )
    )
    assert f"m.yaml, document 1: {kind} 'obj': spec.autoassign: unknown field" in message


def test_the_seed_configuration_is_read_unchanged() -> None:
    resources = parse(
        """
        apiVersion: metallb.io/v1beta1
        kind: IPAddressPool
        metadata:
          name: first-pool
          namespace: metallb-system
        spec:
          addresses:
          - 192.168.68.230-192.168.68.250
        ---
        apiVersion: metallb.io/v1beta1
        kind: L2Advertisement
        metadata:
          name: example
          namespace: metallb-system
        """
    )
    (pool,) = resources.pools
    assert pool.addresses == (AddressRange(ip("192.168.68.230"), ip("192.168.68.250")),)
    assert pool.auto_assign
    assert not pool.avoid_buggy_ips
    assert pool.service_allocation is None
    assert [a.name for a in resources.l2_advertisements] == ["example"]


def test_different_local_prefs_are_fine_when_the_routes_differ() -> None:
    node = "---\napiVersion: v1\nkind: Node\nmetadata: {name: node01, labels: {rack: a}}\n"
    resources = parse(
        POOL
        + node
        + metallb("BGPAdvertisement", "a", "localPref: 100\npeers: [r1]")
        + metallb("BGPAdvertisement", "aggregate", "localPref: 200\naggregationLength: 24")
        + metallb("BGPAdvertisement", "peer", "localPref: 300\npeers: [r2]")
        + metallb("BGPAdvertisement", "peer2", "localPref: 400\npeers: [r3]")
        + metallb(
            "BGPAdvertisement", "rack", "localPref: 500\nnodeSelectors: [{matchLabels: {rack: b}}]"
        )
        + metallb(
            "BGPAdvertisement", "svc", "localPref: 600\nserviceSelectors: [{matchLabels: {a: b}}]"
        )
    )
    assert [a.local_pref for a in resources.bgp_advertisements] == [100, 200, 300, 400, 500, 600]


def test_defaults_are_metallbs() -> None:
    resources = parse(
        POOL
        + metallb("BGPAdvertisement", "b", "")
        + metallb("BFDProfile", "f", "")
        + metallb("BGPPeer", "r", PEER, "v1beta2")
    )
    adv, profile, peer = (
        resources.bgp_advertisements[0],
        resources.bfd_profiles[0],
        resources.bgp_peers[0],
    )
    assert (adv.aggregation_length, adv.aggregation_length_v6, adv.local_pref) == (32, 128, 0)
    assert (
        profile.receive_interval_ms,
        profile.transmit_interval_ms,
        profile.detect_multiplier,
    ) == (300, 300, 3)
    assert (profile.echo_interval_ms, profile.minimum_ttl, profile.echo_mode) == (50, 254, False)
    assert (peer.peer_port, peer.hold_time_s, peer.keepalive_time_s) == (179, None, None)


# --- errors that say where ----------------------------------------------------------------------

ERRORS: dict[str, tuple[str, str]] = {
    "a range that ends before it starts": (
        metallb("IPAddressPool", "p", "addresses: [203.0.113.9-203.0.113.1]"),
        "m.yaml, document 1: IPAddressPool 'p': spec.addresses[0]: range "
        "'203.0.113.9-203.0.113.1' ends before it starts",
    ),
    "a CIDR with host bits": (
        metallb("IPAddressPool", "p", "addresses: [203.0.113.0/25, 203.0.113.130/25]"),
        "IPAddressPool 'p': spec.addresses[1]: CIDR '203.0.113.130/25' has host bits set: write "
        "203.0.113.128/25 for the whole network, or 203.0.113.130-203.0.113.255 for a range",
    ),
    "a single address without a prefix": (
        metallb("IPAddressPool", "p", "addresses: [203.0.113.7]"),
        "spec.addresses[0]: '203.0.113.7' is a single address; write it as 203.0.113.7/32",
    ),
    "a range mixing families": (
        metallb("IPAddressPool", "p", "addresses: ['203.0.113.1-2001:db8::1']"),
        "spec.addresses[0]: range '203.0.113.1-2001:db8::1' mixes IPv4 and IPv6",
    ),
    "garbage for an address": (
        metallb("IPAddressPool", "p", "addresses: [not-an-ip]"),
        "spec.addresses[0]: 'not-an-ip' is not a valid address range",
    ),
    "a pool without addresses": (
        metallb("IPAddressPool", "p", "autoAssign: true"),
        "IPAddressPool 'p': spec.addresses: a pool needs at least one CIDR or address range",
    ),
    "overlapping pools": (
        metallb("IPAddressPool", "a", "addresses: [203.0.113.0/24]")
        + metallb("IPAddressPool", "b", "addresses: [203.0.113.128-203.0.113.130]"),
        "m.yaml, document 2: IPAddressPool 'b': spec.addresses[0]: 203.0.113.128-203.0.113.130 "
        "overlaps "
        "203.0.113.0/24 of IPAddressPool 'a' (m.yaml, document 1); pools must not share addresses",
    ),
    "overlapping ranges inside one pool": (
        metallb("IPAddressPool", "a", "addresses: ['2001:db8::/120', '2001:db8::10/128']"),
        "IPAddressPool 'a': spec.addresses[1]: 2001:db8::10/128 overlaps 2001:db8::/120; pools "
        "must",
    ),
    "a pool defined twice": (
        POOL + metallb("IPAddressPool", "p", "addresses: [198.51.100.0/24]"),
        "m.yaml, document 2: IPAddressPool 'p': defined twice (first in m.yaml, document 1)",
    ),
    "a non-boolean autoAssign": (
        metallb("IPAddressPool", "p", "addresses: [203.0.113.0/24]\nautoAssign: 'no'"),
        "IPAddressPool 'p': spec.autoAssign: expected true or false, got str 'no'",
    ),
    "a negative priority": (
        metallb(
            "IPAddressPool", "p", "addresses: [203.0.113.0/24]\nserviceAllocation: {priority: -1}"
        ),
        "spec.serviceAllocation.priority: -1 is out of range (0 to 2147483647)",
    ),
    "a namespace listed twice": (
        metallb(
            "IPAddressPool",
            "p",
            "addresses: [203.0.113.0/24]\nserviceAllocation: {namespaces: [a, a]}",
        ),
        "spec.serviceAllocation.namespaces[1]: 'a' is listed twice",
    ),
    "an unknown selector operator": (
        metallb(
            "L2Advertisement",
            "l",
            "nodeSelectors: [{matchExpressions: [{key: a, operator: Is, values: [x]}]}]",
        ),
        "L2Advertisement 'l': spec.nodeSelectors[0].matchExpressions[0].operator: unknown "
        "operator 'Is'",
    ),
    "In without values": (
        metallb(
            "L2Advertisement", "l", "nodeSelectors: [{matchExpressions: [{key: a, operator: In}]}]"
        ),
        "spec.nodeSelectors[0].matchExpressions[0].values: operator In needs at least one value",
    ),
    "a label value that YAML read as a boolean": (
        metallb("L2Advertisement", "l", "nodeSelectors: [{matchLabels: {edge: true}}]"),
        'spec.nodeSelectors[0].matchLabels.edge: must be a string (quote it: "true")',
    ),
    "the same selector twice": (
        metallb(
            "L2Advertisement", "l", "nodeSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: b}}]"
        ),
        "spec.nodeSelectors[1]: the same selector is listed twice",
    ),
    "an unknown community alias": (
        metallb("BGPAdvertisement", "b", "communities: [vpn-only]"),
        "BGPAdvertisement 'b': spec.communities[0]: unknown community alias 'vpn-only' (aliases: "
        "none defined)",
    ),
    "an invalid community": (
        metallb("BGPAdvertisement", "b", "communities: ['70000:1']"),
        "spec.communities[0]: '70000:1': '70000' is not a number from 0 to 65535; nor is it a "
        "defined alias",
    ),
    "an invalid alias value": (
        metallb("Community", "c", "communities: [{name: x, value: 'large:1:2'}]"),
        "Community 'c': spec.communities[0].value: 'large:1:2' is not a community",
    ),
    "an alias defined twice": (
        metallb("Community", "c1", "communities: [{name: x, value: '1:1'}]")
        + metallb("Community", "c2", "communities: [{name: x, value: '1:2'}]"),
        "m.yaml, document 2: Community 'c2': spec.communities[0].name: community alias 'x' is "
        "defined twice",
    ),
    "aggregation with serviceSelectors": (
        metallb(
            "BGPAdvertisement",
            "b",
            "aggregationLength: 24\nserviceSelectors: [{matchLabels: {a: b}}]",
        ),
        "spec.aggregationLength: cannot be combined with serviceSelectors (only 32)",
    ),
    "an aggregate wider than the pool": (
        POOL + metallb("BGPAdvertisement", "b", "aggregationLength: 16"),
        "BGPAdvertisement 'b': spec.aggregationLength: /16 is wider than /24 of 203.0.113.0/24 in "
        "IPAddressPool 'p'",
    ),
    "a BFD value out of range": (
        metallb("BFDProfile", "f", "detectMultiplier: 1"),
        "BFDProfile 'f': spec.detectMultiplier: 1 is out of range (2 to 255)",
    ),
    "a peer with a missing BFD profile": (
        metallb("BGPPeer", "r", PEER + "\nbfdProfile: fast", "v1beta2"),
        "BGPPeer 'r': spec.bfdProfile: no BFDProfile named 'fast'",
    ),
    "a peer with both ASN kinds": (
        metallb("BGPPeer", "r", PEER + "\ndynamicASN: external", "v1beta2"),
        "spec.dynamicASN: cannot be combined with peerASN",
    ),
    "a peer without an ASN": (
        metallb("BGPPeer", "r", "myASN: 64500\npeerAddress: 203.0.113.1", "v1beta2"),
        "BGPPeer 'r': spec.peerASN: required",
    ),
    "eBGP multihop on an iBGP peer": (
        metallb(
            "BGPPeer",
            "r",
            "myASN: 64500\npeerASN: 64500\npeerAddress: 203.0.113.1\nebgpMultiHop: true",
            "v1beta2",
        ),
        "spec.ebgpMultiHop: is for eBGP peers, but this peer is iBGP",
    ),
    "a hold time under 3 s": (
        metallb("BGPPeer", "r", PEER + "\nholdTime: 2s", "v1beta2"),
        "spec.holdTime: must be 0 (no keepalives) or at least 3s",
    ),
    "a keepalive longer than the hold time": (
        metallb("BGPPeer", "r", PEER + "\nholdTime: 9s\nkeepaliveTime: 10s", "v1beta2"),
        "spec.keepaliveTime: must not be longer than holdTime",
    ),
    "a duration without unit": (
        metallb("BGPPeer", "r", PEER + "\nholdTime: '90'", "v1beta2"),
        "spec.holdTime: '90' is not a duration",
    ),
    "a connect time in fractions": (
        metallb("BGPPeer", "r", PEER + "\nconnectTime: 1500ms", "v1beta2"),
        "spec.connectTime: must be a whole number of seconds",
    ),
    "an IPv6 router ID": (
        metallb("BGPPeer", "r", PEER + "\nrouterID: '2001:db8::1'", "v1beta2"),
        "spec.routerID: a BGP router ID is a 32-bit number",
    ),
    "a port out of range": (
        metallb("BGPPeer", "r", PEER + "\npeerPort: 20000", "v1beta2"),
        "spec.peerPort: 20000 is out of range (1 to 16384)",
    ),
    "BFD echo toward IPv6 addresses": (
        metallb("IPAddressPool", "v6", "addresses: ['2001:db8::/120']")
        + metallb("BFDProfile", "echo", "echoMode: true")
        + metallb("BGPPeer", "r", PEER + "\nbfdProfile: echo", "v1beta2")
        + metallb("BGPAdvertisement", "b", ""),
        "BGPAdvertisement 'b': spec: advertises IPv6 addresses to BGPPeer 'r', whose BFDProfile "
        "'echo' has echoMode on",
    ),
    "two localPrefs for the same routes": (
        POOL
        + "---\napiVersion: v1\nkind: Node\nmetadata: {name: node01}\n"
        + metallb("BGPAdvertisement", "a", "localPref: 100")
        + metallb("BGPAdvertisement", "b", "localPref: 200\naggregationLengthV6: 64"),
        "m.yaml, document 4: BGPAdvertisement 'b': spec.localPref: localPref 200 differs from "
        "localPref 100 of BGPAdvertisement 'a' for the same routes (pool 'p'",
    ),
    "a misspelt spec": (
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l}\n"
        "spce: {ipAddressPools: [p]}\n",
        "m.yaml, document 1: L2Advertisement: spce: unknown field",
    ),
    "an unknown MetalLB kind": (
        "apiVersion: metallb.io/v1beta1\nkind: IPAdressPool\nmetadata: {name: p}\n",
        "m.yaml, document 1: IPAdressPool: unknown MetalLB kind (pikube reads BFDProfile, "
        "BGPAdvertisement",
    ),
    "an unsupported MetalLB version": (
        "apiVersion: metallb.io/v1beta2\nkind: IPAddressPool\nmetadata: {name: p}\n",
        "IPAddressPool: apiVersion 'metallb.io/v1beta2' is not supported for IPAddressPool (use "
        "metallb.io/v1beta1)",
    ),
    "an object without a name": (
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {namespace: x}\nspec: "
        "{addresses: [203.0.113.0/24]}\n",
        "m.yaml, document 1: IPAddressPool: metadata.name: required",
    ),
    "a document without a kind": (
        "---\nfoo: bar\n",
        "m.yaml, document 1: not a Kubernetes object: 'kind' is missing",
    ),
    "a document that is a list": (
        "- a\n- b\n",
        "m.yaml, document 1: expected a Kubernetes object (a mapping with apiVersion and kind), "
        "got a list",
    ),
    "MetalLB's old ConfigMap": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\n"
        "data:\n  config: |\n    address-pools:\n    - name: default\n",
        "ConfigMap 'config': data.config: this is MetalLB's ConfigMap configuration (before v0.13)",
    ),
    "a service port out of range": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: web}\nspec: {ports: "
        "[{port: 70000}]}\n",
        "m.yaml, document 1: Service 'web/s': spec.ports[0].port: 70000 is out of range (1 to "
        "65535)",
    ),
    "an annotation YAML read as a boolean": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, annotations: "
        "{metallb.io/allow-shared-ip: yes}}\n",
        "Service 'default/s': metadata.annotations.metallb.io/allow-shared-ip: must be a string",
    ),
    "an unknown service type": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: Balancer}\n",
        "Service 'default/s': spec.type: unknown service type 'Balancer'",
    ),
    "a service defined twice": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Service\n"
        "metadata: {name: s, namespace: default}\n",
        "m.yaml, document 2: Service 'default/s': defined twice (first in m.yaml, document 1)",
    ),
    "an error inside a List names the item": (
        "apiVersion: v1\nkind: List\nitems:\n- "
        + POOL.strip().replace("\n", "\n  ").replace("---\n  ", "")
        + "\n- apiVersion: metallb.io/v1beta1\n  kind: IPAddressPool\n  metadata: {name: q}\n  "
        "spec: {addresses: [203.0.113.1/32]}\n",
        "m.yaml, document 1, items[1]: IPAddressPool 'q': spec.addresses[0]: 203.0.113.1/32 "
        "overlaps 203.0.113.0/24",
    ),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_invalid_input_is_refused_with_where_and_why(name: str) -> None:
    text, expected = ERRORS[name]
    assert expected in error_of(text)


def test_config_errors_exit_2() -> None:
    with pytest.raises(ConfigError) as info:
        parse(metallb("IPAddressPool", "p", "addresses: []"))
    assert isinstance(info.value, PikubeError)
    assert info.value.exit_code == 2
    assert info.value.field == "spec.addresses"
    assert info.value.obj == "IPAddressPool 'p'"
    assert info.value.origin == Origin("m.yaml", 1)


# --- YAML as Kubernetes reads it ----------------------------------------------------------------


def test_an_unquoted_community_stays_a_community() -> None:
    # YAML 1.1 reads 1234:1 as the base-60 number 74041; Kubernetes does not.
    resources = parse(
        metallb("Community", "c", "communities: [{name: vpn-only, value: 1234:1}]")
        + metallb("BGPAdvertisement", "b", "communities: [vpn-only, 64500:10]")
    )
    assert resources.bgp_advertisements[0].communities == (
        StandardCommunity(1234, 1),
        StandardCommunity(64500, 10),
    )
    assert (
        parse(metallb("BFDProfile", "f", "receiveInterval: 120"))
        .bfd_profiles[0]
        .receive_interval_ms
        == 120
    )


def test_a_key_written_twice_is_an_error() -> None:
    message = error_of(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: ClusterIP\n  type: "
        "LoadBalancer\n"
    )
    assert (
        message
        == "m.yaml, document 1: invalid YAML (line 6, column 3): key 'type' is written twice"
    )


def test_a_yaml_syntax_error_names_the_document() -> None:
    message = error_of(POOL + "---\napiVersion: v1\nkind: [Service\n")
    assert message.startswith("m.yaml, document 2: invalid YAML (line 12, column 1): ")


def test_parse_duration_reads_go_durations() -> None:
    assert parse_duration_s("90s") == 90
    assert parse_duration_s("1m30s") == 90
    assert parse_duration_s("1.5h") == 5400
    assert parse_duration_s("250ms") == pytest.approx(0.25)
    assert parse_duration_s("0") == 0
    for bad in ("", "90", "-1s", "1x"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration_s(bad)


# --- what is skipped, and the Kubernetes objects ------------------------------------------------


def test_other_kinds_and_metallbs_status_objects_are_skipped() -> None:
    resources = parse(
        POOL
        + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nginx}\nspec: {replicas: "
        "1}\n"
        + "---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: k}\nspec: "
        "{template: {}}\n"
        + "---\napiVersion: metallb.io/v1beta1\nkind: ServiceL2Status\nmetadata: {name: l2-abc}\n"
        "status: {node: n1}\n"
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: nginx-conf}\ndata: {a: b}\n"
        + "---\n"  # an empty document
    )
    assert [p.name for p in resources.pools] == ["p"]
    assert resources.services == ()


def test_a_kubectl_list_dump_is_opened() -> None:
    resources = parse(
        """
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Service
          metadata: {name: a, namespace: x}
        - apiVersion: v1
          kind: Service
          metadata: {name: b, namespace: x}
        """
    )
    assert [s.key for s in resources.services] == ["x/a", "x/b"]


def test_services_keep_what_the_allocator_needs() -> None:
    (service,) = parse(
        """
        apiVersion: v1
        kind: Service
        metadata:
          name: dns
          namespace: infra
          labels: {app: dns}
          annotations: {metallb.io/allow-shared-ip: dns}
          creationTimestamp: "2024-05-06T07:08:09Z"
        spec:
          type: LoadBalancer
          loadBalancerIP: 203.0.113.53
          loadBalancerClass: pikube.io/lb
          externalTrafficPolicy: Local
          selector: {app: dns}
          ports:
          - {name: dns-udp, port: 53, protocol: UDP}
          - {port: 53}
          ipFamilyPolicy: PreferDualStack
          ipFamilies: [IPv6, IPv4]
          clusterIP: fd00::53
          clusterIPs: [fd00::53, 10.96.0.53]
        status:
          loadBalancer:
            ingress: [{ip: 203.0.113.53}, {hostname: dns.example}]
        """
    ).services
    assert service.key == "infra/dns"
    assert service.labels == {"app": "dns"}
    assert service.annotations == {"metallb.io/allow-shared-ip": "dns"}
    assert service.creation_timestamp == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert service.type is ServiceType.LOAD_BALANCER
    assert service.load_balancer_ip == "203.0.113.53"
    assert service.load_balancer_class == "pikube.io/lb"
    assert service.external_traffic_policy is ExternalTrafficPolicy.LOCAL
    assert service.selector == {"app": "dns"}
    assert [(p.port, p.protocol, p.name) for p in service.ports] == [
        (53, Protocol.UDP, "dns-udp"),
        (53, Protocol.TCP, None),
    ]
    assert service.ip_family_policy is IPFamilyPolicy.PREFER_DUAL_STACK
    assert service.ip_families == (IPFamily.IPV6, IPFamily.IPV4)
    assert service.cluster_ips == (ip("fd00::53"), ip("10.96.0.53"))
    assert service.ingress_ips == (ip("203.0.113.53"),)


def test_a_minimal_service_gets_kubernetes_defaults() -> None:
    (service,) = parse("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n").services
    assert service.namespace == "default"
    assert service.type is ServiceType.CLUSTER_IP
    assert service.external_traffic_policy is ExternalTrafficPolicy.CLUSTER
    assert service.ip_family_policy is None
    assert service.cluster_ips == ()
    assert service.creation_timestamp is None


def test_headless_cluster_ips_mean_none() -> None:
    (service,) = parse(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: None}\n"
    ).services
    assert service.cluster_ips == ()


def test_namespaces_nodes_and_endpoint_slices_are_read_leniently() -> None:
    resources = parse(
        """
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop, labels: {env: prod}}
        spec: {finalizers: [kubernetes]}
        ---
        apiVersion: v1
        kind: Node
        metadata: {name: node01, labels: {kubernetes.io/hostname: node01}}
        spec: {podCIDR: 10.244.1.0/24, whatever: [1, 2]}
        status:
          conditions:
          - {type: Ready, status: "True"}
          - {type: NetworkUnavailable, status: "True", reason: RouteCreated}
        ---
        apiVersion: v1
        kind: Node
        metadata: {name: node02}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: nginx-x7k2p
          namespace: web
          labels: {kubernetes.io/service-name: nginx}
        addressType: IPv4
        ports: [{port: 80}]
        endpoints:
        - addresses: [10.244.2.5]
          nodeName: node02
          conditions: {ready: true, serving: true, terminating: false}
          targetRef: {kind: Pod, name: nginx-1}
        - addresses: [10.244.3.7]
          nodeName: node03
          conditions: {ready: false}
        """
    )
    assert [(n.name, dict(n.labels)) for n in resources.namespaces] == [("shop", {"env": "prod"})]
    assert [(n.name, n.network_unavailable) for n in resources.nodes] == [
        ("node01", True),
        ("node02", False),
    ]
    (eps,) = resources.endpoint_slices
    assert (eps.service_key, eps.address_type) == ("web/nginx", AddressType.IPV4)
    assert [(e.addresses, e.node_name, e.ready, e.serving) for e in eps.endpoints] == [
        (("10.244.2.5",), "node02", True, True),
        (("10.244.3.7",), "node03", False, None),
    ]


# --- the file adapter ---------------------------------------------------------------------------


def test_directories_give_their_yaml_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b-pool.yml").write_text(
        metallb("IPAddressPool", "b", "addresses: [198.51.100.0/24]")
    )
    (tmp_path / "a-pool.yaml").write_text(
        POOL + metallb("IPAddressPool", "a2", "addresses: ['2001:db8::/64']")
    )
    (tmp_path / "notes.txt").write_text("not yaml: [")
    (tmp_path / ".a-pool.yaml.swp").write_text("garbage [")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.yaml").write_text("garbage [")
    single = tmp_path / "sub" / "svc.yml"
    single.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
    resources = load_manifests([tmp_path, single])
    assert [p.name for p in resources.pools] == ["p", "a2", "b"]  # not recursive
    assert [s.key for s in resources.services] == ["default/s"]


def test_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(POOL)
    bad = tmp_path / "pools.yaml"
    bad.write_text(POOL.replace("name: p", "name: q").replace("/24", "/16"))
    with pytest.raises(ConfigError) as info:
        load_manifests([tmp_path])
    assert info.value.message.startswith(f"{tmp_path}/pools.yaml, document 1: IPAddressPool 'q'")
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such file or directory"):
        load_manifests([missing])
