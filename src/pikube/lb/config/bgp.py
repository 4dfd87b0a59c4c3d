"""BGPAdvertisement, Community, BFDProfile and BGPPeer, and the checks across them."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping, Sequence

from pikube.lb.config.constants import MAX_ASN
from pikube.lb.config.fields import (
    ConfigError,
    _describe,
    _Fields,
    _ip,
    _metadata,
    _spec,
    _Where,
    _widest_prefix,
)
from pikube.lb.config.state import _BGPAdvDraft, _Seen
from pikube.lb.model import (
    BFDProfile,
    BGPAdvertisement,
    BGPCommunity,
    BGPPeer,
    Community,
    CommunityAlias,
    DynamicASN,
    IPAddressPool,
    LargeCommunity,
    Node,
    StandardCommunity,
)


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
