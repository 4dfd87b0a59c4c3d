"""The BGP codec: round trips, scapy as an independent oracle, RFC 7606 error handling, fuzz."""

from __future__ import annotations

import contextlib
import ipaddress
import struct
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib import bgp as scapy_bgp

from pikube.lb.bgp import codec
from pikube.lb.bgp.codec import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    MessageError,
    SegmentType,
    Update,
)
from pikube.lb.model import LargeCommunity, StandardCommunity

ROUTER_ID = ipaddress.IPv4Address("198.51.100.21")
NODE = ipaddress.IPv4Address("198.51.100.21")
VIP = ipaddress.IPv4Network("203.0.113.5/32")
VIP6 = ipaddress.ip_network("2001:db8:68::230/128")
PATH = (AsPathSegment(SegmentType.AS_SEQUENCE, (64497,)),)


def _open(**kw: Any) -> codec.Open:
    caps = (
        codec.Multiprotocol(IPV4_UNICAST),
        codec.Multiprotocol(IPV6_UNICAST),
        codec.RouteRefreshCapability(),
        codec.FourOctetAS(64497),
        codec.GracefulRestart(120, True, False, ((IPV4_UNICAST, True), (IPV6_UNICAST, False))),
    )
    return replace(codec.Open(64497, 90, ROUTER_ID, caps), **kw)


def _announce(**kw: object) -> Update:
    fields: dict[str, object] = {
        "nlri": (VIP,),
        "origin": codec.Origin.IGP,
        "as_path": PATH,
        "next_hop": NODE,
    }
    fields.update(kw)
    return Update(**fields)  # type: ignore[arg-type]


def _attr(flags: int, code: int, value: bytes) -> bytes:
    return bytes([flags, code, len(value)]) + value


def _raw_update(
    attrs: bytes, nlri: bytes = b"\x20\xcb\x00\x71\x05", withdrawn: bytes = b""
) -> bytes:
    body = (
        struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs)) + attrs + nlri
    )
    return codec.MARKER + struct.pack("!HB", 19 + len(body), 2) + body


GOOD_ATTRS = (
    _attr(0x40, 1, b"\x00")
    + _attr(0x40, 2, b"\x02\x01" + struct.pack("!I", 64497))
    + _attr(0x40, 3, NODE.packed)
)


# --- round trips and the oracle ------------------------------------------------------------


def test_open_round_trips_with_every_capability() -> None:
    message = _open()
    assert codec.decode(codec.encode(message)) == message


def test_open_with_a_4_octet_as_puts_as_trans_in_the_2_octet_field() -> None:
    message = _open(asn=4200000001, capabilities=(codec.FourOctetAS(4200000001),))
    data = codec.encode(message)
    assert struct.unpack_from("!H", data, 20)[0] == codec.AS_TRANS
    decoded = codec.decode(data)
    assert isinstance(decoded, codec.Open)
    assert decoded.asn == 4200000001


def test_scapy_reads_our_open_and_its_capabilities() -> None:
    parsed = scapy_bgp.BGPHeader(codec.encode(_open()))
    opened = parsed[scapy_bgp.BGPOpen]
    assert opened.my_as == 64497
    assert opened.hold_time == 90
    assert opened.bgp_id == "198.51.100.21"
    codes = [cap.code for param in opened.opt_params for cap in [param.param_value]]
    assert codes == [1, 1, 2, 65, 64]


def test_update_round_trips_with_every_attribute() -> None:
    message = _announce(
        local_pref=200,
        med=5,
        communities=(StandardCommunity(64497, 1), StandardCommunity(65535, 65281)),
        large_communities=(LargeCommunity(64497, 1, 2),),
    )
    assert codec.decode(codec.encode(message)) == message


def test_ipv6_announce_and_withdraw_round_trip() -> None:
    hop = ipaddress.IPv6Address("2001:db8:68::21")
    reach = Update(
        origin=codec.Origin.IGP,
        as_path=PATH,
        mp_reach=codec.MpReach(IPV6_UNICAST, (hop,), (VIP6,)),
    )
    assert codec.decode(codec.encode(reach)) == reach
    unreach = Update(mp_unreach=codec.MpUnreach(IPV6_UNICAST, (VIP6,)))
    decoded = codec.decode(codec.encode(unreach))
    assert isinstance(decoded, Update)
    assert decoded.withdrawn_all() == (VIP6,)


def test_scapy_reads_our_update() -> None:
    data = codec.encode(_announce(local_pref=150, communities=(StandardCommunity(64497, 7),)))
    scapy_bgp.bgp_module_conf.use_2_bytes_asn = False
    try:
        update = scapy_bgp.BGPHeader(data)[scapy_bgp.BGPUpdate]
    finally:
        scapy_bgp.bgp_module_conf.use_2_bytes_asn = True
    assert [n.prefix for n in update.nlri] == ["203.0.113.5/32"]
    by_code = {a.type_code: a.attribute for a in update.path_attr}
    assert by_code[3].next_hop == "198.51.100.21"
    assert by_code[5].local_pref == 150
    assert by_code[8].community == (64497 << 16) | 7
    assert by_code[2].segments[0].segment_value == [64497]


def test_we_read_an_update_scapy_builds() -> None:
    scapy_bgp.bgp_module_conf.use_2_bytes_asn = False
    try:
        built = scapy_bgp.BGPHeader() / scapy_bgp.BGPUpdate(
            path_attr=[
                scapy_bgp.BGPPathAttr(
                    type_flags="Transitive",
                    type_code="ORIGIN",
                    attribute=scapy_bgp.BGPPAOrigin(origin="IGP"),
                ),
                scapy_bgp.BGPPathAttr(
                    type_flags="Transitive",
                    type_code="AS_PATH",
                    attribute=scapy_bgp.BGPPAAS4BytesPath(
                        segments=[
                            scapy_bgp.BGPPAAS4BytesPath.ASPathSegment(
                                segment_type=2, segment_value=[64496]
                            )
                        ]
                    ),
                ),
                scapy_bgp.BGPPathAttr(
                    type_flags="Transitive",
                    type_code="NEXT_HOP",
                    attribute=scapy_bgp.BGPPANextHop(next_hop="198.51.100.1"),
                ),
            ],
            nlri=[scapy_bgp.BGPNLRI_IPv4(prefix="203.0.113.0/24")],
        )
        data = bytes(built)
    finally:
        scapy_bgp.bgp_module_conf.use_2_bytes_asn = True
    update = codec.decode(data)
    assert isinstance(update, Update)
    assert update.nlri == (ipaddress.ip_network("203.0.113.0/24"),)
    assert update.as_path == (AsPathSegment(SegmentType.AS_SEQUENCE, (64496,)),)
    assert update.next_hop == ipaddress.IPv4Address("198.51.100.1")
    assert update.treat_as_withdraw is None


def test_a_2_octet_session_gets_as_trans_and_as4_path() -> None:
    message = _announce(as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, (4200000001,)),))
    decoded = codec.decode(codec.encode(message, four_octet_as=False), four_octet_as=False)
    assert isinstance(decoded, Update)
    assert decoded.as_path == (AsPathSegment(SegmentType.AS_SEQUENCE, (codec.AS_TRANS,)),)
    assert [a.type for a in decoded.other] == [codec.AttrType.AS4_PATH]


def test_end_of_rib_markers() -> None:
    assert Update().end_of_rib == IPV4_UNICAST
    assert Update(mp_unreach=codec.MpUnreach(IPV6_UNICAST, ())).end_of_rib == IPV6_UNICAST
    assert _announce().end_of_rib is None


def test_keepalive_notification_route_refresh() -> None:
    for message in (
        codec.Keepalive(),
        codec.Notification(6, 2, b"bye"),
        codec.RouteRefresh(IPV6_UNICAST),
    ):
        assert codec.decode(codec.encode(message)) == message


def test_many_prefixes_are_split_into_messages_within_4096_bytes() -> None:
    nets = [ipaddress.ip_network(f"203.0.{i // 256}.{i % 256}/32") for i in range(2000)]
    template = _announce(nlri=())
    messages = codec.pack_updates(template, nets, withdraw=False, four_octet_as=True)
    assert len(messages) > 1
    assert all(len(m) <= codec.MAX_MESSAGE_LEN for m in messages)
    seen = [n for m in messages for n in codec.decode(m).nlri]  # type: ignore[union-attr]
    assert seen == nets
    nets6 = [ipaddress.ip_network(f"2001:db8:68::{i:x}/128") for i in range(1000)]
    withdrawals = codec.pack_updates(Update(), nets6, withdraw=True, four_octet_as=True)
    assert all(len(m) <= codec.MAX_MESSAGE_LEN for m in withdrawals)
    assert [n for m in withdrawals for n in codec.decode(m).withdrawn_all()] == nets6  # type: ignore[union-attr]


def test_reader_splits_a_stream_at_any_boundary() -> None:
    stream = codec.encode(_open()) + codec.encode(codec.Keepalive()) + codec.encode(_announce())
    for cut in range(len(stream)):
        reader = codec.Reader()
        frames = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [codec.decode(f) for f in frames] == [_open(), codec.Keepalive(), _announce()]


# --- errors: what the peer gets told ------------------------------------------------------


def _error(data: bytes) -> tuple[int, int]:
    with pytest.raises(MessageError) as caught:
        codec.decode(data)
    return caught.value.code, caught.value.subcode


def test_header_errors() -> None:
    keepalive = codec.encode(codec.Keepalive())
    assert _error(b"\0" + keepalive[1:]) == (1, 1)
    assert _error(keepalive[:16] + struct.pack("!HB", 18, 4)) == (1, 2)
    assert _error(keepalive[:16] + struct.pack("!HB", 19, 9)) == (1, 3)
    assert _error(keepalive + b"x")[0] == 1  # a keepalive with a body


def test_open_errors() -> None:
    data = bytearray(codec.encode(_open()))
    data[19] = 3
    with pytest.raises(MessageError) as caught:
        codec.decode(bytes(data))
    assert (caught.value.code, caught.value.subcode, caught.value.data) == (2, 1, b"\x00\x04")
    assert _error(codec.encode(_open(hold_time_s=2))) == (2, 6)
    assert _error(codec.encode(_open(router_id=ipaddress.IPv4Address(0)))) == (2, 3)
    other_param = codec.encode(_open(capabilities=()))[:-1] + b"\x04" + b"\x01\x02\xaa\xbb"
    other_param = other_param[:16] + struct.pack("!H", len(other_param)) + other_param[18:]
    assert _error(other_param) == (2, 4)


def test_treat_as_withdraw_for_a_bad_origin() -> None:
    bad = _attr(0x40, 1, b"\x07") + GOOD_ATTRS[4:]
    update = codec.decode(_raw_update(bad))
    assert isinstance(update, Update)
    assert update.treat_as_withdraw is not None
    assert "ORIGIN" in update.treat_as_withdraw
    assert update.announced() == ()
    assert update.withdrawn_all() == (VIP,)


@pytest.mark.parametrize(
    "extra",
    [
        _attr(0x40, 5, b"\x00\x00\x01"),  # LOCAL_PREF of 3 bytes
        _attr(0xC0, 8, b"\x00\x01\x02"),  # COMMUNITIES not a multiple of 4
        _attr(0xC0, 32, b"\x00" * 11),  # LARGE_COMMUNITIES not a multiple of 12
        _attr(0x80, 5, b"\x00\x00\x00\x01"),  # LOCAL_PREF flagged optional
        _attr(0x80, 4, b"\x00\x00"),  # MED of 2 bytes
    ],
)
def test_treat_as_withdraw_for_broken_attributes(extra: bytes) -> None:
    update = codec.decode(_raw_update(GOOD_ATTRS + extra))
    assert isinstance(update, Update)
    assert update.treat_as_withdraw is not None
    assert update.withdrawn_all() == (VIP,)


def test_missing_next_hop_is_treat_as_withdraw() -> None:
    update = codec.decode(_raw_update(GOOD_ATTRS[: -len(_attr(0x40, 3, NODE.packed))]))
    assert isinstance(update, Update)
    assert update.treat_as_withdraw == "missing well-known attribute NEXT_HOP"


def test_an_attribute_overrunning_the_list_is_treat_as_withdraw() -> None:
    update = codec.decode(_raw_update(GOOD_ATTRS + b"\xc0\x08\x09\x00\x00"))
    assert isinstance(update, Update)
    assert update.treat_as_withdraw is not None
    assert update.withdrawn_all() == (VIP,)


def test_broken_aggregator_is_discarded_and_the_route_kept() -> None:
    update = codec.decode(_raw_update(GOOD_ATTRS + _attr(0xC0, 7, b"\x00\x01")))
    assert isinstance(update, Update)
    assert update.treat_as_withdraw is None
    assert update.announced() == (VIP,)
    assert update.problems == ("attribute AGGREGATOR: 2 bytes; discarded",)


def test_duplicate_attribute_keeps_the_first() -> None:
    update = codec.decode(_raw_update(GOOD_ATTRS + _attr(0x40, 1, b"\x02")))
    assert isinstance(update, Update)
    assert update.origin is codec.Origin.IGP
    assert update.announced() == (VIP,)


def test_session_reset_errors_in_updates() -> None:
    mp = _attr(0x80, 15, b"\x00\x02\x01")
    assert _error(_raw_update(GOOD_ATTRS + mp + mp)) == (3, 1)  # duplicate MP_UNREACH
    assert _error(_raw_update(GOOD_ATTRS + _attr(0x40, 99, b""))) == (3, 2)  # unknown well-known
    assert _error(_raw_update(GOOD_ATTRS, nlri=b"\x21\x01\x02\x03\x04\x05")) == (3, 10)  # /33
    assert _error(_raw_update(GOOD_ATTRS + _attr(0x80, 14, b"\x00\x02\x01\x10" + b"\0" * 3))) == (
        3,
        9,
    )
    assert _error(_raw_update(b"", withdrawn=b"\x20\x01")) == (3, 10)
    body = struct.pack("!HH", 50, 0)
    assert _error(codec.MARKER + struct.pack("!HB", 19 + len(body), 2) + body) == (3, 1)


def test_unknown_optional_attributes_are_kept_and_mp_of_other_families_ignored() -> None:
    unknown = _attr(0xC0, 99, b"hello")
    other_family = _attr(0x80, 14, b"\x00\x01\x80\x04" + NODE.packed + b"\x00")  # ipv4/vpn
    update = codec.decode(_raw_update(GOOD_ATTRS + unknown + other_family))
    assert isinstance(update, Update)
    assert update.treat_as_withdraw is None
    assert [a.type for a in update.other] == [99, 14]


# --- fuzz ----------------------------------------------------------------------------------


def _decode_or_error(data: bytes) -> None:
    with contextlib.suppress(MessageError):
        codec.decode(data)


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_any_body_after_a_valid_header_raises_only_message_error(body: bytes) -> None:
    for kind in range(6):
        _decode_or_error(codec.MARKER + struct.pack("!HB", 19 + len(body), kind) + body)


@settings(max_examples=400)
@given(st.data())
def test_mutated_messages_raise_only_message_error(data: st.DataObject) -> None:
    base = data.draw(
        st.sampled_from(
            [
                codec.encode(_open()),
                codec.encode(_announce(local_pref=5, large_communities=(LargeCommunity(1, 2, 3),))),
                codec.encode(
                    Update(
                        mp_reach=codec.MpReach(
                            IPV6_UNICAST, (ipaddress.IPv6Address("2001:db8::1"),), (VIP6,)
                        ),
                        origin=codec.Origin.IGP,
                        as_path=(),
                    )
                ),
            ]
        )
    )
    message = bytearray(base)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(18, len(message) - 1))
        message[position] = data.draw(st.integers(0, 255))
    _decode_or_error(bytes(message))


prefixes_v4 = st.builds(
    lambda a, n: ipaddress.ip_network((a, n), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)


@given(
    st.lists(prefixes_v4, max_size=20, unique=True),
    st.lists(
        st.builds(StandardCommunity, st.integers(0, 65535), st.integers(0, 65535)), max_size=5
    ),
    st.none() | st.integers(0, 2**32 - 1),
)
def test_updates_round_trip(
    nets: list[ipaddress.IPv4Network], communities: list[StandardCommunity], pref: int | None
) -> None:
    message = _announce(nlri=tuple(nets), communities=tuple(communities), local_pref=pref)
    assert codec.decode(codec.encode(message)) == message
