"""The NDP codec, checked against scapy as an independent oracle, and fuzzed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)

from pikube.lb.l2 import ndp
from pikube.lb.l2.arp import MalformedPacket, mac_bytes

MAC = mac_bytes("02:00:00:00:00:21")
VIP = ndp.ip6("2001:db8:68::230")
CLIENT = ndp.ip6("2001:db8:68::10")


def _scapy_ns(with_lladdr: bool = True) -> bytes:
    packet = ICMPv6ND_NS(tgt="2001:db8:68::230")
    if with_lladdr:
        packet = packet / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:10")
    return bytes(packet)


def test_parses_a_solicitation_built_by_scapy() -> None:
    ns = ndp.parse_solicitation(_scapy_ns(), CLIENT, 255)
    assert ns.target == VIP
    assert ns.source == CLIENT
    assert ns.source_mac == mac_bytes("02:00:00:00:00:10")


def test_answer_is_a_solicited_override_na_that_scapy_reads() -> None:
    ns = ndp.parse_solicitation(_scapy_ns(), CLIENT, 255)
    out = ndp.answer_for(ns, {VIP}, MAC)
    assert out is not None
    assert out.destination == CLIENT
    assert out.source == VIP
    na = ICMPv6ND_NA(out.message)
    assert na.tgt == "2001:db8:68::230"
    assert (na.R, na.S, na.O) == (0, 1, 1)
    assert na[ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:00:00:21"
    assert ndp.answer_for(ns, set(), MAC) is None


def test_checksum_matches_scapys() -> None:
    out = ndp.unsolicited_advertisement(VIP, MAC)
    ours = ndp.icmpv6_checksum(out.source, out.destination, out.message)
    message = ICMPv6ND_NA(out.message)
    del message.cksum  # let scapy compute it
    scapy_packet = IPv6(src="2001:db8:68::230", dst="ff02::1") / message
    reference = IPv6(bytes(scapy_packet))[ICMPv6ND_NA].cksum
    assert ours == reference


def test_unsolicited_na_overrides_and_goes_to_all_nodes() -> None:
    out = ndp.unsolicited_advertisement(VIP, MAC)
    assert out.destination == ndp.ALL_NODES
    na = ndp.parse_advertisement(out.message)
    assert na.flags & ndp.FLAG_OVERRIDE
    assert not na.flags & ndp.FLAG_SOLICITED
    assert na.target_mac == MAC


def test_a_dad_probe_for_our_address_is_answered_to_all_nodes() -> None:
    ns = ndp.parse_solicitation(_scapy_ns(with_lladdr=False), ndp.UNSPECIFIED, 255)
    out = ndp.answer_for(ns, {VIP}, MAC)
    assert out is not None
    assert out.destination == ndp.ALL_NODES


def test_solicited_node_group() -> None:
    assert ndp.solicited_node_group(VIP) == ndp.ip6("ff02::1:ff00:230")


@pytest.mark.parametrize(
    ("message", "source", "hops", "reason"),
    [
        (_scapy_ns(), CLIENT, 64, "hop limit"),
        (_scapy_ns()[:20], CLIENT, 255, "shorter"),
        (bytes([136]) + _scapy_ns()[1:], CLIENT, 255, "not a neighbor solicitation"),
        (_scapy_ns()[:1] + b"\x01" + _scapy_ns()[2:], CLIENT, 255, "code 1"),
        (_scapy_ns()[:-7] + b"\x00" + _scapy_ns()[-6:], CLIENT, 255, "length 0"),
        (_scapy_ns()[:-4], CLIENT, 255, "past the end"),
        (_scapy_ns(), ndp.UNSPECIFIED, 255, "DAD solicitation"),
    ],
)
def test_invalid_solicitations_are_rejected(
    message: bytes, source: bytes, hops: int, reason: str
) -> None:
    with pytest.raises(MalformedPacket, match=reason):
        ndp.parse_solicitation(message, source, hops)


@settings(max_examples=3000)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_but_malformed(data: bytes) -> None:
    try:
        ns = ndp.parse_solicitation(data, CLIENT, 255)
    except MalformedPacket:
        return
    ndp.answer_for(ns, {VIP}, MAC)
