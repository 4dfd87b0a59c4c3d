"""IPv6 Neighbor Discovery (RFC 4861) for service IPs: sans-I/O codec and responder decision.

Owns: parsing ICMPv6 Neighbor Solicitations as a raw ICMPv6 socket delivers them (the ICMPv6
message without the IPv6 header; source address and hop limit come from the socket), building
Neighbor Advertisements, and the solicited-node multicast group of an address. No sockets here.

Advertisements carry Override=1: the speaker owns the address, and clients must replace a
cached MAC on takeover (an unsolicited NA without O only marks the entry STALE; lab-findings
section 3). The kernel fills in the ICMPv6 checksum on send; `icmpv6_checksum` exists for tests
and for frames built outside a raw ICMPv6 socket.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Container
from dataclasses import dataclass

from pikube.lb.l2.arp import MalformedPacket

ICMPV6_NEIGHBOR_SOLICITATION = 135
ICMPV6_NEIGHBOR_ADVERTISEMENT = 136
OPT_SOURCE_LINK_ADDRESS = 1
OPT_TARGET_LINK_ADDRESS = 2
NDP_HOP_LIMIT = 255
ALL_NODES = ipaddress.IPv6Address("ff02::1").packed
UNSPECIFIED = bytes(16)
_SOLICITED_NODE_PREFIX = ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13]

FLAG_ROUTER = 0x80
FLAG_SOLICITED = 0x40
FLAG_OVERRIDE = 0x20

_HEADER = struct.Struct("!BBHI16s")  # type, code, checksum, flags+reserved, target


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    source: bytes  # IPv6 source address of the packet (:: for duplicate address detection)
    target: bytes
    source_mac: bytes | None  # the Source Link-Layer Address option, if present


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    target: bytes
    flags: int
    target_mac: bytes | None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An ICMPv6 message to send: to `destination`, from `source`."""

    destination: bytes
    source: bytes
    message: bytes


def _options(data: bytes, offset: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset < len(data):
        if offset + 2 > len(data):
            raise MalformedPacket("truncated NDP option header")
        kind, units = data[offset], data[offset + 1]
        if units == 0:
            raise MalformedPacket("NDP option with length 0")
        end = offset + units * 8
        if end > len(data):
            raise MalformedPacket(f"NDP option {kind} runs past the end of the message")
        found.setdefault(kind, data[offset + 2 : end])
        offset = end
    return found


def _link_address(option: bytes | None) -> bytes | None:
    if option is None:
        return None
    if len(option) < 6:
        raise MalformedPacket("link-layer address option shorter than a MAC")
    return option[:6]


def parse_solicitation(message: bytes, source: bytes, hop_limit: int) -> NeighborSolicitation:
    """Validate a received NS (RFC 4861 section 7.1.1) and decode it."""
    if hop_limit != NDP_HOP_LIMIT:
        raise MalformedPacket(f"hop limit {hop_limit} is not 255 (off-link sender)")
    if len(message) < _HEADER.size:
        raise MalformedPacket(f"NS of {len(message)} bytes is shorter than {_HEADER.size}")
    kind, code, _checksum, _reserved, target = _HEADER.unpack_from(message, 0)
    if kind != ICMPV6_NEIGHBOR_SOLICITATION:
        raise MalformedPacket(f"ICMPv6 type {kind} is not a neighbor solicitation")
    if code != 0:
        raise MalformedPacket(f"ICMPv6 code {code} is not 0")
    if target[0] == 0xFF:
        raise MalformedPacket("solicitation target is a multicast address")
    if len(source) != 16:
        raise MalformedPacket("source address is not IPv6")
    options = _options(message, _HEADER.size)
    source_mac = _link_address(options.get(OPT_SOURCE_LINK_ADDRESS))
    if source == UNSPECIFIED and source_mac is not None:
        raise MalformedPacket("DAD solicitation (from ::) carries a source link-layer address")
    return NeighborSolicitation(source=source, target=target, source_mac=source_mac)


def parse_advertisement(message: bytes) -> NeighborAdvertisement:
    if len(message) < _HEADER.size:
        raise MalformedPacket(f"NA of {len(message)} bytes is shorter than {_HEADER.size}")
    kind, code, _checksum, flags_reserved, target = _HEADER.unpack_from(message, 0)
    if kind != ICMPV6_NEIGHBOR_ADVERTISEMENT or code != 0:
        raise MalformedPacket(f"ICMPv6 type {kind} code {code} is not a neighbor advertisement")
    options = _options(message, _HEADER.size)
    return NeighborAdvertisement(
        target=target,
        flags=flags_reserved >> 24,
        target_mac=_link_address(options.get(OPT_TARGET_LINK_ADDRESS)),
    )


def build_advertisement(target: bytes, mac: bytes, *, solicited: bool) -> bytes:
    """An NA for `target` at `mac` (Override set; checksum left 0 for the kernel)."""
    flags = FLAG_OVERRIDE | (FLAG_SOLICITED if solicited else 0)
    option = bytes((OPT_TARGET_LINK_ADDRESS, 1)) + mac
    return _HEADER.pack(ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, 0, flags << 24, target) + option


def build_solicitation(target: bytes, mac: bytes | None) -> bytes:
    """An NS for `target` (with our MAC as source link-layer address unless None)."""
    message = _HEADER.pack(ICMPV6_NEIGHBOR_SOLICITATION, 0, 0, 0, target)
    if mac is not None:
        message += bytes((OPT_SOURCE_LINK_ADDRESS, 1)) + mac
    return message


def answer_for(
    solicitation: NeighborSolicitation, owned: Container[bytes], mac: bytes
) -> Outgoing | None:
    """The solicited NA for an NS asking for an owned address, or None.

    To the solicitation's source; to all-nodes when the source is :: (a DAD probe by someone
    else for our address: the answer tells them it is taken, RFC 4861 section 7.2.4).
    """
    if solicitation.target not in owned:
        return None
    if solicitation.source == UNSPECIFIED:
        return Outgoing(
            ALL_NODES,
            solicitation.target,
            build_advertisement(solicitation.target, mac, solicited=False),
        )
    return Outgoing(
        solicitation.source,
        solicitation.target,
        build_advertisement(solicitation.target, mac, solicited=True),
    )


def unsolicited_advertisement(target: bytes, mac: bytes) -> Outgoing:
    """The takeover announcement: an unsolicited NA with Override to all nodes."""
    return Outgoing(ALL_NODES, target, build_advertisement(target, mac, solicited=False))


def solicited_node_group(address: bytes) -> bytes:
    """ff02::1:ffXX:XXXX for an address: the group its solicitations are sent to."""
    return _SOLICITED_NODE_PREFIX + address[13:]


def icmpv6_checksum(source: bytes, destination: bytes, message: bytes) -> int:
    """The ICMPv6 checksum over the IPv6 pseudo-header and the message (checksum field 0)."""
    pseudo = source + destination + struct.pack("!I3xB", len(message), 58)
    data = pseudo + message
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip6(address: str | ipaddress.IPv6Address) -> bytes:
    return ipaddress.IPv6Address(address).packed
