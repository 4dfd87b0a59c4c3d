"""The heartbeat socket's drain: every queued datagram, its sender and its kernel arrival time,
built by the caller's constructor, from one reused buffer."""

from __future__ import annotations

import os
import socket
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
