"""BFD control packets (RFC 5880 section 4.1): bytes <-> ControlPacket. Pure.

Only the mandatory section is spoken; a packet with the Authentication bit is refused, since
pikube configures no BFD authentication (RFC 5880 6.8.6: such a packet is discarded when the
session has none). `decode` raises MalformedPacket and nothing else (the fuzzer checks that).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

VERSION = 1
LENGTH = 24
PORT = 3784  # RFC 5881: single-hop control packets
SOURCE_PORTS = range(49152, 65536)
_FORMAT = "!BBBBIIIII"


class SessionState(enum.IntEnum):
    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diagnostic(enum.IntEnum):
    NONE = 0
    CONTROL_DETECTION_TIME_EXPIRED = 1
    ECHO_FUNCTION_FAILED = 2
    NEIGHBOR_SIGNALED_SESSION_DOWN = 3
    FORWARDING_PLANE_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMINISTRATIVELY_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


class MalformedPacket(ValueError):
    pass


@dataclass(frozen=True)
class ControlPacket:
    state: SessionState
    my_discriminator: int
    your_discriminator: int
    desired_min_tx_us: int
    required_min_rx_us: int
    detect_mult: int
    diagnostic: int = Diagnostic.NONE
    poll: bool = False
    final: bool = False
    required_min_echo_rx_us: int = 0
    control_plane_independent: bool = False
    demand: bool = False


def encode(packet: ControlPacket) -> bytes:
    flags = (
        (packet.state << 6)
        | (0x20 if packet.poll else 0)
        | (0x10 if packet.final else 0)
        | (0x08 if packet.control_plane_independent else 0)
        | (0x02 if packet.demand else 0)
    )
    return struct.pack(
        _FORMAT,
        (VERSION << 5) | (packet.diagnostic & 0x1F),
        flags,
        packet.detect_mult,
        LENGTH,
        packet.my_discriminator,
        packet.your_discriminator,
        packet.desired_min_tx_us,
        packet.required_min_rx_us,
        packet.required_min_echo_rx_us,
    )


def decode(data: bytes) -> ControlPacket:
    """A received control packet, checked as RFC 5880 6.8.6 says (the session-independent
    checks; the discriminator match is the session's)."""
    if len(data) < LENGTH:
        raise MalformedPacket(f"{len(data)} bytes, a control packet has at least {LENGTH}")
    vers_diag, flags, mult, length, mine, yours, tx, rx, echo = struct.unpack_from(_FORMAT, data)
    if vers_diag >> 5 != VERSION:
        raise MalformedPacket(f"BFD version {vers_diag >> 5}")
    if length < LENGTH or length > len(data):
        raise MalformedPacket(f"length field {length} for a {len(data)}-byte packet")
    if flags & 0x04:
        raise MalformedPacket("authenticated packet, but no authentication is configured")
    if flags & 0x01:
        raise MalformedPacket("multipoint bit set")
    if mult == 0:
        raise MalformedPacket("detect multiplier 0")
    if mine == 0:
        raise MalformedPacket("my discriminator 0")
    state = SessionState(flags >> 6)
    if yours == 0 and state not in (SessionState.DOWN, SessionState.ADMIN_DOWN):
        raise MalformedPacket(f"your discriminator 0 in state {state.name}")
    return ControlPacket(
        state=state,
        my_discriminator=mine,
        your_discriminator=yours,
        desired_min_tx_us=tx,
        required_min_rx_us=rx,
        detect_mult=mult,
        diagnostic=vers_diag & 0x1F,
        poll=bool(flags & 0x20),
        final=bool(flags & 0x10),
        required_min_echo_rx_us=echo,
        control_plane_independent=bool(flags & 0x08),
        demand=bool(flags & 0x02),
    )


def accept_ttl(ttl: int, minimum_ttl: int = 255) -> bool:
    """RFC 5881 5: single-hop packets must arrive with TTL 255 (sent with 255, never routed);
    a multihop session accepts `minimum_ttl` and more (BFDProfile.minimumTtl)."""
    return ttl >= minimum_ttl
