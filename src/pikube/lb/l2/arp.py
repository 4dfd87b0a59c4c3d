"""ARP over Ethernet: a sans-I/O codec and the responder's decision. No sockets here.

Owns: parsing an Ethernet frame carrying ARP (RFC 826) into an `ArpFrame`, building the frames
the speaker sends (replies, gratuitous ARP, RFC 5227 probes), and deciding which request gets
which reply. Addresses are kept as raw bytes (6-byte MACs, 4-byte IPv4) because this runs on
every ARP frame of the LAN; convert at the edges with `ip4`/`mac_text`.

Gratuitous ARP uses the *request* form (op 1, sender = target = the IP, broadcast): Linux
ignores the reply form with a broadcast target hardware address (measured on the lab's kernel:
a client's entry changed for the request form, not for that reply). `gratuitous_frames` adds a
reply whose target hardware address equals the sender's, which Linux also honours, for devices
that only learn from replies.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Container
from dataclasses import dataclass

ETH_P_ARP = 0x0806
ETH_HEADER_LEN = 14
ARP_LEN = 28
FRAME_MIN_LEN = ETH_HEADER_LEN + ARP_LEN
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ZERO_IP = b"\x00" * 4

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_ARP_FIXED = struct.pack("!HHBB", 1, 0x0800, 6, 4)  # Ethernet, IPv4, hlen 6, plen 4


class ArpOp(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


class MalformedPacket(ValueError):
    """A frame the codec cannot accept; the reason says which rule it broke."""


@dataclass(frozen=True, slots=True)
class ArpFrame:
    eth_dst: bytes
    eth_src: bytes
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    @property
    def is_probe(self) -> bool:
        """An RFC 5227 probe: a request from 0.0.0.0 asking who has an address."""
        return self.op == ArpOp.REQUEST and self.sender_ip == ZERO_IP

    @property
    def is_gratuitous(self) -> bool:
        return self.sender_ip == self.target_ip and self.sender_ip != ZERO_IP


def parse_frame(frame: bytes) -> ArpFrame:
    """Decode an Ethernet frame holding Ethernet/IPv4 ARP; raise MalformedPacket otherwise."""
    if len(frame) < FRAME_MIN_LEN:
        raise MalformedPacket(f"frame of {len(frame)} bytes is shorter than {FRAME_MIN_LEN}")
    eth_dst, eth_src, ethertype = _ETH.unpack_from(frame, 0)
    if ethertype != ETH_P_ARP:
        raise MalformedPacket(f"ethertype 0x{ethertype:04x} is not ARP")
    if frame[ETH_HEADER_LEN : ETH_HEADER_LEN + 6] != _ARP_FIXED:
        raise MalformedPacket("not Ethernet/IPv4 ARP (hardware/protocol type or lengths)")
    _, _, _, _, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, ETH_HEADER_LEN)
    if op not in (ArpOp.REQUEST, ArpOp.REPLY):
        raise MalformedPacket(f"ARP opcode {op} is neither request nor reply")
    return ArpFrame(eth_dst, eth_src, op, sha, spa, tha, tpa)


def build_frame(
    *,
    eth_dst: bytes,
    eth_src: bytes,
    op: ArpOp,
    sender_mac: bytes,
    sender_ip: bytes,
    target_mac: bytes,
    target_ip: bytes,
) -> bytes:
    """Encode an Ethernet/IPv4 ARP frame (42 bytes; the NIC pads it to the minimum)."""
    return _ETH.pack(eth_dst, eth_src, ETH_P_ARP) + _ARP.pack(
        1, 0x0800, 6, 4, op, sender_mac, sender_ip, target_mac, target_ip
    )


def reply_for(request: ArpFrame, owned: Container[bytes], mac: bytes) -> bytes | None:
    """The reply this node sends for a frame, or None.

    Only requests are answered; only for an owned address; only when the request was
    broadcast or sent to this interface's MAC (a unicast refresh aimed at another node is not
    ours to answer). Probes (sender 0.0.0.0) are answered too: that is how a prober learns
    the address is in use.
    """
    if request.op != ArpOp.REQUEST or request.target_ip not in owned:
        return None
    if request.eth_dst not in (BROADCAST_MAC, mac):
        return None
    if request.is_gratuitous:
        return None  # someone announcing the address, not asking for it
    return build_frame(
        eth_dst=request.sender_mac,
        eth_src=mac,
        op=ArpOp.REPLY,
        sender_mac=mac,
        sender_ip=request.target_ip,
        target_mac=request.sender_mac,
        target_ip=request.sender_ip,
    )


def gratuitous_frames(mac: bytes, ip: bytes) -> tuple[bytes, bytes]:
    """Gratuitous ARP announcing `ip` at `mac`: the request form, then the reply form."""
    request = build_frame(
        eth_dst=BROADCAST_MAC,
        eth_src=mac,
        op=ArpOp.REQUEST,
        sender_mac=mac,
        sender_ip=ip,
        target_mac=ZERO_MAC,
        target_ip=ip,
    )
    reply = build_frame(
        eth_dst=BROADCAST_MAC,
        eth_src=mac,
        op=ArpOp.REPLY,
        sender_mac=mac,
        sender_ip=ip,
        target_mac=mac,
        target_ip=ip,
    )
    return request, reply


def probe_frame(mac: bytes, ip: bytes) -> bytes:
    """An RFC 5227 probe: who has `ip`? (sender IP 0.0.0.0, so no cache is updated)."""
    return build_frame(
        eth_dst=BROADCAST_MAC,
        eth_src=mac,
        op=ArpOp.REQUEST,
        sender_mac=mac,
        sender_ip=ZERO_IP,
        target_mac=ZERO_MAC,
        target_ip=ip,
    )


def ip4(address: str | ipaddress.IPv4Address) -> bytes:
    return ipaddress.IPv4Address(address).packed


def mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)
