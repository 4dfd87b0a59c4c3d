"""The connection bridge: keep TCP connections alive across a planned handover.

When a service IP moves from a live node A to node B (SIGTERM, drain, rolling upgrade), clients
switch to B the moment B's gratuitous ARP arrives, but connections opened through A have their
state (conntrack, kube-proxy's NAT) on A. Packets of such a connection reaching B look new to B;
B would NAT them afresh and the backend would answer with a reset. So for a while after a
handover, B sends every TCP packet for the IP that its conntrack does not know and that is not
a SYN (the middle of somebody else's connection) on to A, unchanged, with nftables' `dup`, and
drops its own copy. A still knows the connection and forwards it as before. New connections
(SYN) are B's own from the first packet.

Only for handovers from a node that is alive: after a crash there is nobody to bridge to, and
a reset makes clients reconnect sooner than silence would. IPv4 only for now (heartbeats carry
the peer's IPv4 address; its IPv6 address is not known).

`render` is pure; `apply` runs `nft -f -` (the nftables package) in the speaker's namespace.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

TABLE = "pikube-handover"


@dataclass(frozen=True)
class BridgeEntry:
    vip: str
    previous_owner: str  # the old owner's IPv4 address on `interface`
    interface: str


def render(entries: Sequence[BridgeEntry], table: str = TABLE) -> str:
    """An nft script replacing the bridge table with `entries` (or deleting it if none)."""
    lines = [f"table ip {table} {{", "}", f"delete table ip {table}"]
    rules = []
    for entry in sorted(entries, key=lambda e: (e.vip, e.previous_owner)):
        vip = ipaddress.ip_address(entry.vip)
        owner = ipaddress.ip_address(entry.previous_owner)
        if vip.version != 4 or owner.version != 4:
            continue
        rules.append(
            f"\t\tip daddr {vip} meta l4proto tcp ct state new,invalid "
            f'tcp flags & syn == 0 dup to {owner} device "{entry.interface}" drop'
        )
    if rules:
        lines += [
            f"table ip {table} {{",
            "\tchain prerouting {",
            # After conntrack (-200), before kube-proxy's DNAT (-100).
            "\t\ttype filter hook prerouting priority -150; policy accept;",
            *rules,
            "\t}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def apply(entries: Sequence[BridgeEntry], table: str = TABLE) -> str | None:
    """Install the entries; None on success, else why not (nft missing or failing)."""
    try:
        result = subprocess.run(
            ["nft", "-f", "-"],
            input=render(entries, table),
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except FileNotFoundError:
        return "nft is not installed (Debian package nftables)"
    except subprocess.TimeoutExpired:
        return "nft did not finish within 5 s"
    if result.returncode != 0:
        return (result.stderr or result.stdout).strip().splitlines()[-1]
    return None
