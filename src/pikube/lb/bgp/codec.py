"""BGP-4 messages: bytes <-> frozen dataclasses. Pure: no sockets, no clock, no state.

Owns the wire format of RFC 4271 (header, OPEN, UPDATE, NOTIFICATION, KEEPALIVE), RFC 2918
ROUTE-REFRESH, the capabilities pikube speaks (RFC 4760 multiprotocol, RFC 6793 4-octet AS,
route refresh, RFC 4724 graceful restart), and the path attributes a load balancer sends or
must read: ORIGIN, AS_PATH (with AS4_PATH for 2-octet peers), NEXT_HOP, MED, LOCAL_PREF,
COMMUNITIES (RFC 1997), LARGE_COMMUNITIES (RFC 8092), MP_REACH_NLRI and MP_UNREACH_NLRI.

Errors in what a peer sends follow RFC 7606: an error that leaves the message's routes
locatable marks the UPDATE `treat_as_withdraw` (its routes count as withdrawn, the session
stays up); a broken optional attribute of no consequence is discarded; anything else raises
`MessageError`, which carries the NOTIFICATION to send before closing. Nothing else may escape
`decode` (the fuzzer checks that). It must not decide anything about sessions: that is fsm.py.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from pikube.lb.model import LargeCommunity, StandardCommunity

MARKER = b"\xff" * 16
HEADER_LEN = 19
MAX_MESSAGE_LEN = 4096
AS_TRANS = 23456
VERSION = 4

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class MessageType(enum.IntEnum):
    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5


class ErrorCode(enum.IntEnum):
    MESSAGE_HEADER = 1
    OPEN_MESSAGE = 2
    UPDATE_MESSAGE = 3
    HOLD_TIMER_EXPIRED = 4
    FSM = 5
    CEASE = 6


class HeaderError(enum.IntEnum):
    NOT_SYNCHRONIZED = 1
    BAD_LENGTH = 2
    BAD_TYPE = 3


class OpenError(enum.IntEnum):
    UNSPECIFIC = 0
    UNSUPPORTED_VERSION = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7


class UpdateError(enum.IntEnum):
    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN = 2
    MISSING_WELL_KNOWN = 3
    ATTRIBUTE_FLAGS = 4
    ATTRIBUTE_LENGTH = 5
    INVALID_ORIGIN = 6
    INVALID_NEXT_HOP = 8
    OPTIONAL_ATTRIBUTE = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class Cease(enum.IntEnum):
    MAX_PREFIXES = 1
    ADMINISTRATIVE_SHUTDOWN = 2
    PEER_DECONFIGURED = 3
    ADMINISTRATIVE_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIGURATION_CHANGE = 6
    CONNECTION_COLLISION = 7
    OUT_OF_RESOURCES = 8


class AttrType(enum.IntEnum):
    ORIGIN = 1
    AS_PATH = 2
    NEXT_HOP = 3
    MED = 4
    LOCAL_PREF = 5
    ATOMIC_AGGREGATE = 6
    AGGREGATOR = 7
    COMMUNITIES = 8
    MP_REACH_NLRI = 14
    MP_UNREACH_NLRI = 15
    AS4_PATH = 17
    AS4_AGGREGATOR = 18
    LARGE_COMMUNITIES = 32


class Origin(enum.IntEnum):
    IGP = 0
    EGP = 1
    INCOMPLETE = 2


class SegmentType(enum.IntEnum):
    AS_SET = 1
    AS_SEQUENCE = 2
    AS_CONFED_SEQUENCE = 3
    AS_CONFED_SET = 4


FLAG_OPTIONAL = 0x80
FLAG_TRANSITIVE = 0x40
FLAG_PARTIAL = 0x20
FLAG_EXTENDED = 0x10

_WELL_KNOWN = {
    AttrType.ORIGIN,
    AttrType.AS_PATH,
    AttrType.NEXT_HOP,
    AttrType.LOCAL_PREF,
    AttrType.ATOMIC_AGGREGATE,
}
# Optional attributes and whether they are transitive (RFC 4271, 1997, 4760, 6793, 8092).
_OPTIONAL_TRANSITIVE = {
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
_DISCARD_ON_ERROR = {
    AttrType.ATOMIC_AGGREGATE,
    AttrType.AGGREGATOR,
    AttrType.AS4_PATH,
    AttrType.AS4_AGGREGATOR,
}


@dataclass(frozen=True, order=True)
class Family:
    afi: int
    safi: int

    def __str__(self) -> str:
        names = {IPV4_UNICAST: "ipv4-unicast", IPV6_UNICAST: "ipv6-unicast"}
        return names.get(self, f"afi {self.afi}/safi {self.safi}")


IPV4_UNICAST = Family(1, 1)
IPV6_UNICAST = Family(2, 1)


def family_of(version: int) -> Family:
    return IPV4_UNICAST if version == 4 else IPV6_UNICAST


class MessageError(Exception):
    """What a peer sent cannot be accepted: send `notification` and close the session."""

    def __init__(self, code: int, subcode: int, reason: str, data: bytes = b"") -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.data = data

    @property
    def notification(self) -> Notification:
        return Notification(self.code, self.subcode, self.data)


# --- capabilities ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Multiprotocol:
    family: Family


@dataclass(frozen=True)
class RouteRefreshCapability:
    pass


@dataclass(frozen=True)
class FourOctetAS:
    asn: int


@dataclass(frozen=True)
class GracefulRestart:
    restart_time_s: int = 120  # 12 bits
    restarting: bool = False  # the R bit: "I have restarted"
    notification: bool = False  # the N bit (RFC 8538); pikube never sets it
    families: tuple[tuple[Family, bool], ...] = ()  # (family, forwarding state preserved)


@dataclass(frozen=True)
class UnknownCapability:
    code: int
    value: bytes


Capability = (
    Multiprotocol | RouteRefreshCapability | FourOctetAS | GracefulRestart | UnknownCapability
)

CAP_MULTIPROTOCOL = 1
CAP_ROUTE_REFRESH = 2
CAP_GRACEFUL_RESTART = 64
CAP_FOUR_OCTET_AS = 65


def _encode_capability(cap: Capability) -> bytes:
    if isinstance(cap, Multiprotocol):
        code, value = CAP_MULTIPROTOCOL, struct.pack("!HBB", cap.family.afi, 0, cap.family.safi)
    elif isinstance(cap, RouteRefreshCapability):
        code, value = CAP_ROUTE_REFRESH, b""
    elif isinstance(cap, FourOctetAS):
        code, value = CAP_FOUR_OCTET_AS, struct.pack("!I", cap.asn)
    elif isinstance(cap, GracefulRestart):
        flags = (0x8 if cap.restarting else 0) | (0x4 if cap.notification else 0)
        head = struct.pack("!H", (flags << 12) | (cap.restart_time_s & 0xFFF))
        tail = b"".join(
            struct.pack("!HBB", fam.afi, fam.safi, 0x80 if forwarding else 0)
            for fam, forwarding in cap.families
        )
        code, value = CAP_GRACEFUL_RESTART, head + tail
    else:
        code, value = cap.code, cap.value
    return bytes([code, len(value)]) + value


def _decode_capability(code: int, value: bytes) -> Capability:
    def bad(what: str) -> MessageError:
        return MessageError(
            ErrorCode.OPEN_MESSAGE, OpenError.UNSPECIFIC, f"malformed {what} capability"
        )

    if code == CAP_MULTIPROTOCOL:
        if len(value) != 4:
            raise bad("multiprotocol")
        afi, _, safi = struct.unpack("!HBB", value)
        return Multiprotocol(Family(afi, safi))
    if code == CAP_ROUTE_REFRESH:
        if value:
            raise bad("route refresh")
        return RouteRefreshCapability()
    if code == CAP_FOUR_OCTET_AS:
        if len(value) != 4:
            raise bad("4-octet AS")
        return FourOctetAS(struct.unpack("!I", value)[0])
    if code == CAP_GRACEFUL_RESTART:
        if len(value) < 2 or (len(value) - 2) % 4:
            raise bad("graceful restart")
        (word,) = struct.unpack_from("!H", value)
        families = []
        for offset in range(2, len(value), 4):
            afi, safi, flags = struct.unpack_from("!HBB", value, offset)
            families.append((Family(afi, safi), bool(flags & 0x80)))
        return GracefulRestart(
            restart_time_s=word & 0xFFF,
            restarting=bool(word & 0x8000),
            notification=bool(word & 0x4000),
            families=tuple(families),
        )
    return UnknownCapability(code, value)


# --- messages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Open:
    asn: int  # the real AS number (from the 4-octet AS capability when the peer sent one)
    hold_time_s: int
    router_id: ipaddress.IPv4Address
    capabilities: tuple[Capability, ...] = ()
    version: int = VERSION

    def capability(self, kind: type[Capability]) -> Capability | None:
        return next((c for c in self.capabilities if isinstance(c, kind)), None)

    @property
    def families(self) -> frozenset[Family]:
        found = {c.family for c in self.capabilities if isinstance(c, Multiprotocol)}
        # RFC 4760: a peer that sends no multiprotocol capability speaks IPv4 unicast only.
        return frozenset(found) if found else frozenset({IPV4_UNICAST})

    @property
    def four_octet_as(self) -> bool:
        return any(isinstance(c, FourOctetAS) for c in self.capabilities)

    @property
    def graceful_restart(self) -> GracefulRestart | None:
        cap = self.capability(GracefulRestart)
        return cap if isinstance(cap, GracefulRestart) else None


@dataclass(frozen=True)
class Keepalive:
    pass


@dataclass(frozen=True)
class Notification:
    code: int
    subcode: int
    data: bytes = b""

    def describe(self) -> str:
        names = {
            (6, 2): "cease: administrative shutdown",
            (6, 4): "cease: administrative reset",
            (4, 0): "hold timer expired",
        }
        name = names.get((self.code, self.subcode))
        if name is None:
            try:
                name = f"{ErrorCode(self.code).name.lower().replace('_', ' ')} {self.subcode}"
            except ValueError:
                name = f"error {self.code}/{self.subcode}"
        return f"{name} ({self.code}/{self.subcode})"


@dataclass(frozen=True)
class RouteRefresh:
    family: Family


@dataclass(frozen=True)
class AsPathSegment:
    type: SegmentType
    asns: tuple[int, ...]


@dataclass(frozen=True)
class MpReach:
    family: Family
    next_hops: tuple[IPAddress, ...]
    nlri: tuple[IPNetwork, ...]


@dataclass(frozen=True)
class MpUnreach:
    family: Family
    withdrawn: tuple[IPNetwork, ...]


@dataclass(frozen=True)
class RawAttribute:
    flags: int
    type: int
    value: bytes


@dataclass(frozen=True)
class Update:
    """An UPDATE. IPv4 unicast routes travel in `withdrawn`/`nlri`, IPv6 in mp_*.

    `treat_as_withdraw` is set by `decode` (RFC 7606) and says why: every route the message
    announces counts as withdrawn. `problems` lists attributes that were discarded.
    """

    withdrawn: tuple[ipaddress.IPv4Network, ...] = ()
    nlri: tuple[ipaddress.IPv4Network, ...] = ()
    origin: Origin | None = None
    as_path: tuple[AsPathSegment, ...] | None = None
    next_hop: ipaddress.IPv4Address | None = None
    med: int | None = None
    local_pref: int | None = None
    communities: tuple[StandardCommunity, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    other: tuple[RawAttribute, ...] = ()
    treat_as_withdraw: str | None = None
    problems: tuple[str, ...] = ()

    def announced(self) -> tuple[IPNetwork, ...]:
        if self.treat_as_withdraw is not None:
            return ()
        return (*self.nlri, *(self.mp_reach.nlri if self.mp_reach else ()))

    def withdrawn_all(self) -> tuple[IPNetwork, ...]:
        routes: list[IPNetwork] = [
            *self.withdrawn,
            *(self.mp_unreach.withdrawn if self.mp_unreach else ()),
        ]
        if self.treat_as_withdraw is not None:
            routes += [*self.nlri, *(self.mp_reach.nlri if self.mp_reach else ())]
        return tuple(routes)

    @property
    def end_of_rib(self) -> Family | None:
        """The family whose initial table this End-of-RIB marker closes (RFC 4724), if it is one."""
        if self == Update():
            return IPV4_UNICAST
        if (
            self.mp_unreach is not None
            and not self.mp_unreach.withdrawn
            and replace(self, mp_unreach=None) == Update()
        ):
            return self.mp_unreach.family
        return None


Message = Open | Update | Notification | Keepalive | RouteRefresh


# --- prefixes -------------------------------------------------------------------------------


def _encode_prefix(net: IPNetwork) -> bytes:
    size = (net.prefixlen + 7) // 8
    return bytes([net.prefixlen]) + net.network_address.packed[:size]


def _decode_prefixes(data: bytes, version: int, error: MessageError) -> tuple[IPNetwork, ...]:
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


def _v4(nets: Iterable[IPNetwork]) -> tuple[ipaddress.IPv4Network, ...]:
    return tuple(n for n in nets if isinstance(n, ipaddress.IPv4Network))


# --- encoding -------------------------------------------------------------------------------


def _frame(kind: MessageType, body: bytes) -> bytes:
    length = HEADER_LEN + len(body)
    if length > MAX_MESSAGE_LEN:
        raise ValueError(f"a BGP message of {length} bytes exceeds {MAX_MESSAGE_LEN}")
    return MARKER + struct.pack("!HB", length, kind) + body


def _attribute(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255:
        return struct.pack("!BBH", flags | FLAG_EXTENDED, code, len(value)) + value
    return struct.pack("!BBB", flags & ~FLAG_EXTENDED, code, len(value)) + value


def _encode_as_path(segments: Sequence[AsPathSegment], four_octet: bool) -> bytes:
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
        out += _attribute(FLAG_TRANSITIVE, AttrType.ORIGIN, bytes([update.origin]))
    if update.as_path is not None:
        out += _attribute(
            FLAG_TRANSITIVE, AttrType.AS_PATH, _encode_as_path(update.as_path, four_octet)
        )
    if update.next_hop is not None:
        out += _attribute(FLAG_TRANSITIVE, AttrType.NEXT_HOP, update.next_hop.packed)
    if update.med is not None:
        out += _attribute(FLAG_OPTIONAL, AttrType.MED, struct.pack("!I", update.med))
    if update.local_pref is not None:
        out += _attribute(
            FLAG_TRANSITIVE, AttrType.LOCAL_PREF, struct.pack("!I", update.local_pref)
        )
    if update.communities:
        value = b"".join(struct.pack("!HH", c.asn, c.value) for c in update.communities)
        out += _attribute(FLAG_OPTIONAL | FLAG_TRANSITIVE, AttrType.COMMUNITIES, value)
    if update.mp_reach is not None:
        reach = update.mp_reach
        hops = b"".join(h.packed for h in reach.next_hops)
        value = struct.pack("!HBB", reach.family.afi, reach.family.safi, len(hops)) + hops
        value += b"\0" + b"".join(_encode_prefix(n) for n in reach.nlri)
        out += _attribute(FLAG_OPTIONAL, AttrType.MP_REACH_NLRI, value)
    if update.mp_unreach is not None:
        unreach = update.mp_unreach
        value = struct.pack("!HB", unreach.family.afi, unreach.family.safi)
        value += b"".join(_encode_prefix(n) for n in unreach.withdrawn)
        out += _attribute(FLAG_OPTIONAL, AttrType.MP_UNREACH_NLRI, value)
    if (
        not four_octet
        and update.as_path is not None
        and any(a > 0xFFFF for seg in update.as_path for a in seg.asns)
    ):
        # RFC 6793: a 2-octet peer sees AS_TRANS in AS_PATH and the real path here.
        out += _attribute(
            FLAG_OPTIONAL | FLAG_TRANSITIVE,
            AttrType.AS4_PATH,
            _encode_as_path(update.as_path, True),
        )
    if update.large_communities:
        value = b"".join(
            struct.pack("!III", c.global_administrator, c.local_data_1, c.local_data_2)
            for c in update.large_communities
        )
        out += _attribute(FLAG_OPTIONAL | FLAG_TRANSITIVE, AttrType.LARGE_COMMUNITIES, value)
    for raw in update.other:
        out += _attribute(raw.flags, raw.type, raw.value)
    return out


def encode(message: Message, four_octet_as: bool = True) -> bytes:
    """One message on the wire. `four_octet_as`: whether the session negotiated RFC 6793."""
    if isinstance(message, Keepalive):
        return _frame(MessageType.KEEPALIVE, b"")
    if isinstance(message, Notification):
        return _frame(
            MessageType.NOTIFICATION, bytes([message.code, message.subcode]) + message.data
        )
    if isinstance(message, RouteRefresh):
        body = struct.pack("!HBB", message.family.afi, 0, message.family.safi)
        return _frame(MessageType.ROUTE_REFRESH, body)
    if isinstance(message, Open):
        # One capability per optional parameter, as most speakers send them.
        params = b"".join(
            bytes([2, len(cap)]) + cap
            for cap in (_encode_capability(c) for c in message.capabilities)
        )
        if len(params) > 255:
            raise ValueError("OPEN optional parameters exceed 255 bytes")
        my_as = message.asn if message.asn <= 0xFFFF else AS_TRANS
        body = struct.pack(
            "!BHH4sB",
            message.version,
            my_as,
            message.hold_time_s,
            message.router_id.packed,
            len(params),
        )
        return _frame(MessageType.OPEN, body + params)
    withdrawn = b"".join(_encode_prefix(n) for n in message.withdrawn)
    attrs = encode_attributes(message, four_octet_as)
    nlri = b"".join(_encode_prefix(n) for n in message.nlri)
    body = struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs))
    return _frame(MessageType.UPDATE, body + attrs + nlri)


def pack_updates(
    template: Update, prefixes: Sequence[IPNetwork], *, withdraw: bool, four_octet_as: bool
) -> list[bytes]:
    """As few UPDATE messages as carry `prefixes` (all of one family) with `template`'s
    attributes, each within the 4096-byte limit. Withdrawals carry no attributes."""
    if not prefixes:
        return []
    version = prefixes[0].version
    fam = family_of(version)
    # The fixed part: an UPDATE with the attributes and no prefixes.
    if withdraw:
        base = Update(mp_unreach=MpUnreach(fam, ())) if version == 6 else Update()
    elif version == 6:
        assert template.mp_reach is not None
        base = replace(template, mp_reach=replace(template.mp_reach, nlri=()))
    else:
        base = template
    room = MAX_MESSAGE_LEN - len(encode(base, four_octet_as))
    if version == 6:
        room -= 2  # the MP attribute may need the extended length
    out: list[bytes] = []
    chunk: list[IPNetwork] = []
    used = 0
    for net in prefixes:
        size = 1 + (net.prefixlen + 7) // 8
        if used + size > room and chunk:
            out.append(encode(_with(base, chunk, withdraw), four_octet_as))
            chunk, used = [], 0
        chunk.append(net)
        used += size
    out.append(encode(_with(base, chunk, withdraw), four_octet_as))
    return out


def _with(base: Update, chunk: Sequence[IPNetwork], withdraw: bool) -> Update:
    if chunk[0].version == 4:
        return replace(base, withdrawn=_v4(chunk)) if withdraw else replace(base, nlri=_v4(chunk))
    if withdraw:
        assert base.mp_unreach is not None
        return replace(base, mp_unreach=replace(base.mp_unreach, withdrawn=tuple(chunk)))
    assert base.mp_reach is not None
    return replace(base, mp_reach=replace(base.mp_reach, nlri=tuple(chunk)))


# --- decoding -------------------------------------------------------------------------------


def frame_length(buffer: bytes | bytearray) -> int | None:
    """The length of the message at the start of `buffer`, or None until the header is in.

    Raises MessageError for a bad marker or length (RFC 4271 6.1), so a stream that lost its
    framing is closed rather than read as garbage."""
    if len(buffer) < HEADER_LEN:
        return None
    if buffer[:16] != MARKER:
        raise MessageError(
            ErrorCode.MESSAGE_HEADER, HeaderError.NOT_SYNCHRONIZED, "the marker is not all ones"
        )
    length: int = struct.unpack_from("!H", buffer, 16)[0]
    if not HEADER_LEN <= length <= MAX_MESSAGE_LEN:
        raise MessageError(
            ErrorCode.MESSAGE_HEADER,
            HeaderError.BAD_LENGTH,
            f"bad message length {length}",
            struct.pack("!H", length),
        )
    return length


def decode(data: bytes, four_octet_as: bool = True) -> Message:
    """One whole message (header included). Raises MessageError and nothing else."""
    length = frame_length(data)
    if length is None or length != len(data):
        raise MessageError(
            ErrorCode.MESSAGE_HEADER,
            HeaderError.BAD_LENGTH,
            f"message is {len(data)} bytes, its header says {length}",
            struct.pack("!H", length or len(data)),
        )
    kind = data[18]
    body = data[HEADER_LEN:]

    def bad_length() -> MessageError:
        return MessageError(
            ErrorCode.MESSAGE_HEADER,
            HeaderError.BAD_LENGTH,
            f"bad length {length} for message type {kind}",
            struct.pack("!H", length),
        )

    if kind == MessageType.KEEPALIVE:
        if body:
            raise bad_length()
        return Keepalive()
    if kind == MessageType.NOTIFICATION:
        if len(body) < 2:
            raise bad_length()
        return Notification(body[0], body[1], body[2:])
    if kind == MessageType.ROUTE_REFRESH:
        if len(body) != 4:
            raise bad_length()
        afi, _, safi = struct.unpack("!HBB", body)
        return RouteRefresh(Family(afi, safi))
    if kind == MessageType.OPEN:
        if len(body) < 10:
            raise bad_length()
        return _decode_open(body)
    if kind == MessageType.UPDATE:
        if len(body) < 4:
            raise bad_length()
        return _decode_update(body, four_octet_as)
    raise MessageError(
        ErrorCode.MESSAGE_HEADER,
        HeaderError.BAD_TYPE,
        f"unknown message type {kind}",
        bytes([kind]),
    )


def _decode_open(body: bytes) -> Open:
    version, my_as, hold, router_id, params_len = struct.unpack_from("!BHH4sB", body)
    if version != VERSION:
        raise MessageError(
            ErrorCode.OPEN_MESSAGE,
            OpenError.UNSUPPORTED_VERSION,
            f"BGP version {version}; pikube speaks 4",
            struct.pack("!H", VERSION),
        )
    if hold in (1, 2):
        raise MessageError(
            ErrorCode.OPEN_MESSAGE, OpenError.UNACCEPTABLE_HOLD_TIME, f"hold time {hold} s"
        )
    if router_id == b"\0\0\0\0":
        raise MessageError(
            ErrorCode.OPEN_MESSAGE, OpenError.BAD_BGP_IDENTIFIER, "BGP identifier 0.0.0.0"
        )
    params = body[10:]
    if len(params) != params_len:
        raise MessageError(
            ErrorCode.OPEN_MESSAGE,
            OpenError.UNSPECIFIC,
            f"optional parameters are {len(params)} bytes, the OPEN says {params_len}",
        )
    caps: list[Capability] = []
    pos = 0
    while pos < len(params):
        if pos + 2 > len(params):
            raise MessageError(ErrorCode.OPEN_MESSAGE, OpenError.UNSPECIFIC, "truncated parameter")
        ptype, plen = params[pos], params[pos + 1]
        value = params[pos + 2 : pos + 2 + plen]
        if len(value) != plen:
            raise MessageError(ErrorCode.OPEN_MESSAGE, OpenError.UNSPECIFIC, "truncated parameter")
        pos += 2 + plen
        if ptype != 2:
            raise MessageError(
                ErrorCode.OPEN_MESSAGE,
                OpenError.UNSUPPORTED_OPTIONAL_PARAMETER,
                f"optional parameter type {ptype}",
            )
        cpos = 0
        while cpos < len(value):
            if cpos + 2 > len(value):
                raise MessageError(
                    ErrorCode.OPEN_MESSAGE, OpenError.UNSPECIFIC, "truncated capability"
                )
            code, clen = value[cpos], value[cpos + 1]
            cvalue = value[cpos + 2 : cpos + 2 + clen]
            if len(cvalue) != clen:
                raise MessageError(
                    ErrorCode.OPEN_MESSAGE, OpenError.UNSPECIFIC, "truncated capability"
                )
            caps.append(_decode_capability(code, cvalue))
            cpos += 2 + clen
    asn = next((c.asn for c in caps if isinstance(c, FourOctetAS)), my_as)
    return Open(
        asn=asn,
        hold_time_s=hold,
        router_id=ipaddress.IPv4Address(router_id),
        capabilities=tuple(caps),
        version=version,
    )


class _TreatAsWithdraw(Exception):
    pass


class _Discard(Exception):
    pass


def _decode_update(body: bytes, four_octet: bool) -> Update:
    malformed = MessageError(
        ErrorCode.UPDATE_MESSAGE, UpdateError.MALFORMED_ATTRIBUTE_LIST, "malformed attribute list"
    )
    (withdrawn_len,) = struct.unpack_from("!H", body)
    if 2 + withdrawn_len + 2 > len(body):
        raise malformed
    invalid_network = MessageError(
        ErrorCode.UPDATE_MESSAGE, UpdateError.INVALID_NETWORK_FIELD, "invalid network field"
    )
    withdrawn = _v4(_decode_prefixes(body[2 : 2 + withdrawn_len], 4, invalid_network))
    pos = 2 + withdrawn_len
    (attrs_len,) = struct.unpack_from("!H", body, pos)
    pos += 2
    if pos + attrs_len > len(body):
        raise malformed
    attrs = body[pos : pos + attrs_len]
    nlri = _v4(_decode_prefixes(body[pos + attrs_len :], 4, invalid_network))

    fields: dict[str, object] = {}
    seen: set[int] = set()
    other: list[RawAttribute] = []
    problems: list[str] = []
    withdraw_reason: str | None = None
    apos = 0
    while apos < len(attrs):
        if apos + 3 > len(attrs):
            withdraw_reason = withdraw_reason or "truncated attribute header"
            break
        flags, code = attrs[apos], attrs[apos + 1]
        if flags & FLAG_EXTENDED:
            if apos + 4 > len(attrs):
                withdraw_reason = withdraw_reason or "truncated attribute header"
                break
            (alen,) = struct.unpack_from("!H", attrs, apos + 2)
            vstart = apos + 4
        else:
            alen = attrs[apos + 2]
            vstart = apos + 3
        value = attrs[vstart : vstart + alen]
        apos = vstart + alen
        if len(value) != alen:
            # RFC 7606 4: the attribute overruns the attribute field; the NLRI field is still
            # where the total length says, unless MP attributes hide routes elsewhere.
            if AttrType.MP_REACH_NLRI in seen or AttrType.MP_UNREACH_NLRI in seen:
                raise malformed
            withdraw_reason = withdraw_reason or f"attribute {code} overruns the attribute list"
            break
        if code in seen:
            if code in (AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI):
                raise malformed
            problems.append(f"duplicate attribute {code} discarded")
            continue
        seen.add(code)
        try:
            _decode_attribute(flags, code, value, four_octet, fields, other)
        except _TreatAsWithdraw as exc:
            withdraw_reason = withdraw_reason or str(exc)
        except _Discard as exc:
            problems.append(str(exc))
    mp_reach = fields.get("mp_reach")
    if (nlri or mp_reach) and withdraw_reason is None:
        missing = [t.name for t in (AttrType.ORIGIN, AttrType.AS_PATH) if t not in seen]
        if nlri and AttrType.NEXT_HOP not in seen:
            missing.append(AttrType.NEXT_HOP.name)
        if missing:
            withdraw_reason = f"missing well-known attribute {', '.join(missing)}"
    return Update(
        withdrawn=withdrawn,
        nlri=nlri,
        other=tuple(other),
        treat_as_withdraw=withdraw_reason,
        problems=tuple(problems),
        **fields,  # type: ignore[arg-type]
    )


def _decode_as_path(value: bytes, four_octet: bool) -> tuple[AsPathSegment, ...]:
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


def _decode_attribute(
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
        if kind in _DISCARD_ON_ERROR:
            return _Discard(what + "; discarded")
        return _TreatAsWithdraw(what)

    optional = kind not in _WELL_KNOWN
    if bool(flags & FLAG_OPTIONAL) != optional or (
        bool(flags & FLAG_TRANSITIVE) != (not optional or _OPTIONAL_TRANSITIVE[kind])
    ):
        raise fail(f"wrong flags {flags:#04x}")
    if kind is AttrType.ORIGIN:
        if len(value) != 1 or value[0] > 2:
            raise fail("not 0, 1 or 2")
        fields["origin"] = Origin(value[0])
    elif kind is AttrType.AS_PATH:
        try:
            fields["as_path"] = _decode_as_path(value, four_octet)
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
            nets = _decode_prefixes(nlri_raw, version, MessageError(0, 0, ""))
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
            nets = _decode_prefixes(
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
            _decode_as_path(value, True)
        except ValueError as exc:
            raise fail(str(exc)) from None
        other.append(RawAttribute(flags, code, value))
    elif kind is AttrType.AS4_AGGREGATOR:
        if len(value) != 8:
            raise fail(f"{len(value)} bytes")
        other.append(RawAttribute(flags, code, value))


@dataclass
class Reader:
    """Splits a TCP byte stream into messages. `feed` returns the whole messages received."""

    four_octet_as: bool = True
    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        frames: list[bytes] = []
        while True:
            length = frame_length(self.buffer)
            if length is None or len(self.buffer) < length:
                return frames
            frames.append(bytes(self.buffer[:length]))
            del self.buffer[:length]
