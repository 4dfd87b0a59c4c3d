"""Our routes as a BGP peer has them (Adj-RIB-Out), and the UPDATEs that change them. Pure.

Used by the session machine (`fsm`) once Established: what may be sent to this peer (its
families, a next hop of the right family), the fewest UPDATEs that turn what it has into what
is desired (withdrawals first, routes grouped by attributes), a family again on ROUTE-REFRESH,
and End-of-RIB per family after the first sync (RFC 4724).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace

from pikube.lb.bgp import codec
from pikube.lb.bgp.codec import IPV4_UNICAST, Family, IPAddress, IPNetwork
from pikube.lb.bgp.fsm_events import Action, RouteAttributes, Send


@dataclass(frozen=True)
class Speaking:
    """What the routes sent to one peer depend on (from its session, once negotiated)."""

    local_asn: int
    internal: bool
    four_octet_as: bool
    families: frozenset[Family]
    local_address: IPAddress
    next_hop_v6: ipaddress.IPv6Address | None


def template(ctx: Speaking, attrs: RouteAttributes, version: int) -> codec.Update | None:
    """The UPDATE carrying routes of this family with these attributes (None: cannot send)."""
    as_path: tuple[codec.AsPathSegment, ...] = ()
    if not ctx.internal:
        as_path = (codec.AsPathSegment(codec.SegmentType.AS_SEQUENCE, (ctx.local_asn,)),)
    base = codec.Update(
        origin=codec.Origin.IGP,
        as_path=as_path,
        local_pref=(100 if attrs.local_pref is None else attrs.local_pref)
        if ctx.internal
        else None,
        communities=attrs.communities,
        large_communities=attrs.large_communities,
    )
    if version == 4:
        if ctx.local_address.version != 4:
            return None  # IPv4 routes need an IPv4 next hop (RFC 8950 is not spoken)
        return replace(base, next_hop=ctx.local_address)
    hop = ctx.local_address if ctx.local_address.version == 6 else ctx.next_hop_v6
    if hop is None:
        return None
    return replace(base, mp_reach=codec.MpReach(codec.IPV6_UNICAST, (hop,), ()))


def sendable(
    ctx: Speaking, desired: Mapping[IPNetwork, RouteAttributes]
) -> dict[IPNetwork, RouteAttributes]:
    return {
        net: attrs
        for net, attrs in desired.items()
        if codec.family_of(net.version) in ctx.families
        and template(ctx, attrs, net.version) is not None
    }


def _updates(
    ctx: Speaking, nets: list[IPNetwork], update: codec.Update, withdraw: bool
) -> list[Action]:
    return [
        Send(data, codec.MessageType.UPDATE)
        for data in codec.pack_updates(
            update, nets, withdraw=withdraw, four_octet_as=ctx.four_octet_as
        )
    ]


def sync(
    ctx: Speaking,
    advertised: Mapping[IPNetwork, RouteAttributes],
    desired: Mapping[IPNetwork, RouteAttributes],
    initial: bool = False,
) -> tuple[list[Action], dict[IPNetwork, RouteAttributes]]:
    """The UPDATEs that make the peer's copy `desired` (as far as it may be sent), and what
    the peer has afterwards."""
    target = sendable(ctx, desired)
    gone = sorted((net for net in advertised if net not in target), key=sort_key)
    changed: dict[RouteAttributes, list[IPNetwork]] = {}
    for net in sorted(target, key=sort_key):
        if advertised.get(net) != target[net]:
            changed.setdefault(target[net], []).append(net)
    actions: list[Action] = []
    for version in (4, 6):
        actions += _updates(ctx, [g for g in gone if g.version == version], codec.Update(), True)
    for attrs, nets in changed.items():
        for version in (4, 6):
            of_version = [x for x in nets if x.version == version]
            if of_version:
                update = template(ctx, attrs, version)
                assert update is not None
                actions += _updates(ctx, of_version, update, False)
    if initial:
        for family in sorted(ctx.families):
            eor = end_of_rib(family)
            actions.append(Send(codec.encode(eor, ctx.four_octet_as), codec.MessageType.UPDATE))
    return actions, dict(target)


def refresh(
    ctx: Speaking, advertised: Mapping[IPNetwork, RouteAttributes], family: Family
) -> list[Action]:
    """The family's routes again (ROUTE-REFRESH)."""
    version = 4 if family == IPV4_UNICAST else 6
    by_attrs: dict[RouteAttributes, list[IPNetwork]] = {}
    for net, attrs in sorted(advertised.items(), key=lambda kv: sort_key(kv[0])):
        if net.version == version:
            by_attrs.setdefault(attrs, []).append(net)
    actions: list[Action] = []
    for attrs, nets in by_attrs.items():
        update = template(ctx, attrs, version)
        assert update is not None
        actions += _updates(ctx, nets, update, False)
    return actions


def withdraw_all(ctx: Speaking, advertised: Mapping[IPNetwork, RouteAttributes]) -> list[Action]:
    actions: list[Action] = []
    for version in (4, 6):
        nets = sorted((x for x in advertised if x.version == version), key=sort_key)
        actions += _updates(ctx, nets, codec.Update(), True)
    return actions


def end_of_rib(family: Family) -> codec.Update:
    if family == IPV4_UNICAST:
        return codec.Update()
    return codec.Update(mp_unreach=codec.MpUnreach(family, ()))


def sort_key(net: IPNetwork) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)
