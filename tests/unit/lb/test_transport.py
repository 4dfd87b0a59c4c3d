"""The heartbeat socket's drain: every queued datagram, its sender and its kernel arrival time,
built by the caller's constructor, from one reused buffer."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from pikube.lb.l2 import events as ev
from pikube.lb.membership.transport import HeartbeatSocket

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="SO_BINDTODEVICE needs CAP_NET_RAW")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_drain_returns_every_datagram_with_its_sender_and_arrival_time() -> None:
    port = _free_port()
    receiver = HeartbeatSocket("lo", port)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        since = time.monotonic()
        payloads = [b"first", b"x" * 1400, b"third"]
        for payload in payloads:
            sender.sendto(payload, ("127.0.0.1", port))
        time.sleep(0.05)
        now = time.monotonic()
        got = receiver.drain(now, since, ev.Received)
        assert [d.heartbeat for d in got] == payloads
        assert all(isinstance(d, ev.Received) and d.source == "127.0.0.1" for d in got)
        assert all(since <= d.arrived_s <= now for d in got)
        # Stamped by the kernel on arrival, not when drained 50 ms later.
        assert got[0].arrived_s < now - 0.03
        # Nothing left, and no exception for the empty socket.
        assert receiver.drain(time.monotonic(), now, ev.Received) == []
    finally:
        sender.close()
        receiver.close()


def test_drain_builds_the_callers_values_and_copies_out_of_its_buffer() -> None:
    port = _free_port()
    receiver = HeartbeatSocket("lo", port)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.sendto(b"a" * 300, ("127.0.0.1", port))
        sender.sendto(b"b" * 10, ("127.0.0.1", port))
        time.sleep(0.02)
        got = receiver.drain(time.monotonic(), 0.0, ev.Received)
        assert [type(r) for r in got] == [ev.Received, ev.Received]
        # The second datagram, shorter, must not show the first one's bytes behind it.
        assert [r.heartbeat for r in got] == [b"a" * 300, b"b" * 10]
    finally:
        sender.close()
        receiver.close()


def _capture(interface: str) -> socket.socket:
    """Every IPv4 frame on `interface`, both ways, as a tap such as tcpdump sees it."""
    tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    tap.bind((interface, 0))
    tap.settimeout(0.5)
    return tap


def _udp_checksums(tap: socket.socket, port: int, payload: bytes) -> list[int]:
    """The UDP checksums of the captured frames carrying `payload` to `port`."""
    found: list[int] = []
    tap.setblocking(False)
    while True:
        try:
            frame = tap.recv(65535)
        except BlockingIOError:
            return found
        udp = frame[14 + 20 :]
        if struct.unpack_from("!H", udp, 2)[0] == port and udp[8:] == payload:
            found.append(struct.unpack_from("!H", udp, 6)[0])


def test_a_heartbeat_leaves_as_a_whole_frame() -> None:
    # Only leaves: lo takes a frame from a packet socket as input, and a packet from
    # 127.0.0.1 that comes in without the route it went out with is a martian, dropped. That
    # a peer receives it is tests/lab/test_heartbeat_frames.py's.
    port = _free_port()
    sender = HeartbeatSocket("lo", port, "127.0.0.1")
    tap = _capture("lo")
    try:
        assert sender.sends_frames
        assert sender._raw is not None
        # First in the qdisc, as the UDP socket's heartbeats were.
        assert sender._raw.getsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY) == 6
        assert sender.send(b"heartbeat")
        time.sleep(0.05)
        # Built by us, not by the kernel's UDP: no checksum (the kernel's is never 0 here).
        checksums = _udp_checksums(tap, port, b"heartbeat")
        assert checksums
        assert set(checksums) == {0}
    finally:
        tap.close()
        sender.close()


def test_without_our_address_a_heartbeat_goes_through_udp_as_before() -> None:
    port = _free_port()
    sender = HeartbeatSocket("lo", port)
    tap = _capture("lo")
    try:
        assert not sender.sends_frames
        assert sender.send(b"heartbeat")
        time.sleep(0.05)
        checksums = _udp_checksums(tap, port, b"heartbeat")
        assert checksums
        assert 0 not in checksums
    finally:
        tap.close()
        sender.close()


def test_refresh_reads_the_address_the_interface_has_now() -> None:
    port = _free_port()
    sender = HeartbeatSocket("lo", port, "127.0.0.9")  # as if lo's address had changed since
    try:
        sender.refresh()
        assert sender.own_address == "127.0.0.1"
        assert sender.sends_frames
    finally:
        sender.close()
