"""Heartbeat frames: decoded here by a parser of their own, field by field, as a receiver's
kernel would read them."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pikube.lb.membership import frames

MAC = bytes.fromhex("02aabbccddee")
SOURCE = socket.inet_aton("198.51.100.11")


@dataclass
class Decoded:
    eth_dst: bytes
    eth_src: bytes
    ethertype: int
    version: int
    ihl: int
    tos: int
    total_length: int
    ident: int
    flags_fragment: int
    ttl: int
    protocol: int
    ip_source: bytes
    ip_destination: bytes
    header_sum_ok: bool
    source_port: int
    destination_port: int
    udp_length: int
    udp_checksum: int
    payload: bytes


def decode(frame: bytes) -> Decoded:
    eth_dst, eth_src, ethertype = struct.unpack_from("!6s6sH", frame, 0)
    ip = frame[14:34]
    vihl, tos, total, ident, frag, ttl, proto, _sum, src, dst = struct.unpack("!BBHHHBBH4s4s", ip)
    # The receiver's check: the ones' complement sum over the header, checksum included, is
    # all ones.
    words = sum(struct.unpack("!10H", ip))
    while words >> 16:
        words = (words & 0xFFFF) + (words >> 16)
    sport, dport, ulen, usum = struct.unpack_from("!HHHH", frame, 34)
    return Decoded(
        eth_dst, eth_src, ethertype, vihl >> 4, vihl & 0xF, tos, total, ident, frag, ttl,
        proto, src, dst, words == 0xFFFF, sport, dport, ulen, usum, frame[42:],
    )  # fmt: skip


def test_a_frame_is_an_ordinary_udp_broadcast_from_our_mac_and_address() -> None:
    payload = b"h" * 64
    got = decode(frames.FrameBuilder(MAC, SOURCE, 7946).frame(payload))
    assert (got.eth_dst, got.eth_src, got.ethertype) == (b"\xff" * 6, MAC, 0x0800)
    assert (got.version, got.ihl, got.tos, got.ttl, got.protocol) == (4, 5, 0, 64, 17)
    assert got.flags_fragment == 0x4000  # DF, no fragment offset
    assert got.ident == 0
    assert (got.ip_source, got.ip_destination) == (SOURCE, b"\xff" * 4)
    assert got.header_sum_ok
    assert (got.source_port, got.destination_port) == (7946, 7946)
    assert got.total_length == 20 + 8 + 64
    assert got.udp_length == 8 + 64
    assert got.udp_checksum == 0
    assert got.payload == payload


@given(st.lists(st.binary(max_size=1500), min_size=1, max_size=6))
def test_every_frame_fits_its_payload_whatever_the_lengths_before(
    payloads: list[bytes],
) -> None:
    builder = frames.FrameBuilder(MAC, SOURCE, 1)
    for payload in payloads:
        got = decode(builder.frame(payload))
        assert got.payload == payload
        assert got.total_length == 28 + len(payload)
        assert got.udp_length == 8 + len(payload)
        assert got.header_sum_ok


def test_the_headers_are_built_once_for_a_length() -> None:
    builder = frames.FrameBuilder(MAC, SOURCE, 1)
    first = builder.frame(b"a" * 10)
    kept = builder._headers
    builder.frame(b"b" * 10)
    assert builder._headers is kept
    builder.frame(b"c" * 11)
    assert builder._headers is not kept
    assert first[: frames.HEADERS_SIZE] == kept


def test_the_checksum_is_rfc_1071s() -> None:
    # RFC 1071's worked example, as one header-sized run of words.
    assert frames.ipv4_checksum(bytes.fromhex("0001f203f4f5f6f7")) == ~0xDDF2 & 0xFFFF
    assert frames.ipv4_checksum(bytes(20)) == 0xFFFF


def test_impossible_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="MAC is 6 bytes"):
        frames.headers(MAC[:5], SOURCE, 1, 10)
    with pytest.raises(ValueError, match="at most"):
        frames.headers(MAC, SOURCE, 1, frames.MAX_PAYLOAD + 1)
