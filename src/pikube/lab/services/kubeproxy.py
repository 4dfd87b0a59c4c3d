"""What kube-proxy (iptables mode) does for a LoadBalancer Service, written as nftables rules.

Owns: a pure renderer (services -> an nft ruleset for one node) and a thin adapter that
applies or removes that ruleset atomically in a lab host (`nft -f -`), always in its own table
`inet pikube-kube-proxy`, so it never touches another table.

What the rules do on a node, as kube-proxy's KUBE-SERVICES / KUBE-SVC / KUBE-SEP chains do:
- traffic to VIP:port (arriving, or sent by the node itself) is DNATed to one backend,
  chosen at random (`numgen`, kube-proxy's `statistic --mode random`);
- when the chosen backend lives on another host, the packet is marked and masqueraded on the
  way out (kube-proxy's KUBE-MARK-MASQ 0x4000), so the backend's reply comes back through this
  node, which undoes both translations;
- a service without backends is rejected (kube-proxy's "has no endpoints" REJECT).

It must not put the VIP on any interface: the node accepts VIP traffic only through DNAT, so
the kernel never answers ARP or NDP for it; answering is the load balancer's job alone.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pikube.lab.lab import Lab
from pikube.system import require_commands

TABLE = "pikube-kube-proxy"
MASQUERADE_MARK = 0x4000  # kube-proxy's KUBE-MARK-MASQ bit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Protocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True)
class Backend:
    """One ready endpoint of a service."""

    address: Address
    port: int


@dataclass(frozen=True)
class LoadBalancerService:
    """One VIP:port of a LoadBalancer Service and the endpoints behind it."""

    name: str  # namespace/name, shown in rule comments
    vip: Address
    port: int
    backends: tuple[Backend, ...]
    protocol: Protocol = Protocol.TCP

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"service {self.name}: invalid port {self.port}")
        for b in self.backends:
            if b.address.version != self.vip.version:
                raise ValueError(
                    f"service {self.name}: backend {b.address} is IPv{b.address.version} "
                    f"but the VIP {self.vip} is IPv{self.vip.version}"
                )
            if not 0 < b.port < 65536:
                raise ValueError(f"service {self.name}: backend {b.address} has port {b.port}")


def _family(address: Address) -> str:
    return "ip" if address.version == 4 else "ip6"


def _endpoint(address: Address, port: int) -> str:
    return f"{address}:{port}" if address.version == 4 else f"[{address}]:{port}"


def _comment(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def render_ruleset(
    services: Sequence[LoadBalancerService],
    local_addresses: Iterable[Address],
    table: str = TABLE,
) -> str:
    """The nft script that makes one node forward every service's traffic to its backends.

    `local_addresses` are the node's own addresses: backends there need no masquerade. The
    script replaces the whole table in one transaction (create-if-missing, delete, define), so
    applying it twice, or applying a changed one, never leaves a half-updated table.
    """
    local = set(local_addresses)
    seen: set[tuple[Address, int, Protocol]] = set()
    for svc in services:
        key = (svc.vip, svc.port, svc.protocol)
        if key in seen:
            raise ValueError(
                f"two services claim {svc.protocol.value} {_endpoint(svc.vip, svc.port)}"
            )
        seen.add(key)

    dispatch: list[str] = []
    unserved: list[str] = []
    chains: list[str] = []
    for index, svc in enumerate(services):
        match = f"{_family(svc.vip)} daddr {svc.vip} {svc.protocol.value} dport {svc.port}"
        comment = _comment(f"{svc.name} {svc.protocol.value}/{svc.port}")
        if not svc.backends:
            unserved.append(f"\t\t{match} reject comment {comment}")
            continue
        svc_chain = f"svc-{index}"
        dispatch.append(f"\t\t{match} jump {svc_chain} comment {comment}")
        sep_chains = [f"sep-{index}-{n}" for n in range(len(svc.backends))]
        if len(sep_chains) == 1:
            pick = f"jump {sep_chains[0]}"
        else:
            targets = ", ".join(f"{n} : jump {c}" for n, c in enumerate(sep_chains))
            pick = f"numgen random mod {len(sep_chains)} vmap {{ {targets} }}"
        chains.append(_chain(svc_chain, [pick]))
        for sep, backend in zip(sep_chains, svc.backends, strict=True):
            rules = []
            if backend.address not in local:
                rules.append(f"meta mark set meta mark | {MASQUERADE_MARK:#010x}")
            rules.append(
                f"meta l4proto {svc.protocol.value} "
                f"dnat {_family(backend.address)} to {_endpoint(backend.address, backend.port)}"
            )
            chains.append(_chain(sep, rules))

    mark = f"{MASQUERADE_MARK:#010x}"
    lines = [
        f"table inet {table} {{",
        "}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        _chain(
            "prerouting",
            ["type nat hook prerouting priority dstnat; policy accept;", "jump services"],
        ),
        # Node-local clients reach services too (kube-proxy hooks OUTPUT as well).
        _chain("output", ["type nat hook output priority -100; policy accept;", "jump services"]),
        _chain(
            "postrouting",
            [
                "type nat hook postrouting priority srcnat; policy accept;",
                f"meta mark & {mark} == {mark} masquerade",
            ],
        ),
        _chain("services", [line.strip() for line in dispatch]),
        # Reject is not allowed in nat chains: services without endpoints are refused here.
        _chain(
            "input",
            ["type filter hook input priority filter; policy accept;", "jump no-endpoints"],
        ),
        _chain(
            "forward",
            ["type filter hook forward priority filter; policy accept;", "jump no-endpoints"],
        ),
        _chain("no-endpoints", [line.strip() for line in unserved]),
        *chains,
        "}",
    ]
    return "\n".join(lines) + "\n"


def _chain(name: str, rules: Sequence[str]) -> str:
    body = "".join(f"\t\t{rule}\n" for rule in rules)
    return f"\tchain {name} {{\n{body}\t}}"


def removal_script(table: str = TABLE) -> str:
    """The nft script that removes the table, whether or not it exists, in one transaction."""
    return f"table inet {table} {{\n}}\ndelete table inet {table}\n"


# -- adapter --------------------------------------------------------------------------------


def apply(lab: Lab, host: str, services: Sequence[LoadBalancerService]) -> None:
    """Install (or replace) the service rules in one lab host, atomically."""
    require_commands("nft")
    h = lab.topology.host(host)
    script = render_ruleset(services, (h.ipv4, h.ipv6))
    lab.run(host, ["nft", "-f", "-"], input_text=script, check=True)


def remove(lab: Lab, host: str) -> None:
    """Remove the service rules from a lab host (nothing else in its ruleset changes)."""
    require_commands("nft")
    lab.run(host, ["nft", "-f", "-"], input_text=removal_script(), check=True)


def ruleset(lab: Lab, host: str) -> str:
    """The host's current service table as nft prints it ('' when there is none)."""
    result = lab.run(host, ["nft", "list", "table", "inet", TABLE])
    return result.stdout if result.returncode == 0 else ""
