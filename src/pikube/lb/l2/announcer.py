"""The layer-2 announcer of one interface: raw sockets that answer ARP and NDP for owned IPs and
send gratuitous ARP / unsolicited NA. The thin adapter around `arp` and `ndp`.

Owns: an AF_PACKET socket for ARP and a raw ICMPv6 socket for NDP on one interface, the set of
addresses this node answers for there, solicited-node group membership, and noticing other
hosts that claim (or, when probed, answer for) one of those addresses. It does not decide what
to own: the speaker does, and calls `claim`/`release`.

Every received frame is handled inline in the event loop's reader callback (no task per
packet): a reply leaves within microseconds of the request arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pikube.lb.l2 import arp, ndp
from pikube.lb.l2.arp import MalformedPacket
from pikube.lb.l2.links import Link

PACKET_OUTGOING = 4
IPV6_FREEBIND = 78
ICMP6_FILTER = 1
_RECV_BUFFER = 2048


def text_ip(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


class L2Stats(Protocol):
    def request_received(self, ip: str) -> None: ...
    def response_sent(self, ip: str) -> None: ...
    def gratuitous_sent(self, ip: str) -> None: ...
    def malformed(self, protocol: str) -> None: ...


ForeignClaim = Callable[[bytes, bytes], None]  # (packed ip, mac) seen answering/announcing
PeerAnswer = Callable[[bytes], None]  # (packed ip) a probed peer's kernel answered


def _ignore_answer(_ip: bytes) -> None:
    return None


def _icmp6_filter(*allowed: int) -> bytes:
    words = [0xFFFFFFFF] * 8  # a set bit blocks the type
    for kind in allowed:
        words[kind >> 5] &= ~(1 << (kind & 31))
    return struct.pack("=8I", *words)


@dataclass
class InterfaceAnnouncer:
    link: Link
    stats: L2Stats
    on_foreign_claim: ForeignClaim
    owned: set[bytes] = field(default_factory=set)
    watched: set[bytes] = field(default_factory=set)  # being probed: report any answer
    on_peer_answer: PeerAnswer = _ignore_answer
    peers_asked: set[bytes] = field(default_factory=set)  # peers' addresses probed for liveness
    _arp: socket.socket | None = None
    _ndp: socket.socket | None = None
    _groups: set[bytes] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None

    # -- life cycle -------------------------------------------------------------------------

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(arp.ETH_P_ARP))
        sock.bind((self.link.name, arp.ETH_P_ARP))
        sock.setblocking(False)
        self._arp = sock
        loop.add_reader(sock.fileno(), self._on_arp)
        six = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        six.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.link.name.encode())
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ndp.NDP_HOP_LIMIT)
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ndp.NDP_HOP_LIMIT)
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        six.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)  # send from the service IP
        six.setsockopt(
            socket.IPPROTO_ICMPV6,
            ICMP6_FILTER,
            _icmp6_filter(ndp.ICMPV6_NEIGHBOR_SOLICITATION, ndp.ICMPV6_NEIGHBOR_ADVERTISEMENT),
        )
        six.setblocking(False)
        self._ndp = six
        loop.add_reader(six.fileno(), self._on_ndp)
        for ip in self.owned:
            self._join(ip)

    def close(self) -> None:
        for sock in (self._arp, self._ndp):
            if sock is not None:
                if self._loop is not None:
                    self._loop.remove_reader(sock.fileno())
                sock.close()
        self._arp = self._ndp = None
        self._groups.clear()

    # -- what we own ------------------------------------------------------------------------

    def claim(self, ip: bytes) -> None:
        self.owned.add(ip)
        self._join(ip)

    def release(self, ip: bytes) -> None:
        self.owned.discard(ip)
        if len(ip) == 16 and ip in self._groups and self._ndp is not None:
            self._groups.discard(ip)
            with contextlib.suppress(OSError):
                self._ndp.setsockopt(
                    socket.IPPROTO_IPV6,
                    socket.IPV6_LEAVE_GROUP,
                    ndp.solicited_node_group(ip) + struct.pack("=I", self.link.index),
                )

    def _join(self, ip: bytes) -> None:
        if len(ip) != 16 or ip in self._groups or self._ndp is None:
            return
        # Another owned IP may share the group (same last 24 bits): joining twice is EADDRINUSE.
        group = ndp.solicited_node_group(ip)
        try:
            self._ndp.setsockopt(
                socket.IPPROTO_IPV6,
                socket.IPV6_JOIN_GROUP,
                group + struct.pack("=I", self.link.index),
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        self._groups.add(ip)

    # -- announcing -------------------------------------------------------------------------

    def announce(self, ip: bytes) -> None:
        """Gratuitous ARP (IPv4) or an unsolicited NA with Override (IPv6), now."""
        if len(ip) == 4:
            for frame in arp.gratuitous_frames(self.link.mac, ip):
                self._send_arp(frame)
        else:
            self._send_ndp(ndp.unsolicited_advertisement(ip, self.link.mac))
        self.stats.gratuitous_sent(text_ip(ip))

    def probe(self, ip: bytes) -> None:
        """Ask who has `ip` without claiming it (RFC 5227 probe / a DAD-style NS)."""
        self.watched.add(ip)
        if len(ip) == 4:
            self._send_arp(arp.probe_frame(self.link.mac, ip))
        else:
            message = ndp.build_solicitation(ip, None)
            self._send_ndp(ndp.Outgoing(ndp.solicited_node_group(ip), ndp.UNSPECIFIED, message))

    def probe_peer(self, ip: bytes, frames: int = 1) -> None:
        """Ask whether a peer's link is there: an ARP probe for its IPv4 address, which its
        kernel answers (reported once through `on_peer_answer`)."""
        self.peers_asked.add(ip)
        frame = arp.probe_frame(self.link.mac, ip)
        for _ in range(frames):
            self._send_arp(frame)

    def _send_arp(self, frame: bytes) -> bool:
        if self._arp is None:
            return False
        try:
            self._arp.send(frame)
        except OSError:  # link down: the speaker hears about it from netlink
            return False
        return True

    def _send_ndp(self, out: ndp.Outgoing) -> bool:
        if self._ndp is None:
            return False
        ancillary = [
            (
                socket.IPPROTO_IPV6,
                socket.IPV6_PKTINFO,
                out.source + struct.pack("=I", self.link.index),
            )
        ]
        destination = (socket.inet_ntop(socket.AF_INET6, out.destination), 0, 0, self.link.index)
        try:
            self._ndp.sendmsg([out.message], ancillary, 0, destination)
        except OSError:
            return False
        return True

    # -- receiving --------------------------------------------------------------------------

    def _on_arp(self) -> None:
        sock = self._arp
        if sock is None:
            return
        while True:
            try:
                data, address = sock.recvfrom(_RECV_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if address[2] == PACKET_OUTGOING:
                continue
            try:
                frame = arp.parse_frame(data)
            except MalformedPacket:
                self.stats.malformed("arp")
                continue
            if frame.op == arp.ArpOp.REPLY and frame.sender_ip in self.peers_asked:
                self.peers_asked.discard(frame.sender_ip)
                self.on_peer_answer(frame.sender_ip)
                continue
            if frame.op == arp.ArpOp.REQUEST and frame.target_ip in self.owned:
                self.stats.request_received(text_ip(frame.target_ip))
                reply = arp.reply_for(frame, self.owned, self.link.mac)
                if reply is not None and self._send_arp(reply):
                    self.stats.response_sent(text_ip(frame.target_ip))
            # Someone else saying "this IP is at my MAC": a reply, or a gratuitous announcement.
            if (
                frame.sender_mac != self.link.mac
                and frame.sender_ip != arp.ZERO_IP
                and (frame.op == arp.ArpOp.REPLY or frame.is_gratuitous)
                and (frame.sender_ip in self.owned or frame.sender_ip in self.watched)
            ):
                self.on_foreign_claim(frame.sender_ip, frame.sender_mac)

    def _on_ndp(self) -> None:
        sock = self._ndp
        if sock is None:
            return
        while True:
            try:
                data, ancillary, _flags, address = sock.recvmsg(_RECV_BUFFER, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            hop_limit = 0
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
                    hop_limit = struct.unpack("=i", value[:4])[0]
            source = socket.inet_pton(socket.AF_INET6, address[0].split("%")[0])
            if not data:
                continue
            if data[0] == ndp.ICMPV6_NEIGHBOR_ADVERTISEMENT:
                self._on_advertisement(data, hop_limit)
                continue
            try:
                solicitation = ndp.parse_solicitation(data, source, hop_limit)
            except MalformedPacket:
                self.stats.malformed("ndp")
                continue
            if solicitation.target not in self.owned:
                continue
            self.stats.request_received(text_ip(solicitation.target))
            out = ndp.answer_for(solicitation, self.owned, self.link.mac)
            if out is not None and self._send_ndp(out):
                self.stats.response_sent(text_ip(solicitation.target))

    def _on_advertisement(self, data: bytes, hop_limit: int) -> None:
        if hop_limit != ndp.NDP_HOP_LIMIT:
            return
        try:
            advert = ndp.parse_advertisement(data)
        except MalformedPacket:
            self.stats.malformed("ndp")
            return
        mac = advert.target_mac
        if mac is None or mac == self.link.mac:
            return
        if advert.target in self.owned or advert.target in self.watched:
            self.on_foreign_claim(advert.target, mac)
