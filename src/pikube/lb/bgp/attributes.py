"""BGP path attributes and prefixes: bytes <-> values, with RFC 7606's error handling (which
attribute errors withdraw the routes, which are discarded). Pure; used by `codec` for UPDATE.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence

from pikube.lb.bgp.messages import (
    AS_TRANS,
    FLAG_EXTENDED,
    FLAG_OPTIONAL,
    FLAG_TRANSITIVE,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    AttrType,
    ErrorCode,
    Family,
    IPNetwork,
    MessageError,
    MpReach,
    MpUnreach,
    Origin,
    RawAttribute,
    SegmentType,
    Update,
    UpdateError,
)
from pikube.lb.model import LargeCommunity, StandardCommunity

WELL_KNOWN = {
    AttrType.ORIGIN,
    AttrType.AS_PATH,
    AttrType.NEXT_HOP,
    AttrType.LOCAL_PREF,
    AttrType.ATOMIC_AGGREGATE,
}


# Optional attributes and whether they are transitive (RFC 4271, 1997, 4760, 6793, 8092).
OPTIONAL_TRANSITIVE = {
    AttrType.MED: False,
    AttrType.AGGREGATOR: True,
    AttrType.COMMUNITIES: True,
    AttrType.MP_REACH_NLRI: False,
    AttrType.MP_UNREACH_NLRI: False,
    AttrType.AS4_PATH: True,
    AttrType.AS4_AGGREGATOR: True,
    AttrType.LARGE_COMMUNITIES: True,
}


# RFC 7606 section 7: what a malformed attribute of each kind costs.
DISCARD_ON_ERROR = {
    AttrType.ATOMIC_AGGREGATE,
    AttrType.AGGREGATOR,
    AttrType.AS4_PATH,
    AttrType.AS4_AGGREGATOR,
}


def encode_prefix(net: IPNetwork) -> bytes:
    size = (net.prefixlen + 7) // 8
    return bytes([net.prefixlen]) + net.network_address.packed[:size]


def decode_prefixes(data: bytes, version: int, error: MessageError) -> tuple[IPNetwork, ...]:
    width = 32 if version == 4 else 128
    out: list[IPNetwork] = []
    pos = 0
    while pos < len(data):
        length = data[pos]
        size = (length + 7) // 8
        if length > width or pos + 1 + size > len(data):
            raise error
        raw = data[pos + 1 : pos + 1 + size].ljust(width // 8, b"\0")
        address = ipaddress.ip_address(raw)
        out.append(ipaddress.ip_network((address, length), strict=False))
        pos += 1 + size
    return tuple(out)


def v4(nets: Iterable[IPNetwork]) -> tuple[ipaddress.IPv4Network, ...]:
    return tuple(n for n in nets if isinstance(n, ipaddress.IPv4Network))


def attribute(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255:
        return struct.pack("!BBH", flags | FLAG_EXTENDED, code, len(value)) + value
    return struct.pack("!BBB", flags & ~FLAG_EXTENDED, code, len(value)) + value


def encode_as_path(segments: Sequence[AsPathSegment], four_octet: bool) -> bytes:
    fmt = "!I" if four_octet else "!H"
    out = b""
    for seg in segments:
        for start in range(0, max(len(seg.asns), 1), 255):
            chunk = seg.asns[start : start + 255]
            out += bytes([seg.type, len(chunk)])
            out += b"".join(
                struct.pack(fmt, a if four_octet or a <= 0xFFFF else AS_TRANS) for a in chunk
            )
    return out


def encode_attributes(update: Update, four_octet: bool) -> bytes:
    out = b""
    if update.origin is not None:
        out += attribute(FLAG_TRANSITIVE, AttrType.ORIGIN, bytes([update.origin]))
    if update.as_path is not None:
        out += attribute(
            FLAG_TRANSITIVE, AttrType.AS_PATH, encode_as_path(update.as_path, four_octet)
        )
    if update.next_hop is not None:
        out += attribute(FLAG_TRANSITIVE, AttrType.NEXT_HOP, update.next_hop.packed)
    if update.med is not None:
        out += attribute(FLAG_OPTIONAL, AttrType.MED, struct.pack("!I", update.med))
    if update.local_pref is not None:
        out += attribute(FLAG_TRANSITIVE, AttrType.LOCAL_PREF, struct.pack("!I", update.local_pref))
    if update.communities:
        value = b"".join(struct.pack("!HH", c.asn, c.value) for c in update.communities)
        out += attribute(FLAG_OPTIONAL | FLAG_TRANSITIVE, AttrType.COMMUNITIES, value)
    if update.mp_reach is not None:
        reach = update.mp_reach
        hops = b"".join(h.packed for h in reach.next_hops)
        value = struct.pack("!HBB", reach.family.afi, reach.family.safi, len(hops)) + hops
        value += b"\0" + b"".join(encode_prefix(n) for n in reach.nlri)
        out += attribute(FLAG_OPTIONAL, AttrType.MP_REACH_NLRI, value)
    if update.mp_unreach is not None:
        unreach = update.mp_unreach
        value = struct.pack("!HB", unreach.family.afi, unreach.family.safi)
        value += b"".join(encode_prefix(n) for n in unreach.withdrawn)
        out += attribute(FLAG_OPTIONAL, AttrType.MP_UNREACH_NLRI, value)
    if (
        not four_octet
        and update.as_path is not None
        and any(a > 0xFFFF for seg in update.as_path for a in seg.asns)
    ):
        # RFC 6793: a 2-octet peer sees AS_TRANS in AS_PATH and the real path here.
        out += attribute(
            FLAG_OPTIONAL | FLAG_TRANSITIVE,
            AttrType.AS4_PATH,
            encode_as_path(update.as_path, True),
        )
    if update.large_communities:
        value = b"".join(
            struct.pack("!III", c.global_administrator, c.local_data_1, c.local_data_2)
            for c in update.large_communities
        )
        out += attribute(FLAG_OPTIONAL | FLAG_TRANSITIVE, AttrType.LARGE_COMMUNITIES, value)
    for raw in update.other:
        out += attribute(raw.flags, raw.type, raw.value)
    return out


class TreatAsWithdraw(Exception):
    pass


class Discard(Exception):
    pass


def decode_as_path(value: bytes, four_octet: bool) -> tuple[AsPathSegment, ...]:
    width = 4 if four_octet else 2
    segments = []
    pos = 0
    while pos < len(value):
        if pos + 2 > len(value):
            raise ValueError("truncated segment")
        stype, count = value[pos], value[pos + 1]
        if count == 0 or stype not in SegmentType._value2member_map_:
            raise ValueError(f"segment type {stype} with {count} ASes")
        end = pos + 2 + count * width
        if end > len(value):
            raise ValueError("segment overruns the attribute")
        fmt = "!" + ("I" if four_octet else "H") * count
        segments.append(AsPathSegment(SegmentType(stype), struct.unpack_from(fmt, value, pos + 2)))
        pos = end
    return tuple(segments)


def decode_attribute(
    flags: int,
    code: int,
    value: bytes,
    four_octet: bool,
    fields: dict[str, object],
    other: list[RawAttribute],
) -> None:
    try:
        kind = AttrType(code)
    except ValueError:
        if not flags & FLAG_OPTIONAL:
            raise MessageError(
                ErrorCode.UPDATE_MESSAGE,
                UpdateError.UNRECOGNIZED_WELL_KNOWN,
                f"unrecognized well-known attribute {code}",
                bytes([flags, code, min(len(value), 255)]) + value[:255],
            ) from None
        other.append(RawAttribute(flags, code, value))
        return
    mp = kind in (AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI)

    def fail(why: str) -> Exception:
        what = f"attribute {kind.name}: {why}"
        if mp:
            return MessageError(ErrorCode.UPDATE_MESSAGE, UpdateError.OPTIONAL_ATTRIBUTE, what)
        if kind in DISCARD_ON_ERROR:
            return Discard(what + "; discarded")
        return TreatAsWithdraw(what)

    optional = kind not in WELL_KNOWN
    if bool(flags & FLAG_OPTIONAL) != optional or (
        bool(flags & FLAG_TRANSITIVE) != (not optional or OPTIONAL_TRANSITIVE[kind])
    ):
        raise fail(f"wrong flags {flags:#04x}")
    if kind is AttrType.ORIGIN:
        if len(value) != 1 or value[0] > 2:
            raise fail("not 0, 1 or 2")
        fields["origin"] = Origin(value[0])
    elif kind is AttrType.AS_PATH:
        try:
            fields["as_path"] = decode_as_path(value, four_octet)
        except ValueError as exc:
            raise fail(str(exc)) from None
    elif kind is AttrType.NEXT_HOP:
        if len(value) != 4:
            raise fail(f"{len(value)} bytes")
        fields["next_hop"] = ipaddress.IPv4Address(value)
    elif kind in (AttrType.MED, AttrType.LOCAL_PREF):
        if len(value) != 4:
            raise fail(f"{len(value)} bytes")
        fields["med" if kind is AttrType.MED else "local_pref"] = struct.unpack("!I", value)[0]
    elif kind is AttrType.COMMUNITIES:
        if not value or len(value) % 4:
            raise fail(f"{len(value)} bytes")
        fields["communities"] = tuple(
            StandardCommunity(*struct.unpack_from("!HH", value, i)) for i in range(0, len(value), 4)
        )
    elif kind is AttrType.LARGE_COMMUNITIES:
        if not value or len(value) % 12:
            raise fail(f"{len(value)} bytes")
        fields["large_communities"] = tuple(
            LargeCommunity(*struct.unpack_from("!III", value, i)) for i in range(0, len(value), 12)
        )
    elif kind is AttrType.MP_REACH_NLRI:
        if len(value) < 5:
            raise fail("too short")
        afi, safi, hop_len = struct.unpack_from("!HBB", value)
        fam = Family(afi, safi)
        if 4 + hop_len + 1 > len(value):
            raise fail("next hop overruns the attribute")
        hops_raw = value[4 : 4 + hop_len]
        nlri_raw = value[4 + hop_len + 1 :]
        if fam not in (IPV4_UNICAST, IPV6_UNICAST):
            other.append(RawAttribute(flags, code, value))  # a family we did not negotiate
            return
        width = 4 if fam == IPV4_UNICAST else 16
        if hop_len not in (width, 2 * width) or (fam == IPV4_UNICAST and hop_len != 4):
            raise fail(f"next hop of {hop_len} bytes")
        hops = tuple(
            ipaddress.ip_address(hops_raw[i : i + width]) for i in range(0, hop_len, width)
        )
        version = 4 if fam == IPV4_UNICAST else 6
        try:
            nets = decode_prefixes(nlri_raw, version, MessageError(0, 0, ""))
        except MessageError:
            raise fail("malformed NLRI") from None
        fields["mp_reach"] = MpReach(fam, hops, nets)
    elif kind is AttrType.MP_UNREACH_NLRI:
        if len(value) < 3:
            raise fail("too short")
        afi, safi = struct.unpack_from("!HB", value)
        fam = Family(afi, safi)
        if fam not in (IPV4_UNICAST, IPV6_UNICAST):
            other.append(RawAttribute(flags, code, value))
            return
        try:
            nets = decode_prefixes(
                value[3:], 4 if fam == IPV4_UNICAST else 6, MessageError(0, 0, "")
            )
        except MessageError:
            raise fail("malformed withdrawn routes") from None
        fields["mp_unreach"] = MpUnreach(fam, nets)
    elif kind is AttrType.ATOMIC_AGGREGATE:
        if value:
            raise fail(f"{len(value)} bytes")
        other.append(RawAttribute(flags, code, value))
    elif kind is AttrType.AGGREGATOR:
        if len(value) != (8 if four_octet else 6):
            raise fail(f"{len(value)} bytes")
        other.append(RawAttribute(flags, code, value))
    elif kind is AttrType.AS4_PATH:
        try:
            decode_as_path(value, True)
        except ValueError as exc:
            raise fail(str(exc)) from None
        other.append(RawAttribute(flags, code, value))
    elif kind is AttrType.AS4_AGGREGATOR:
        if len(value) != 8:
            raise fail(f"{len(value)} bytes")
        other.append(RawAttribute(flags, code, value))
