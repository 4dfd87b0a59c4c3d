"""Heartbeats on the wire: broadcast on each announcing interface, received on a UDP socket there.

Owns: opening the sockets bound to the interface (so a heartbeat leaves and arrives only there:
if the NIC dies, so does the node's membership), sending, and draining received datagrams
without blocking, each with the kernel's arrival time. Decoding and the view live in
`protocol`, the frame's bytes in `frames`.

Receiving is a UDP socket (SO_BINDTODEVICE). Sending is a packet socket (AF_PACKET) that hands
the driver a whole Ethernet frame built in `frames`, when we know the interface's MAC and our
IPv4 address there; otherwise, or if that send fails, the UDP socket's `sendto`. On the wire
the two are the same UDP broadcast (but for a zero, "absent", UDP checksum), but the packet
socket skips what the kernel does for a locally sent IPv4 broadcast and we do not need: the
copy it loops back to our own stack (only for our filter to drop it), the node's own netfilter
OUTPUT and POSTROUTING chains and conntrack (where kube-proxy and the CNI keep their rules), the
route lookup and the UDP and IP output paths: in the lab, an idle speaker's CPU is about 8 %
lower (decision 0166). A consequence: a firewall rule in the node's OUTPUT
chain no longer sees our heartbeats (the receivers' INPUT chains still do, and tcpdump sees
them on both ends). Our address and MAC are re-read when the interface changes (`refresh`), so
a heartbeat does not leave with an address the interface no longer has.

The speaker drains once per heartbeat interval instead of waking for every datagram: on a
Raspberry Pi-class CPU each wake-up of a Python process costs a few hundred microseconds, and
waking for every peer's heartbeat would cost several percent of a core. The kernel's arrival
timestamp (SO_TIMESTAMPNS) keeps liveness exact although the datagram is read later.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pikube.lb.membership.frames import FrameBuilder

T = TypeVar("T")
log = logging.getLogger("pikube.speaker")

BROADCAST = "255.255.255.255"
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("=qq")


# Classic BPF for the socket: drop datagrams whose IPv4 source is this node (its own
# broadcasts, looped back by the kernel), so they never wake the speaker.
_SKF_NET_OFF = -0x100000
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06
_SO_ATTACH_FILTER = 26
_SIOCGIFADDR = 0x8915
# Link types whose packet sockets take a 14-byte Ethernet header (lo's is all zeros).
_ETHERNET_LIKE = (1, 772)  # ARPHRD_ETHER, ARPHRD_LOOPBACK
_PRIORITY = 6  # SO_PRIORITY: heartbeats are tiny and time-critical, the qdisc sends them first
_said: set[str] = set()  # what was logged once


def _drop_from(address: str) -> bytes:
    source = int.from_bytes(socket.inet_aton(address), "big")
    program = [
        (_BPF_LD_W_ABS, 0, 0, (_SKF_NET_OFF + 12) & 0xFFFFFFFF),  # A = IPv4 source address
        (_BPF_JEQ_K, 0, 1, source),  # ours? drop : keep
        (_BPF_RET_K, 0, 0, 0),
        (_BPF_RET_K, 0, 0, 0xFFFFFFFF),
    ]
    return b"".join(struct.pack("HBBI", *insn) for insn in program)


def _packet_socket(interface: str) -> socket.socket | None:
    """A packet socket that sends on `interface` and receives nothing (protocol 0), or None
    without CAP_NET_RAW or on a link without Ethernet headers."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError as exc:
        if "no packet socket" not in _said:
            _said.add("no packet socket")
            log.debug("heartbeats go through UDP sockets: no packet socket (%s)", exc)
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, _PRIORITY)
        sock.bind((interface, 0))
        if sock.getsockname()[3] in _ETHERNET_LIKE:
            return sock
    except OSError:
        pass
    sock.close()
    return None


def _ipv4_address(sock: socket.socket, interface: str) -> str | None:
    """The interface's primary IPv4 address as the kernel has it now, in `sock`'s namespace."""
    request = struct.pack("16s24x", interface.encode()[:15])
    try:
        answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
    except OSError:  # no address, or no such interface
        return None
    return socket.inet_ntoa(answer[20:24])


@dataclass
class HeartbeatSocket:
    interface: str
    port: int
    own_address: str | None = None  # our IPv4 address there: our own broadcasts are dropped
    sock: socket.socket = field(init=False)
    _raw: socket.socket | None = field(init=False, default=None)  # sends whole frames
    _frames: FrameBuilder | None = field(init=False, default=None)  # if we know MAC and address
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
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, _PRIORITY)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock = sock
        if self.own_address is not None:
            self._drop_own(self.own_address)
        sock.bind(("", self.port))
        sock.setblocking(False)
        space = bytearray(65535)
        self._buffer, self._view = [space], memoryview(space)
        self._raw = _packet_socket(self.interface)
        self._build_frames()

    def _drop_own(self, address: str) -> None:
        self._filter = ctypes.create_string_buffer(_drop_from(address))
        fprog = struct.pack("HL", 4, ctypes.addressof(self._filter))
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)

    def _build_frames(self) -> None:
        self._frames = None
        if self._raw is None or self.own_address is None:
            return
        try:
            mac = self._raw.getsockname()[4]
        except OSError:
            return
        self._frames = FrameBuilder(mac, socket.inet_aton(self.own_address), self.port)

    @property
    def sends_frames(self) -> bool:
        """Does a heartbeat leave as a frame on the packet socket (else by UDP `sendto`)?"""
        return self._frames is not None

    def refresh(self) -> None:
        """Re-read our IPv4 address and MAC on the interface, as they are now: the speaker calls
        this on every link and address event of the interface, so a frame does not keep a
        source the interface no longer has. (An address gone: back to `sendto`, as before.)"""
        address = _ipv4_address(self.sock, self.interface)
        if address is not None and address != self.own_address:
            self._drop_own(address)
        self.own_address = address
        self._build_frames()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, datagram: bytes) -> bool:
        """Broadcast on the interface; False if the link cannot send (down, no address)."""
        frames = self._frames
        if frames is not None and self._raw is not None:
            try:
                self._raw.send(frames.frame(datagram))
            except OSError:  # larger than the link's MTU (sendto fragments it), or link down
                pass
            else:
                return True
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
        if self._raw is not None:
            self._raw.close()
