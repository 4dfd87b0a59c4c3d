"""Heartbeats on the wire: one UDP socket per announcing interface, broadcast on that interface.

Owns: opening the socket bound to the interface (SO_BINDTODEVICE, so a heartbeat leaves and
arrives only there: if the NIC dies, so does the node's membership), sending, and draining
received datagrams without blocking, each with the kernel's arrival time. Decoding and the
view live in `protocol`.

The speaker drains once per heartbeat interval instead of waking for every datagram: on a
Raspberry Pi-class CPU each wake-up of a Python process costs a few hundred microseconds, and
waking for every peer's heartbeat would cost several percent of a core. The kernel's arrival
timestamp (SO_TIMESTAMPNS) keeps liveness exact although the datagram is read later.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

BROADCAST = "255.255.255.255"
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("=qq")


# Classic BPF for the socket: drop datagrams whose IPv4 source is this node (its own
# broadcasts, looped back by the kernel), so they never wake the speaker.
_SKF_NET_OFF = -0x100000
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06
_SO_ATTACH_FILTER = 26


def _drop_from(address: str) -> bytes:
    source = int.from_bytes(socket.inet_aton(address), "big")
    program = [
        (_BPF_LD_W_ABS, 0, 0, (_SKF_NET_OFF + 12) & 0xFFFFFFFF),  # A = IPv4 source address
        (_BPF_JEQ_K, 0, 1, source),  # ours? drop : keep
        (_BPF_RET_K, 0, 0, 0),
        (_BPF_RET_K, 0, 0, 0xFFFFFFFF),
    ]
    return b"".join(struct.pack("HBBI", *insn) for insn in program)


@dataclass
class HeartbeatSocket:
    interface: str
    port: int
    own_address: str | None = None  # our IPv4 address there: our own broadcasts are dropped
    sock: socket.socket = field(init=False)
    _filter: ctypes.Array[ctypes.c_char] | None = field(init=False, default=None)
    # Received into one buffer of the largest datagram: `recvmsg` would allocate 64 KiB and
    # shrink it again for every heartbeat.
    _buffer: list[bytearray] = field(init=False)
    _view: memoryview = field(init=False)

    def __post_init__(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
        # Heartbeats are tiny and time-critical: ask the qdisc to send them first.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 6)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if self.own_address is not None:
            self._filter = ctypes.create_string_buffer(_drop_from(self.own_address))
            fprog = struct.pack("HL", 4, ctypes.addressof(self._filter))
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
        sock.bind(("", self.port))
        sock.setblocking(False)
        self.sock = sock
        space = bytearray(65535)
        self._buffer, self._view = [space], memoryview(space)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, datagram: bytes) -> bool:
        """Broadcast on the interface; False if the link cannot send (down, no address)."""
        try:
            self.sock.sendto(datagram, (BROADCAST, self.port))
        except OSError:
            return False
        return True

    def drain(
        self,
        now_s: float,
        since_s: float,
        make: Callable[[bytes, str, float], T],
        limit: int = 256,
    ) -> list[T]:
        """Everything received so far (at most `limit` datagrams), without blocking, each made
        by `make(data, source address, arrival time)` (the caller's event).

        `now_s` is the caller's monotonic time, `since_s` when it last drained: arrival times
        are converted from the kernel's wall-clock stamps and kept within that window, so a
        step of the wall clock cannot make a peer look older (or newer) than it is.
        """
        received: list[T] = []
        wall_to_mono = now_s - time.time()
        recvmsg_into, buffer, view = self.sock.recvmsg_into, self._buffer, self._view
        for _ in range(limit):
            try:
                size, ancillary, _flags, address = recvmsg_into(buffer, 64)
            except OSError:  # BlockingIOError once drained; or the link went away
                break
            data = bytes(view[:size])
            arrived = now_s
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                    arrived = seconds + nanoseconds / 1e9 + wall_to_mono
            received.append(make(data, address[0], min(now_s, max(since_s, arrived))))
        return received

    def close(self) -> None:
        self.sock.close()
