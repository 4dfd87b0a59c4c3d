"""The asyncio adapter of BFD: UDP sockets and timers around fsm.BfdSession (RFC 5881).

`BfdEndpoint` owns the receiving sockets (UDP 3784 on every address, IPv4 and IPv6, with the
received TTL / hop limit reported per packet) and hands each packet that arrived with TTL 255
(RFC 5881 5; a profile's minimumTtl for multihop) to the session of its source address. Each
`BfdPeer` sends from its own socket, bound to a port in 49152-65535, with TTL 255, and
carries out its session's actions: send, timers (with RFC 5880's 75-100 % jitter on
transmissions), state changes reported to `on_state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import struct
from collections.abc import Callable

from pikube.lb.bfd import codec, fsm
from pikube.lb.bfd.codec import SessionState

log = logging.getLogger("pikube.bfd")

IP_RECVTTL = 12
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
IPV6_UNICAST_HOPS = 16
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BfdPeer:
    def __init__(
        self,
        endpoint: BfdEndpoint,
        peer: Address,
        settings: fsm.BfdSettings,
        on_state: Callable[[BfdPeer, fsm.StateChanged], None],
        *,
        minimum_ttl: int = 255,
        source: Address | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.peer = peer
        self.session = fsm.BfdSession(settings)
        self.on_state = on_state
        self.minimum_ttl = minimum_ttl
        self._loop = asyncio.get_running_loop()
        self._timers: dict[fsm.Timer, asyncio.TimerHandle] = {}
        family = socket.AF_INET if peer.version == 4 else socket.AF_INET6
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        if family == socket.AF_INET:
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        else:
            self._sock.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, 255)
        self._bind(source)

    def _bind(self, source: Address | None) -> None:
        host = str(source) if source is not None else ""
        for _ in range(64):
            port = random.choice(codec.SOURCE_PORTS)
            try:
                self._sock.bind((host, port))
                return
            except OSError:
                continue
        self._sock.bind((host, 0))

    @property
    def state(self) -> SessionState:
        return self.session.state

    def handle(self, event: fsm.Event) -> None:
        for action in self.session.handle(event):
            if isinstance(action, fsm.Send):
                with contextlib.suppress(OSError):  # a down link: the detection time says so
                    self._sock.sendto(action.data, (str(self.peer), codec.PORT))
            elif isinstance(action, fsm.StartTimer):
                old = self._timers.pop(action.timer, None)
                if old is not None:
                    old.cancel()
                delay = action.seconds * (random.uniform(0.75, 1.0) if action.jitter else 1.0)
                self._timers[action.timer] = self._loop.call_later(delay, self._fire, action.timer)
            elif isinstance(action, fsm.StopTimer):
                handle = self._timers.pop(action.timer, None)
                if handle is not None:
                    handle.cancel()
            else:
                log.info(
                    "BFD %s: %s -> %s (%s)",
                    self.peer,
                    action.old.name,
                    action.new.name,
                    action.diagnostic.name.lower().replace("_", " "),
                )
                self.on_state(self, action)

    def _fire(self, timer: fsm.Timer) -> None:
        self._timers.pop(timer, None)
        self.handle(fsm.TimerFired(timer))

    def close(self) -> None:
        self.handle(fsm.AdminDown())
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._sock.close()
        self.endpoint.peers.pop(self.peer, None)


class BfdEndpoint:
    """The receiving side: UDP 3784, IPv4 and IPv6, demultiplexed by source address."""

    def __init__(self) -> None:
        self.peers: dict[Address, BfdPeer] = {}
        self._socks: list[socket.socket] = []
        self._loop = asyncio.get_running_loop()

    def _listen(self, family: socket.AddressFamily) -> None:
        if any(s.family == family for s in self._socks):
            return
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            sock.bind(("0.0.0.0", codec.PORT))
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            sock.bind(("::", codec.PORT))
        self._loop.add_reader(sock.fileno(), self._readable, sock)
        self._socks.append(sock)

    def add(
        self,
        peer: Address,
        settings: fsm.BfdSettings,
        on_state: Callable[[BfdPeer, fsm.StateChanged], None],
        *,
        minimum_ttl: int = 255,
        source: Address | None = None,
    ) -> BfdPeer:
        self._listen(socket.AF_INET if peer.version == 4 else socket.AF_INET6)
        session = BfdPeer(self, peer, settings, on_state, minimum_ttl=minimum_ttl, source=source)
        self.peers[peer] = session
        session.handle(fsm.AdminUp())
        return session

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                data, ancillary, _flags, address = sock.recvmsg(512, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            ttl = -1
            for level, kind, value in ancillary:
                if (level, kind) in (
                    (socket.IPPROTO_IP, socket.IP_TTL),
                    (socket.IPPROTO_IPV6, IPV6_HOPLIMIT),
                ):
                    ttl = struct.unpack("i", value[:4])[0] if len(value) >= 4 else value[0]
            source = ipaddress.ip_address(address[0].split("%")[0])
            if isinstance(source, ipaddress.IPv6Address) and source.ipv4_mapped:
                source = source.ipv4_mapped
            peer = self.peers.get(source)
            if peer is None or not codec.accept_ttl(ttl, peer.minimum_ttl):
                continue
            try:
                packet = codec.decode(data)
            except codec.MalformedPacket:
                continue
            peer.handle(fsm.Received(packet))

    def close(self) -> None:
        for peer in list(self.peers.values()):
            peer.close()
        for sock in self._socks:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()
