"""The lab's shape: which hosts exist, their names, addresses and MACs. Pure data, no I/O.

The lab mirrors the seed article's home LAN (192.168.68.0/24: a home router, a PC, a master
and three worker Raspberry Pis) in documentation ranges, so it can never collide with a real
network: 198.51.100.0/24 and 2001:db8:68::/64, with the same host numbers in both families
(node01 is .21 and ::21). The root namespace of some machines already uses 192.0.2.0/24, so
nothing here lives there.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from pikube.errors import InvalidInput

LAN_IPV4 = ipaddress.IPv4Network("198.51.100.0/24")
LAN_IPV6 = ipaddress.IPv6Network("2001:db8:68::/64")
# The seed's MetalLB pool was 192.168.68.230-192.168.68.250.
DEFAULT_POOL_FIRST = ipaddress.IPv4Address("198.51.100.230")
DEFAULT_POOL_LAST = ipaddress.IPv4Address("198.51.100.250")
BRIDGE = "br0"
HOST_INTERFACE = "eth0"
NAMESPACE_PREFIX = "pk-"
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")


class Role(enum.Enum):
    ROUTER = "router"
    CLIENT = "client"
    CONTROL_PLANE = "control-plane"
    WORKER = "worker"


@dataclass(frozen=True)
class Host:
    """One machine on the lab LAN."""

    name: str
    number: int  # the last part of its addresses, as written in decimal: node01 is .21 and ::21
    role: Role

    @property
    def ipv4(self) -> ipaddress.IPv4Address:
        return LAN_IPV4.network_address + self.number

    @property
    def ipv6(self) -> ipaddress.IPv6Address:
        # "::21" for host 21: the decimal digits read as hex, so both families look alike.
        return LAN_IPV6.network_address + int(str(self.number), 16)

    @property
    def mac(self) -> str:
        # Locally administered, unicast, ending in the host number (node01: ...:00:21).
        return f"02:00:00:00:00:{self.number:02d}"

    @property
    def is_kubernetes_node(self) -> bool:
        return self.role in (Role.CONTROL_PLANE, Role.WORKER)


SEED_HOSTS: tuple[Host, ...] = (
    Host("router", 1, Role.ROUTER),
    Host("client", 10, Role.CLIENT),
    Host("master", 20, Role.CONTROL_PLANE),
    Host("node01", 21, Role.WORKER),
    Host("node02", 22, Role.WORKER),
    Host("node03", 23, Role.WORKER),
)


@dataclass(frozen=True)
class Topology:
    """A named lab: its hosts and the namespaces that hold them."""

    lab: str
    hosts: tuple[Host, ...] = SEED_HOSTS

    def __post_init__(self) -> None:
        validate_lab_name(self.lab)

    @property
    def lan_namespace(self) -> str:
        """The namespace holding the bridge that plays the LAN switch."""
        return f"{NAMESPACE_PREFIX}{self.lab}-lan"

    def namespace(self, host: str) -> str:
        return f"{NAMESPACE_PREFIX}{self.lab}-{self.host(host).name}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace of the lab, the LAN's first."""
        return (self.lan_namespace, *(self.namespace(h.name) for h in self.hosts))

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise InvalidInput(f"lab {self.lab!r} has no host {name!r} (hosts: {known})")

    @property
    def gateway(self) -> Host:
        return next(h for h in self.hosts if h.role is Role.ROUTER)

    def bridge_port(self, host: str) -> str:
        """Name of the host's veth end on the LAN bridge (at most 15 characters)."""
        return f"v-{self.host(host).name}"[:15]


def validate_lab_name(name: str) -> None:
    if not LAB_NAME_RE.match(name):
        raise InvalidInput(
            f"invalid lab name {name!r}: use 1-12 lower-case letters and digits, "
            "starting with a letter (it prefixes network namespace names)"
        )


def lab_of_namespace(namespace: str) -> str | None:
    """The lab a namespace name belongs to, or None if it is not a lab namespace."""
    if not namespace.startswith(NAMESPACE_PREFIX):
        return None
    rest = namespace[len(NAMESPACE_PREFIX) :]
    lab, sep, _host = rest.partition("-")
    return lab if sep and LAB_NAME_RE.match(lab) else None
