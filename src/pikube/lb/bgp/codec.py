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
The types themselves are in `messages` (re-exported here).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pikube.lb.bgp.attributes import (
    Discard,
    TreatAsWithdraw,
    decode_attribute,
    decode_prefixes,
    encode_attributes,
    encode_prefix,
    v4,
)
from pikube.lb.bgp.messages import (
    AS_TRANS,
    CAP_FOUR_OCTET_AS,
    CAP_GRACEFUL_RESTART,
    CAP_MULTIPROTOCOL,
    CAP_ROUTE_REFRESH,
    FLAG_EXTENDED,
    FLAG_OPTIONAL,
    FLAG_PARTIAL,
    FLAG_TRANSITIVE,
    HEADER_LEN,
    IPV4_UNICAST,
    IPV6_UNICAST,
    MARKER,
    MAX_MESSAGE_LEN,
    VERSION,
    AsPathSegment,
    AttrType,
    Capability,
    Cease,
    ErrorCode,
    Family,
    FourOctetAS,
    GracefulRestart,
    HeaderError,
    IPAddress,
    IPNetwork,
    Keepalive,
    Message,
    MessageError,
    MessageType,
    MpReach,
    MpUnreach,
    Multiprotocol,
    Notification,
    Open,
    OpenError,
    Origin,
    RawAttribute,
    RouteRefresh,
    RouteRefreshCapability,
    SegmentType,
    UnknownCapability,
    Update,
    UpdateError,
    family_of,
)

__all__ = [
    "AS_TRANS",
    "CAP_FOUR_OCTET_AS",
    "CAP_GRACEFUL_RESTART",
    "CAP_MULTIPROTOCOL",
    "CAP_ROUTE_REFRESH",
    "FLAG_EXTENDED",
    "FLAG_OPTIONAL",
    "FLAG_PARTIAL",
    "FLAG_TRANSITIVE",
    "HEADER_LEN",
    "IPV4_UNICAST",
    "IPV6_UNICAST",
    "MARKER",
    "MAX_MESSAGE_LEN",
    "VERSION",
    "AsPathSegment",
    "AttrType",
    "Capability",
    "Cease",
    "ErrorCode",
    "Family",
    "FourOctetAS",
    "GracefulRestart",
    "HeaderError",
    "IPAddress",
    "IPNetwork",
    "Keepalive",
    "Message",
    "MessageError",
    "MessageType",
    "MpReach",
    "MpUnreach",
    "Multiprotocol",
    "Notification",
    "Open",
    "OpenError",
    "Origin",
    "RawAttribute",
    "RouteRefresh",
    "RouteRefreshCapability",
    "SegmentType",
    "UnknownCapability",
    "Update",
    "UpdateError",
    "family_of",
]


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


# --- prefixes -------------------------------------------------------------------------------


# --- encoding -------------------------------------------------------------------------------


def _frame(kind: MessageType, body: bytes) -> bytes:
    length = HEADER_LEN + len(body)
    if length > MAX_MESSAGE_LEN:
        raise ValueError(f"a BGP message of {length} bytes exceeds {MAX_MESSAGE_LEN}")
    return MARKER + struct.pack("!HB", length, kind) + body


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
    withdrawn = b"".join(encode_prefix(n) for n in message.withdrawn)
    attrs = encode_attributes(message, four_octet_as)
    nlri = b"".join(encode_prefix(n) for n in message.nlri)
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
        return replace(base, withdrawn=v4(chunk)) if withdraw else replace(base, nlri=v4(chunk))
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
    withdrawn = v4(decode_prefixes(body[2 : 2 + withdrawn_len], 4, invalid_network))
    pos = 2 + withdrawn_len
    (attrs_len,) = struct.unpack_from("!H", body, pos)
    pos += 2
    if pos + attrs_len > len(body):
        raise malformed
    attrs = body[pos : pos + attrs_len]
    nlri = v4(decode_prefixes(body[pos + attrs_len :], 4, invalid_network))

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
            decode_attribute(flags, code, value, four_octet, fields, other)
        except TreatAsWithdraw as exc:
            withdraw_reason = withdraw_reason or str(exc)
        except Discard as exc:
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
