"""Network namespaces, links and addresses via netlink (pyroute2): the lab's kernel adapter.

Owns: creating and deleting named namespaces (/run/netns/NAME, as `ip netns` does), entering one
from the current thread, sysctls inside one, veth/bridge plumbing, and finding the processes
that live in a namespace. It knows nothing about the lab's shape (see topology.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_IFA_F_NODAD = 0x02
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def path_of(namespace: str) -> Path:
    return NETNS_DIR / namespace


def exists(namespace: str) -> bool:
    return path_of(namespace).exists()


def list_namespaces() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def create(namespace: str) -> None:
    netns.create(namespace)


def remove(namespace: str) -> None:
    """Delete a named namespace; a missing one is not an error."""
    with contextlib.suppress(FileNotFoundError):
        netns.remove(namespace)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """Run the body with the current thread inside `namespace`, then return to where it was.

    setns(CLONE_NEWNET) is per thread, so other threads are unaffected. Sockets opened in the
    body stay in `namespace` after the block ends.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path_of(namespace), os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


def set_sysctls(namespace: str, values: dict[str, str]) -> None:
    """Write sysctls (dotted names, e.g. net.ipv4.conf.all.arp_ignore) inside a namespace."""
    with entered(namespace):
        for name, value in values.items():
            Path("/proc/sys", *name.split(".")).write_text(value)


@contextlib.contextmanager
def route_socket(namespace: str) -> Iterator[Any]:
    """An rtnetlink socket (pyroute2 IPRoute) bound to the namespace."""
    with entered(namespace):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def link_index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no interface {ifname!r}")
    return int(found[0])


def ensure_bridge(namespace: str, bridge: str) -> None:
    with route_socket(namespace) as ipr:
        if not ipr.link_lookup(ifname=bridge):
            ipr.link("add", ifname=bridge, kind="bridge")
        ipr.link("set", index=link_index(ipr, bridge), state="up")
        ipr.link("set", index=link_index(ipr, "lo"), state="up")


def connect_to_bridge(
    lan_namespace: str, bridge: str, port: str, host_namespace: str, host_ifname: str
) -> None:
    """Create a veth pair: `port` on the bridge in the LAN namespace, `host_ifname` in the host."""
    with route_socket(host_namespace) as host:
        host_side = bool(host.link_lookup(ifname=host_ifname))
    with route_socket(lan_namespace) as ipr:
        stale = ipr.link_lookup(ifname=port)
        if stale and not host_side:
            # The peer's namespace was deleted and the kernel has not yet reaped this end.
            ipr.link("del", index=stale[0])
        if not host_side:
            fd = os.open(path_of(host_namespace), os.O_RDONLY)
            try:
                ipr.link(
                    "add",
                    ifname=port,
                    kind="veth",
                    peer={"ifname": host_ifname, "net_ns_fd": fd},
                )
            finally:
                os.close(fd)
        ipr.link("set", index=link_index(ipr, port), master=link_index(ipr, bridge), state="up")


def configure_interface(
    namespace: str,
    ifname: str,
    *,
    mac: str,
    addresses: Iterable[tuple[str, int]],
    gateway4: str | None = None,
) -> None:
    """Set MAC and addresses (IPv6 without duplicate address detection), bring it and lo up."""
    with route_socket(namespace) as ipr:
        index = link_index(ipr, ifname)
        ipr.link("set", index=index, address=mac)
        present = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index)}
        for address, prefixlen in addresses:
            if (address, prefixlen) in present:
                continue
            flags = _IFA_F_NODAD if ":" in address else 0
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen, flags=flags)
        ipr.link("set", index=index, state="up")
        ipr.link("set", index=link_index(ipr, "lo"), state="up")
        if gateway4 is not None:
            try:
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway4)
            except Exception as exc:  # pyroute2 raises NetlinkError(EEXIST) on re-runs
                if getattr(exc, "code", None) != errno.EEXIST:
                    raise


# What a link lost when this process took it down: the kernel drops its routes and (unless
# keep_addr_on_down) its IPv6 addresses. A Pi's network manager (NetworkManager,
# systemd-networkd, dhcpcd) applies its configuration again when the link comes back, and so
# does `set_link_state`. Kept per (namespace, interface), in this process.
_TAKEN_DOWN: dict[tuple[str, str], tuple[list[tuple[str, int]], list[tuple[int, str]]]] = {}
_RTPROT_RA = 9  # learned from a router advertisement: it comes back by itself
_UNREACHABLE = (errno.EHOSTUNREACH, errno.ENETUNREACH)
CARRIER_WAIT_S = 3.0


def set_link_state(namespace: str, ifname: str, up: bool) -> None:
    """Take the link down (`up` False) or bring it back. Back up, it gets again the static IPv6
    addresses and default routes it had (as a network manager does), not just the kernel's
    IPv4 routes."""
    with route_socket(namespace) as ipr:
        index = link_index(ipr, ifname)
        if not up:
            _TAKEN_DOWN[(namespace, ifname)] = _static_config(ipr, index)
        ipr.link("set", index=index, state="up" if up else "down")
        if up:
            six, gateways = _TAKEN_DOWN.pop((namespace, ifname), ([], []))
            _restore(ipr, index, six, gateways)


def _static_config(ipr: Any, index: int) -> tuple[list[tuple[str, int]], list[tuple[int, str]]]:
    six = [
        (addr.get_attr("IFA_ADDRESS"), int(addr["prefixlen"]))
        for addr in ipr.get_addr(family=socket.AF_INET6, index=index)
        if not addr.get_attr("IFA_ADDRESS").lower().startswith("fe80:")
    ]
    gateways = [
        (int(route["family"]), route.get_attr("RTA_GATEWAY"))
        for route in ipr.get_default_routes(table=254)
        if route.get_attr("RTA_OIF") == index
        and route.get_attr("RTA_GATEWAY")
        and route["proto"] != _RTPROT_RA
    ]
    return six, gateways


def _restore(
    ipr: Any, index: int, six: list[tuple[str, int]], gateways: list[tuple[int, str]]
) -> None:
    for address, prefixlen in six:
        flags = _IFA_F_NODAD
        _add(
            partial(ipr.addr, "add", index=index, address=address, prefixlen=prefixlen, flags=flags)
        )
    for family, gateway in gateways:
        dst = "0.0.0.0/0" if family == socket.AF_INET else "::/0"
        _add(partial(ipr.route, "add", dst=dst, gateway=gateway, oif=index, family=family))


def _add(request: Callable[[], object]) -> None:
    """Make a netlink request; already there is fine, and an unreachable gateway is waited for
    (its prefix route comes with the carrier, a moment after the link is up)."""
    deadline = time.monotonic() + CARRIER_WAIT_S
    while True:
        try:
            request()
        except Exception as exc:  # pyroute2's NetlinkError
            code = getattr(exc, "code", None)
            if code in _UNREACHABLE and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            if code != errno.EEXIST:
                raise
        return


def link_is_up(namespace: str, ifname: str) -> bool:
    """True if the interface is administratively up (IFF_UP)."""
    with route_socket(namespace) as ipr:
        (link,) = ipr.get_links(link_index(ipr, ifname))
        return bool(link["flags"] & 1)


def addresses(namespace: str) -> list[tuple[str, str, int]]:
    """(interface, address, prefixlen) for every address in the namespace except loopback."""
    result: list[tuple[str, str, int]] = []
    with route_socket(namespace) as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for addr in ipr.get_addr():
            name = names.get(addr["index"], "?")
            if name != "lo":
                result.append((name, addr.get_attr("IFA_ADDRESS"), addr["prefixlen"]))
    return result


def _ns_identity(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in(namespaces: Iterable[str]) -> dict[int, str]:
    """Processes whose network namespace is one of `namespaces`: pid -> namespace name."""
    wanted: dict[tuple[int, int], str] = {}
    for name in namespaces:
        ident = _ns_identity(path_of(name))
        if ident is not None:
            wanted[ident] = name
    if not wanted:
        return {}
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            ident = _ns_identity(f"/proc/{entry.name}/ns/net")
            if ident in wanted:
                found[int(entry.name)] = wanted[ident]
    return found
