"""Heartbeats sent as whole frames on a packet socket (decision 0166), between real network
namespaces: a peer's heartbeat socket receives them, the sender's own stack never sees them, and
on the wire they are the datagram the kernel's UDP socket sends, but for the checksum."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lb.l2 import events as ev
from pikube.lb.l2 import links
from pikube.lb.membership.transport import HeartbeatSocket
from tests.conftest import fresh_lab

pytestmark = pytest.mark.lab

PORT = 7950  # not the speakers' (none runs in this lab anyway)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with fresh_lab() as the_lab:
        yield the_lab


def _address(lab: Lab, host: str) -> str:
    return str(lab.topology.host(host).ipv4)


def _heartbeat_socket(lab: Lab, host: str, own: bool = True) -> HeartbeatSocket:
    with netns.entered(lab.namespace(host)):
        return HeartbeatSocket("eth0", PORT, _address(lab, host) if own else None)


def _plain_udp(lab: Lab, host: str) -> socket.socket:
    """A UDP socket on the heartbeat port without our filter: it hears what the kernel
    delivers there, our own broadcasts included."""
    with netns.entered(lab.namespace(host)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    sock.bind(("", PORT))
    sock.setblocking(False)
    return sock


def _received(sock: socket.socket) -> list[tuple[bytes, str]]:
    got: list[tuple[bytes, str]] = []
    while True:
        try:
            data, address = sock.recvfrom(65535)
        except BlockingIOError:
            return got
        got.append((data, address[0]))


def _drained(receiver: HeartbeatSocket) -> list[tuple[bytes | object, str]]:
    time.sleep(0.1)
    return [(r.heartbeat, r.source) for r in receiver.drain(time.monotonic(), 0.0, ev.Received)]


def test_a_peer_receives_a_frame_heartbeat_and_the_sender_never_sees_it_back(lab: Lab) -> None:
    sender, legacy = _heartbeat_socket(lab, "node01"), _heartbeat_socket(lab, "node01", own=False)
    receiver, own_stack = _heartbeat_socket(lab, "node02"), _plain_udp(lab, "node01")
    try:
        assert sender.sends_frames
        assert not legacy.sends_frames
        assert sender.send(b"as a frame")
        assert _drained(receiver) == [(b"as a frame", _address(lab, "node01"))]
        # Not looped back into our own stack: nothing for the filter to drop, no wake-up.
        assert _received(own_stack) == []
        # Whereas the kernel's UDP sendto loops every broadcast back (to be dropped by the
        # speaker's filter: this socket has none).
        assert legacy.send(b"by sendto")
        assert _drained(receiver) == [(b"by sendto", _address(lab, "node01"))]
        assert _received(own_stack) == [(b"by sendto", _address(lab, "node01"))]
    finally:
        for each in (sender, legacy, receiver):
            each.close()
        own_stack.close()


def _tap(lab: Lab, host: str) -> socket.socket:
    with netns.entered(lab.namespace(host)):
        tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    tap.bind(("eth0", 0))
    tap.setblocking(False)
    return tap


def _frames_to(tap: socket.socket, port: int) -> list[bytes]:
    time.sleep(0.1)
    found: list[bytes] = []
    while True:
        try:
            frame = tap.recv(65535)
        except BlockingIOError:
            return found
        if frame[23] == 17 and struct.unpack_from("!H", frame, 36)[0] == port:
            found.append(frame)


def test_on_the_wire_a_frame_heartbeat_is_the_kernels_datagram_but_for_its_checksum(
    lab: Lab,
) -> None:
    sender, legacy = _heartbeat_socket(lab, "node01"), _heartbeat_socket(lab, "node01", own=False)
    tap = _tap(lab, "node02")
    try:
        payload = b"h" * 64
        assert legacy.send(payload)
        (by_kernel,) = _frames_to(tap, PORT)
        assert sender.send(payload)
        (by_us,) = _frames_to(tap, PORT)
        # Ethernet, IPv4 (TOS, length, DF, TTL, protocol, addresses), UDP ports and length:
        # byte for byte. Not the IPv4 ID: ours is 0, the kernel's a hash; the ID of a datagram
        # that must not be fragmented means nothing (RFC 6864), so the header checksums differ
        # too. The UDP checksum: the kernel's, and none (0) from us.
        assert by_us[:18] == by_kernel[:18]
        assert by_us[20:24] == by_kernel[20:24]
        assert by_us[26:40] == by_kernel[26:40]
        assert by_us[18:20] == b"\0\0"
        assert by_us[42:] == by_kernel[42:] == payload
        assert by_us[40:42] == b"\0\0"
        assert by_kernel[40:42] != b"\0\0"
    finally:
        for each in (sender, legacy):
            each.close()
        tap.close()


def test_a_heartbeat_too_large_for_one_frame_goes_through_udp_and_arrives_whole(
    lab: Lab,
) -> None:
    sender, receiver = _heartbeat_socket(lab, "node01"), _heartbeat_socket(lab, "node02")
    try:
        big = b"b" * 3000  # over eth0's MTU: the packet socket refuses it, the kernel fragments
        assert sender.send(big)
        assert _drained(receiver) == [(big, _address(lab, "node01"))]
    finally:
        sender.close()
        receiver.close()


def test_after_an_address_change_heartbeats_carry_the_new_address(lab: Lab) -> None:
    sender, receiver = _heartbeat_socket(lab, "node01"), _heartbeat_socket(lab, "node02")
    with netns.entered(lab.namespace("node01")):
        monitor = links.link_monitor_socket()
    old, new = _address(lab, "node01"), "198.51.100.99"
    try:
        lab.run("node01", ["ip", "addr", "del", f"{old}/24", "dev", "eth0"], check=True)
        lab.run("node01", ["ip", "addr", "add", f"{new}/24", "dev", "eth0"], check=True)
        # The speaker hears it on its link monitor and refreshes the interface's socket.
        time.sleep(0.05)
        index = _index(lab, "node01")
        assert links.AddressEvent(index) in links.parse_link_events(monitor.recv(65536))
        sender.refresh()
        assert sender.own_address == new
        assert sender.sends_frames
        assert sender.send(b"renumbered")
        assert _drained(receiver) == [(b"renumbered", new)]
        # No address at all: back to the kernel's UDP, whatever it makes of that.
        lab.run("node01", ["ip", "addr", "del", f"{new}/24", "dev", "eth0"], check=True)
        sender.refresh()
        assert sender.own_address is None
        assert not sender.sends_frames
    finally:
        lab.run("node01", ["ip", "addr", "flush", "dev", "eth0", "scope", "global"])
        lab.run("node01", ["ip", "addr", "add", f"{old}/24", "dev", "eth0"])
        monitor.close()
        sender.close()
        receiver.close()


def _index(lab: Lab, host: str) -> int:
    return int(lab.run(host, ["cat", "/sys/class/net/eth0/ifindex"], check=True).stdout)
