"""The link monitor's netlink parsing: link changes, and IPv4 address changes (heartbeats carry
the address, so the speaker re-reads it: decision 0166)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from pikube.lb.l2 import links
from pikube.lb.speaker import Speaker, SpeakerSettings, _Interface


def _message(kind: int, body: bytes) -> bytes:
    length = 16 + len(body)
    padded = body + b"\0" * (-length % 4)
    return struct.pack("=IHHII", length, kind, 0, 0, 0) + padded


def _address(kind: int, family: int, index: int) -> bytes:
    return _message(kind, struct.pack("=BBBBI", family, 24, 0, 0, index) + b"\0" * 8)


def _link(kind: int, index: int, flags: int) -> bytes:
    return _message(kind, struct.pack("=BxHiII", 0, 1, index, flags, 0))


def test_ipv4_address_changes_are_events_of_their_link_and_ipv6_ones_are_not() -> None:
    data = (
        _address(links.RTM_NEWADDR, socket.AF_INET, 3)
        + _address(links.RTM_NEWADDR, socket.AF_INET6, 4)
        + _link(links.RTM_NEWLINK, 5, links.IFF_UP | links.IFF_LOWER_UP)
        + _address(links.RTM_DELADDR, socket.AF_INET, 6)
    )
    assert links.parse_link_events(data) == [
        links.AddressEvent(3),
        links.LinkEvent(5, up=True),
        links.AddressEvent(6),
    ]


def test_an_address_message_too_short_for_its_header_is_skipped() -> None:
    whole = _address(links.RTM_NEWADDR, socket.AF_INET, 3)
    short = struct.pack("=IHHII", 20, links.RTM_NEWADDR, 0, 0, 0) + b"\2\0\0\0"
    assert links.parse_link_events(short + whole) == [links.AddressEvent(3)]
    assert links.parse_link_events(whole + short[:18]) == [links.AddressEvent(3)]


class _Heartbeat:
    def __init__(self) -> None:
        self.refreshed = 0

    def refresh(self) -> None:
        self.refreshed += 1

    def close(self) -> None:
        pass


class _NoSource:
    async def updates(self) -> object:
        raise AssertionError("not used")


def test_the_speaker_refreshes_the_heartbeat_of_the_link_whose_address_changed(
    tmp_path: Path,
) -> None:
    settings = SpeakerSettings(node="node01", key=b"k" * 32, metrics_port=None, state_dir=tmp_path)
    speaker = Speaker(settings, _NoSource())  # type: ignore[arg-type]
    ours, other = _Heartbeat(), _Heartbeat()
    speaker._interfaces = {
        "eth0": _Interface("eth0", links.Link("eth0", 2, b"\2" * 6), None, ours),  # type: ignore[arg-type]
        "eth1": _Interface("eth1", links.Link("eth1", 3, b"\3" * 6), None, other),  # type: ignore[arg-type]
    }
    speaker._on_link_event(links.AddressEvent(2))
    assert (ours.refreshed, other.refreshed) == (1, 0)
