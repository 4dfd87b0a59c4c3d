"""The ARP codec, checked against scapy as an independent oracle, and fuzzed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP, Ether

from pikube.lb.l2 import arp

MAC = arp.mac_bytes("02:00:00:00:00:21")
CLIENT_MAC = arp.mac_bytes("02:00:00:00:00:10")
VIP = arp.ip4("198.51.100.230")
CLIENT_IP = arp.ip4("198.51.100.10")


def _scapy_request(dst: str = "ff:ff:ff:ff:ff:ff", psrc: str = "198.51.100.10") -> bytes:
    frame = Ether(dst=dst, src="02:00:00:00:00:10") / ARP(
        op=1, hwsrc="02:00:00:00:00:10", psrc=psrc, pdst="198.51.100.230"
    )
    return bytes(frame)


def test_parses_a_request_built_by_scapy() -> None:
    frame = arp.parse_frame(_scapy_request())
    assert frame.op == arp.ArpOp.REQUEST
    assert frame.sender_mac == CLIENT_MAC
    assert frame.sender_ip == CLIENT_IP
    assert frame.target_ip == VIP
    assert not frame.is_probe


def test_reply_is_what_scapy_reads_as_our_mac_for_the_vip() -> None:
    reply = arp.reply_for(arp.parse_frame(_scapy_request()), {VIP}, MAC)
    assert reply is not None
    decoded = Ether(reply)
    assert decoded.dst == "02:00:00:00:00:10"
    assert decoded.src == "02:00:00:00:00:21"
    assert decoded[ARP].op == 2
    assert decoded[ARP].hwsrc == "02:00:00:00:00:21"
    assert decoded[ARP].psrc == "198.51.100.230"
    assert decoded[ARP].hwdst == "02:00:00:00:00:10"
    assert decoded[ARP].pdst == "198.51.100.10"


def test_only_owned_addresses_and_requests_for_us_are_answered() -> None:
    request = arp.parse_frame(_scapy_request())
    assert arp.reply_for(request, set(), MAC) is None
    assert arp.reply_for(request, {arp.ip4("198.51.100.231")}, MAC) is None
    # A unicast request to this interface's MAC is answered; one aimed at another MAC is not.
    to_us = arp.parse_frame(_scapy_request(dst="02:00:00:00:00:21"))
    assert arp.reply_for(to_us, {VIP}, MAC) is not None
    to_other = arp.parse_frame(_scapy_request(dst="02:00:00:00:00:22"))
    assert arp.reply_for(to_other, {VIP}, MAC) is None
    # Replies and gratuitous announcements are not questions.
    reply = arp.parse_frame(arp.reply_for(request, {VIP}, MAC) or b"")
    assert arp.reply_for(reply, {VIP}, MAC) is None
    garp = arp.parse_frame(arp.gratuitous_frames(CLIENT_MAC, VIP)[0])
    assert arp.reply_for(garp, {VIP}, MAC) is None


def test_probes_are_answered_so_a_prober_sees_the_address_in_use() -> None:
    probe = arp.parse_frame(_scapy_request(psrc="0.0.0.0"))
    assert probe.is_probe
    reply = arp.reply_for(probe, {VIP}, MAC)
    assert reply is not None
    assert Ether(reply)[ARP].pdst == "0.0.0.0"


def test_gratuitous_arp_uses_the_request_form_linux_honours() -> None:
    request, reply = arp.gratuitous_frames(MAC, VIP)
    req = Ether(request)
    assert req.dst == "ff:ff:ff:ff:ff:ff"
    assert req[ARP].op == 1
    assert req[ARP].psrc == req[ARP].pdst == "198.51.100.230"
    assert req[ARP].hwsrc == "02:00:00:00:00:21"
    assert req[ARP].hwdst == "00:00:00:00:00:00"
    rep = Ether(reply)
    assert rep[ARP].op == 2
    assert rep[ARP].hwdst == rep[ARP].hwsrc  # the reply form Linux accepts (THA = SHA)


def test_probe_frame_asks_from_zero_address() -> None:
    probe = Ether(arp.probe_frame(MAC, VIP))
    assert probe[ARP].op == 1
    assert probe[ARP].psrc == "0.0.0.0"
    assert probe[ARP].pdst == "198.51.100.230"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (_scapy_request()[:41], "shorter"),
        (_scapy_request()[:12] + b"\x08\x00" + _scapy_request()[14:], "not ARP"),
        (_scapy_request()[:14] + b"\x00\x06" + _scapy_request()[16:], "hardware/protocol"),
        (_scapy_request()[:20] + b"\x00\x03" + _scapy_request()[22:], "opcode 3"),
    ],
)
def test_malformed_frames_are_rejected_with_a_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(arp.MalformedPacket, match=reason):
        arp.parse_frame(frame)


@settings(max_examples=3000)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_never_raise_anything_but_malformed(data: bytes) -> None:
    try:
        frame = arp.parse_frame(data)
    except arp.MalformedPacket:
        return
    arp.reply_for(frame, {VIP}, MAC)


@settings(max_examples=2000)
@given(st.binary(min_size=6, max_size=6), st.binary(min_size=4, max_size=4), st.integers(1, 2))
def test_build_then_parse_round_trips(mac: bytes, ip: bytes, op: int) -> None:
    data = arp.build_frame(
        eth_dst=arp.BROADCAST_MAC,
        eth_src=mac,
        op=arp.ArpOp(op),
        sender_mac=mac,
        sender_ip=ip,
        target_mac=arp.ZERO_MAC,
        target_ip=VIP,
    )
    frame = arp.parse_frame(data)
    assert (frame.op, frame.sender_mac, frame.sender_ip, frame.target_ip) == (op, mac, ip, VIP)
