"""A heartbeat as a whole Ethernet frame, built here so it can be sent on a packet socket.

Owns: the Ethernet, IPv4 and UDP headers of a broadcast heartbeat, laid out as the kernel's
UDP socket lays them out (TOS 0, DF, TTL 64), so a receiver takes it as the same datagram. Two
fields differ: the UDP checksum is 0, "none", which RFC 768 allows over IPv4 (the Ethernet FCS
still guards the frame); and the IPv4 ID is 0 where the kernel puts a hash: the ID of a
datagram that must not be fragmented means nothing (RFC 6864), and a fixed one lets the header
be built once.

The headers depend on the interface's MAC, our address, the port and the payload's length;
heartbeats are nearly all the same length, so they are built once and reused, and a heartbeat
costs one concatenation. Pure: no I/O (decision 0166).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

ETH_P_IP = 0x0800
BROADCAST_MAC = b"\xff" * 6
_BROADCAST_IP = b"\xff" * 4
_ETHERNET = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
HEADERS_SIZE = _ETHERNET.size + _IPV4.size + _UDP.size  # 42
_VERSION_IHL = 0x45  # IPv4, 5 words: no options
_DONT_FRAGMENT = 0x4000
_TTL = 64
_UDP_PROTOCOL = 17
MAX_PAYLOAD = 0xFFFF - _IPV4.size - _UDP.size


def ipv4_checksum(header: bytes) -> int:
    """The Internet checksum (RFC 1071) of an IPv4 header: 0 over a header that carries its
    right checksum."""
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def headers(mac: bytes, source: bytes, port: int, payload_length: int) -> bytes:
    """Ethernet broadcast from `mac`, IPv4 from `source` (4 bytes) to 255.255.255.255, UDP from
    and to `port`, for a payload of `payload_length` bytes: the 42 bytes before the payload."""
    if len(mac) != 6 or len(source) != 4:
        raise ValueError("a MAC is 6 bytes and an IPv4 address 4")
    if not 0 <= payload_length <= MAX_PAYLOAD:
        raise ValueError(f"a UDP payload is at most {MAX_PAYLOAD} bytes")
    udp_length = _UDP.size + payload_length
    fields = [_VERSION_IHL, 0, _IPV4.size + udp_length, 0, _DONT_FRAGMENT, _TTL, _UDP_PROTOCOL]
    unsummed = _IPV4.pack(*fields, 0, source, _BROADCAST_IP)
    ip = _IPV4.pack(*fields, ipv4_checksum(unsummed), source, _BROADCAST_IP)
    return (
        _ETHERNET.pack(BROADCAST_MAC, mac, ETH_P_IP)
        + ip
        + _UDP.pack(port, port, udp_length, 0)  # checksum 0: none (IPv4 only)
    )


@dataclass
class FrameBuilder:
    """Frames for one (MAC, address, port); the headers of the last length are kept."""

    mac: bytes
    source: bytes
    port: int
    _length: int = field(init=False, default=-1)
    _headers: bytes = field(init=False, default=b"")

    def frame(self, payload: bytes) -> bytes:
        if len(payload) != self._length:
            self._headers = headers(self.mac, self.source, self.port, len(payload))
            self._length = len(payload)
        return self._headers + payload
