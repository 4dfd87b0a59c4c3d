"""Network interfaces as the speaker sees them: index, MAC, up/down, and link events.

Owns: reading an interface's state with ioctl (cheap, no dependency: the speaker must not load
pyroute2's 12 MB), choosing the interfaces to announce on, and a netlink subscription
(RTMGRP_LINK) that reports carrier and admin state changes the moment the kernel sees them,
and IPv4 address changes (RTMGRP_IPV4_IFADDR: heartbeats carry the address, decision 0166).
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import struct
from dataclasses import dataclass

SIOCGIFFLAGS = 0x8913
SIOCGIFHWADDR = 0x8927
SIOCGIFADDR = 0x8915
IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_NOARP = 0x80
IFF_LOWER_UP = 0x10000

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_DELADDR = 21
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")

# MetalLB's default exclusions (config/native/exclude-l2-config.yaml): virtual and CNI links
# are never where a LAN client looks for a service IP.
EXCLUDED = re.compile(
    r"^(docker|cbr|dummy|virbr|lxcbr|veth|lo$|cali|tunl|flannel|kube-ipvs|cni|nodelocaldns|lxc)"
)


class LinkMissing(LookupError):
    pass


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    mac: bytes


def _ifreq(sock: socket.socket, request: int, name: str) -> bytes:
    raw = struct.pack("16s24x", name.encode()[:15])
    try:
        return fcntl.ioctl(sock.fileno(), request, raw)
    except OSError as exc:
        raise LinkMissing(f"interface {name!r} does not exist") from exc


def link(name: str) -> Link:
    """Index and MAC of an interface; LinkMissing if there is none of that name."""
    try:
        index = socket.if_nametoindex(name)
    except OSError as exc:
        raise LinkMissing(f"interface {name!r} does not exist") from exc
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        result = _ifreq(sock, SIOCGIFHWADDR, name)
    return Link(name=name, index=index, mac=result[18:24])


def ipv4_address(name: str) -> str | None:
    """The interface's primary IPv4 address, or None if it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            result = _ifreq(sock, SIOCGIFADDR, name)
        except LinkMissing:
            return None
    return socket.inet_ntoa(result[20:24])


def flags(name: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        result = _ifreq(sock, SIOCGIFFLAGS, name)
    value: int = struct.unpack_from("H", result, 16)[0]
    return value


def is_usable(name: str) -> bool:
    """Administratively up with a carrier. (SIOCGIFFLAGS carries only 16 bits, so the lower-up
    bit comes from /sys when mounted for this namespace, else IFF_RUNNING stands in.)"""
    try:
        value = flags(name)
    except LinkMissing:
        return False
    running = 0x40  # IFF_RUNNING: RFC 2863 operational state "up"
    return bool(value & IFF_UP) and bool(value & running)


def default_interfaces() -> list[str]:
    """Interfaces MetalLB would announce on: up, broadcast-capable, ARP-enabled, not enslaved
    to a bridge or bond, and not matching the default exclusion list."""
    chosen = []
    for _index, name in socket.if_nameindex():
        if EXCLUDED.match(name) or os.path.exists(f"/sys/class/net/{name}/master"):
            continue
        try:
            value = flags(name)
        except LinkMissing:
            continue
        if value & IFF_UP and value & IFF_BROADCAST and not value & (IFF_NOARP | IFF_LOOPBACK):
            chosen.append(name)
    return chosen


@dataclass(frozen=True)
class LinkEvent:
    index: int
    up: bool  # admin up and lower (carrier) up
    deleted: bool = False


@dataclass(frozen=True)
class AddressEvent:
    """An IPv4 address of the link was added or removed."""

    index: int


def link_monitor_socket() -> socket.socket:
    """A non-blocking netlink socket subscribed to link changes and IPv4 address changes."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
    sock.setblocking(False)
    return sock


def parse_link_events(data: bytes) -> list[LinkEvent | AddressEvent]:
    """Link and IPv4 address events in a netlink datagram (malformed tails are ignored)."""
    events: list[LinkEvent | AddressEvent] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        if kind in (RTM_NEWLINK, RTM_DELLINK) and length >= _NLMSGHDR.size + _IFINFOMSG.size:
            _family, _type, index, ifflags, _change = _IFINFOMSG.unpack_from(
                data, offset + _NLMSGHDR.size
            )
            up = bool(ifflags & IFF_UP) and bool(ifflags & IFF_LOWER_UP)
            events.append(
                LinkEvent(index=index, up=up and kind == RTM_NEWLINK, deleted=kind == RTM_DELLINK)
            )
        elif kind in (RTM_NEWADDR, RTM_DELADDR) and length >= _NLMSGHDR.size + _IFADDRMSG.size:
            family, _prefix, _flags, _scope, index = _IFADDRMSG.unpack_from(
                data, offset + _NLMSGHDR.size
            )
            if family == socket.AF_INET:
                events.append(AddressEvent(index=index))
        offset += (length + 3) & ~3
    return events
