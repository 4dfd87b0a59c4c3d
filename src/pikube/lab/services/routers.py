"""The lab's routers: Debian's FRR (zebra, bgpd, bfdd), BIRD 2 and GoBGP, configured and
started in the lab's `router` namespace (or the upstream one behind it), and read back in one
shape for all three (`Router.routes()`, `Router.monitor_argv()`).

Lab glue only (never deployed); bgp.py starts them and runs pikube's BGP speakers against them.
The lab's BGP numbers (ASNs, the pool, the nodes' addresses) are declared here once.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pikube.errors import PikubeError
from pikube.lab.hosts.processes import FileExists, ProcessRecord, TcpListening
from pikube.lab.lab import Lab
from pikube.lab.network.topology import LAN_IPV4, NAMESPACE_PREFIX

ROUTER_ASN = 64496
NODE_ASN = 64497
POOL4 = ipaddress.ip_network("203.0.113.0/24")
POOL6 = ipaddress.ip_network("2001:db8:113::/64")  # the lab's IPv6 twin of the BGP pool
VIP4 = ipaddress.ip_address("203.0.113.10")
VIP6 = ipaddress.ip_address("2001:db8:113::10")
WORKERS = ("node01", "node02", "node03")
NODE_ADDRESSES = {"node01": "198.51.100.21", "node02": "198.51.100.22", "node03": "198.51.100.23"}
ROUTERS = ("frr", "bird", "gobgp")
SPEAKER_METRICS_PORT = 7473
GOBGP_API = "127.0.0.1:50051"
# The upstream router: a namespace behind `router`, which routes between it and the LAN, so
# BGP from the nodes crosses one routed hop. The link between the two is a /30 carved from
# the end of the BGP range (no service uses it).
UPSTREAM = "upstream"
UPSTREAM_LINK = ipaddress.ip_network("203.0.113.252/30")
UPSTREAM_HOP = ipaddress.ip_address("203.0.113.253")  # router's end
UPSTREAM_ADDRESS = ipaddress.ip_address("203.0.113.254")  # the upstream router's
UPSTREAM_PORT = "v-upstream"  # router's interface towards it


@dataclass(frozen=True)
class RouterOptions:
    """How the lab's router peers with the nodes (one setting for all nodes)."""

    kind: str = "frr"
    ibgp: bool = False  # the nodes use the router's AS
    password: str | None = None
    multihop: bool = False
    graceful_restart: bool = False
    restart_time_s: int = 120
    bfd_interval_ms: int | None = None  # None: no BFD
    bfd_multiplier: int = 3
    hold_time_s: int = 9
    multipath: bool = True
    nodes: tuple[str, ...] = WORKERS
    # FRR only: zebra's route work-queue hold (`zebra work-queue MS`; FRR's default 10 ms), and
    # whether bgpd and zebra log updates and route installs with microsecond timestamps.
    frr_zebra_work_queue_ms: int | None = None
    frr_timeline: bool = False
    # The BGP daemons run in the upstream namespace, one routed hop (`router`) away from the
    # nodes (see add_upstream); ttl_security_hops: GTSM (RFC 5082), accepting packets that
    # crossed at most that many hops (FRR ttl-security hops, BIRD ttl security, GoBGP ttl-min).
    upstream: bool = False
    ttl_security_hops: int | None = None

    @property
    def node_asn(self) -> int:
        return ROUTER_ASN if self.ibgp else NODE_ASN

    def address(self, lab: Lab) -> ipaddress.IPv4Address:
        """Where the nodes reach the BGP daemons."""
        if self.upstream:
            return ipaddress.IPv4Address(UPSTREAM_ADDRESS)
        return lab.topology.host("router").ipv4


@dataclass(frozen=True)
class RouterRoute:
    prefix: str
    next_hops: tuple[str, ...]
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    local_pref: int | None = None
    stale: bool = False


@dataclass
class Router:
    lab: Lab
    options: RouterOptions
    directory: Path
    records: list[ProcessRecord] = field(default_factory=list)

    # -- per implementation ------------------------------------------------------------------

    def start(self) -> None:
        raise NotImplementedError

    def routes(self) -> dict[str, RouterRoute]:
        raise NotImplementedError

    def sessions(self) -> dict[str, bool]:
        """Node address -> whether its session is Established."""
        raise NotImplementedError

    def monitor_argv(self) -> list[str]:
        raise NotImplementedError

    def has_bfd(self) -> bool:
        return True

    # -- common ------------------------------------------------------------------------------

    def node_addresses(self) -> list[str]:
        topo = self.lab.topology
        return [str(topo.host(n).ipv4) for n in self.options.nodes]

    @property
    def address(self) -> ipaddress.IPv4Address:
        return self.options.address(self.lab)

    @property
    def host(self) -> str:
        """The lab host the daemons run in (`router`, or the upstream namespace)."""
        return UPSTREAM if self.options.upstream else "router"

    @property
    def namespace(self) -> str:
        return (
            upstream_namespace(self.lab) if self.options.upstream else self.lab.namespace("router")
        )

    def _start(
        self, name: str, argv: Sequence[str], ready: FileExists | TcpListening
    ) -> ProcessRecord:
        if not self.options.upstream:
            return self.lab.start("router", name, argv, ready=ready)
        self.lab.require_up()
        return self.lab.supervisor.start(UPSTREAM, self.namespace, name, argv, ready=ready)

    def stop(self) -> None:
        for record in reversed(self.records):
            self.lab.stop(record)
        self.records.clear()

    def wait(
        self, condition: Callable[[Router], bool], timeout_s: float = 10.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            if time.monotonic() > deadline:
                raise PikubeError(
                    f"{self.options.kind} router: {what or 'condition'} not reached in "
                    f"{timeout_s:g} s; routes {sorted(self.routes())}, sessions {self.sessions()}"
                )
            time.sleep(0.05)

    def _run(self, argv: Sequence[str]) -> str:
        if not self.options.upstream:
            return self.lab.run("router", argv, timeout_s=10, check=True).stdout
        result = subprocess.run(
            ["ip", "netns", "exec", self.namespace, *argv],
            capture_output=True,
            text=True,
            timeout=10,
            env=self.lab.environment(),
            check=False,
        )
        if result.returncode != 0:
            raise PikubeError(
                f"`{' '.join(argv)}` on {UPSTREAM} failed with status {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result.stdout


class Frr(Router):
    """FRR 8.4: zebra + bgpd (+ bfdd), each with explicit paths, no /etc/frr needed."""

    def _log_lines(self, daemon: str, debugs: Sequence[str]) -> list[str]:
        if not self.options.frr_timeline:
            return []
        return [
            f"log file {self.directory / (daemon + '.log')} debugging",
            "log timestamp precision 6",
            *debugs,
        ]

    def zebra_config(self) -> str:
        lines = ["hostname router"]
        lines += self._log_lines("zebra", ["debug zebra rib detailed", "debug zebra kernel"])
        if self.options.upstream:
            # The nodes' LAN is behind the hop, reached by the default route; a multihop
            # session's next hop must resolve through it (FRR ignores default routes for that).
            lines.append("ip nht resolve-via-default")
        if self.options.frr_zebra_work_queue_ms is not None:
            lines.append(f"zebra work-queue {self.options.frr_zebra_work_queue_ms}")
        return "\n".join(lines) + "\n"

    def timeline_logs(self) -> tuple[str, str]:
        """bgpd's and zebra's logs (with frr_timeline), or empty strings."""
        out = []
        for daemon in ("bgpd", "zebra"):
            path = self.directory / f"{daemon}.log"
            out.append(path.read_text(errors="replace") if path.exists() else "")
        return out[0], out[1]

    def config(self) -> str:
        o = self.options
        lines = [
            *self._log_lines("bgpd", ["debug bgp updates in", "debug bgp zebra"]),
            "frr defaults traditional",
            "hostname router",
            f"router bgp {ROUTER_ASN}",
            f" bgp router-id {self.address}",
            " no bgp ebgp-requires-policy",
            " no bgp default ipv4-unicast",
            " bgp bestpath as-path multipath-relax",
            " neighbor NODES peer-group",
            f" neighbor NODES remote-as {o.node_asn}",
            " neighbor NODES passive",
            f" neighbor NODES timers {max(1, o.hold_time_s // 3)} {o.hold_time_s}",
        ]
        if o.password:
            lines.append(f" neighbor NODES password {o.password}")
        if o.ttl_security_hops is not None:
            lines.append(f" neighbor NODES ttl-security hops {o.ttl_security_hops}")
            if o.upstream:
                # Without ebgp-multihop, FRR wants an eBGP next hop on a connected network.
                lines.append(" neighbor NODES disable-connected-check")
        elif o.multihop:
            lines.append(" neighbor NODES ebgp-multihop 255")
        if o.graceful_restart:
            lines += [
                " bgp graceful-restart",
                f" bgp graceful-restart restart-time {o.restart_time_s}",
            ]
        if o.bfd_interval_ms:
            lines.append(" neighbor NODES bfd profile nodes")
        for address in self.node_addresses():
            lines.append(f" neighbor {address} peer-group NODES")
        for af in ("ipv4", "ipv6"):
            lines += [f" address-family {af} unicast", "  neighbor NODES activate"]
            if o.multipath:
                lines.append(f"  maximum-paths {'ibgp ' if o.ibgp else ''}8")
            lines.append(" exit-address-family")
        return "\n".join(lines) + "\n"

    def bfd_config(self) -> str:
        """bfdd reads its own file: the profile the BGP neighbors name."""
        o = self.options
        if not o.bfd_interval_ms:
            return ""
        lines = [
            "bfd",
            " profile nodes",
            f"  receive-interval {o.bfd_interval_ms}",
            f"  transmit-interval {o.bfd_interval_ms}",
            f"  detect-multiplier {o.bfd_multiplier}",
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        (d / "zebra.conf").write_text(self.zebra_config())
        (d / "bgpd.conf").write_text(self.config())
        (d / "bfdd.conf").write_text(self.bfd_config())
        shutil.chown(d, "frr", "frr")
        for path in d.iterdir():
            shutil.chown(path, "frr", "frr")
        daemons = ["zebra", "bgpd"] + (["bfdd"] if self.options.bfd_interval_ms else [])
        for daemon in daemons:
            argv = [
                f"/usr/lib/frr/{daemon}",
                "-f", str(d / f"{daemon}.conf"),
                "-i", str(d / f"{daemon}.pid"),
                "-z", str(d / "zserv.api"),
                "--vty_socket", str(d),
            ]  # fmt: skip
            ready = (
                FileExists(str(d / "zserv.api"))
                if daemon == "zebra"
                else FileExists(str(d / f"{daemon}.vty"))
            )
            self.records.append(self._start(daemon, argv, ready))

    def vtysh(self, *commands: str) -> str:
        argv = ["vtysh", "--vty_socket", str(self.directory)]
        for command in commands:
            argv += ["-c", command]
        return self._run(argv)

    def routes(self) -> dict[str, RouterRoute]:
        found: dict[str, RouterRoute] = {}
        for af in ("ipv4", "ipv6"):
            table = json.loads(self.vtysh(f"show bgp {af} unicast json detail") or "{}")
            for prefix, paths in (table.get("routes") or {}).items():
                hops, communities, large, prefs, stale = [], set(), set(), set(), False
                for path in paths:
                    if not path.get("valid"):
                        continue
                    hops += [
                        h["ip"] for h in path.get("nexthops", []) if h.get("scope") != "link-local"
                    ]
                    communities.update((path.get("community") or {}).get("list", []))
                    large.update((path.get("largeCommunity") or {}).get("list", []))
                    if "locPrf" in path:
                        prefs.add(path["locPrf"])
                    stale = stale or bool(path.get("stale"))
                found[prefix] = RouterRoute(
                    prefix,
                    tuple(sorted(set(hops))),
                    tuple(sorted(communities)),
                    tuple(sorted(large)),
                    max(prefs) if prefs else None,
                    stale,
                )
        return found

    def sessions(self) -> dict[str, bool]:
        summary = json.loads(self.vtysh("show bgp summary json") or "{}")
        peers = (summary.get("ipv4Unicast") or {}).get("peers", {})
        return {addr: p.get("state") == "Established" for addr, p in peers.items()}

    def monitor_argv(self) -> list[str]:
        return ["ip", "-oneline", "monitor", "route"]


class Bird(Router):
    """BIRD 2.0: one bgp protocol per node, kernel export with merged paths (ECMP)."""

    @property
    def socket_path(self) -> Path:
        return self.directory / "bird.ctl"

    def config(self) -> str:
        o = self.options
        router = self.address
        options = [f"local {router} as {ROUTER_ASN};", f"hold time {o.hold_time_s};", "passive on;"]
        # BIRD waits 60 s after a session error before it accepts the peer again; the lab's
        # failure scenarios bring nodes back at once.
        options += ["connect retry time 1;", "error wait time 1, 5;"]
        if o.password:
            options.append(f'password "{o.password}";')
        # BIRD counts the hops of a multihop session in its TTL and in GTSM's expected TTL:
        # the nodes are 2 hops away behind the upstream hop (1 with GTSM's hops 1 asked for).
        hops = o.ttl_security_hops or (2 if o.upstream else None)
        if o.multihop or o.ttl_security_hops is not None:
            options.append(f"multihop {hops};" if hops else "multihop;")
        else:
            options.append("direct;")
        if o.ttl_security_hops is not None:
            options.append("ttl security on;")
        if o.graceful_restart:
            options += ["graceful restart on;", f"graceful restart time {o.restart_time_s};"]
        if o.bfd_interval_ms:
            options.append("bfd on;")
        channels = (
            "ipv4 { import all; export none; };\n"
            "  ipv6 { import all; export none; extended next hop off; };"
        )
        text = [
            f"router id {router};",
            "protocol device { scan time 10; }",
            'protocol direct { ipv4; ipv6; interface "eth0"; }',
            "protocol kernel k4 { ipv4 { import none; export all; }; merge paths on; }",
            "protocol kernel k6 { ipv6 { import none; export all; }; merge paths on; }",
            "template bgp nodes {\n  " + "\n  ".join(options) + "\n  " + channels + "\n}",
        ]
        if o.upstream:
            # A multihop session's next hop resolves through BIRD's own table.
            text.append(f"protocol static {{ ipv4; route {LAN_IPV4} via {UPSTREAM_HOP}; }}")
        if o.bfd_interval_ms:
            text.append(
                'protocol bfd { interface "eth0" { '
                f"min rx interval {o.bfd_interval_ms} ms; min tx interval {o.bfd_interval_ms} ms; "
                f"multiplier {o.bfd_multiplier}; }}; }}"
            )
        for name, address in zip(o.nodes, self.node_addresses(), strict=True):
            text.append(f"protocol bgp {name} from nodes {{ neighbor {address} as {o.node_asn}; }}")
        return "\n".join(text) + "\n"

    def start(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        (d / "bird.conf").write_text(self.config())
        argv = [
            "bird", "-f", "-c", str(d / "bird.conf"), "-s", str(self.socket_path),
            "-P", str(d / "bird.pid"),
        ]  # fmt: skip
        self.records.append(self._start("bird", argv, FileExists(str(self.socket_path))))

    def birdc(self, command: str) -> str:
        return self._run(["birdc", "-s", str(self.socket_path), command])

    def routes(self) -> dict[str, RouterRoute]:
        found: dict[str, RouterRoute] = {}
        current: dict[str, Any] | None = None
        text = self.birdc("show route all where source = RTS_BGP")
        for line in text.splitlines():
            parts = line.split()
            if not parts:
                continue
            if line[0] not in " \t" and "/" in parts[0]:
                current = {
                    "prefix": parts[0], "hops": [], "via": [], "comm": [], "large": [], "pref": None
                }  # fmt: skip
                found[parts[0]] = current  # type: ignore[assignment]
                continue
            if current is None:
                continue
            stripped = line.strip()
            if stripped.startswith("unicast [") or (parts and parts[0].startswith("unicast")):
                continue
            if stripped.startswith("via "):
                current["via"].append(parts[1])
            elif stripped.startswith("BGP.next_hop:"):
                # What the node announced; `via` is where BIRD resolved it (the hop, for a
                # multihop session behind a router).
                current["hops"].append(parts[1])
            elif stripped.startswith("BGP.community:"):
                current["comm"] += [c.strip("()").replace(",", ":") for c in parts[1:]]
            elif stripped.startswith("BGP.large_community:"):
                current["large"] += [
                    c.strip("()").replace(", ", ":").replace(",", ":")
                    for c in " ".join(parts[1:]).split(") (")
                ]
            elif stripped.startswith("BGP.local_pref:"):
                current["pref"] = int(parts[1])
        out = {}
        for prefix, raw in found.items():
            entry: dict[str, Any] = raw  # type: ignore[assignment]
            hops = tuple(
                sorted({h for h in entry["hops"] or entry["via"] if not h.startswith("fe80")})
            )
            out[prefix] = RouterRoute(
                prefix,
                hops,
                tuple(sorted(set(entry["comm"]))),
                tuple(sorted({c.strip("() ") for c in entry["large"]})),
                entry["pref"],
            )
        return out

    def sessions(self) -> dict[str, bool]:
        text = self.birdc("show protocols")
        states = {}
        for name, address in zip(self.options.nodes, self.node_addresses(), strict=True):
            line = next((ln for ln in text.splitlines() if ln.startswith(name + " ")), "")
            states[address] = "Established" in line
        return states

    def monitor_argv(self) -> list[str]:
        return ["ip", "-oneline", "monitor", "route"]


class GoBgp(Router):
    """GoBGP 3.10: gobgpd with its gRPC API on the router's own loopback; RIB only."""

    def config(self) -> str:
        o = self.options
        router = self.address
        text = ["[global.config]", f"  as = {ROUTER_ASN}", f'  router-id = "{router}"']
        for address in self.node_addresses():
            text += [
                "[[neighbors]]",
                "  [neighbors.config]",
                f'    neighbor-address = "{address}"',
                f"    peer-as = {o.node_asn}",
            ]
            if o.password:
                text.append(f'    auth-password = "{o.password}"')
            text += [
                "  [neighbors.timers.config]",
                f"    hold-time = {o.hold_time_s}",
                f"    keepalive-interval = {max(1, o.hold_time_s // 3)}",
                "    connect-retry = 1",
                "  [neighbors.transport.config]",
                "    passive-mode = true",
            ]
            if o.ttl_security_hops is not None:
                text += [
                    "  [neighbors.ttl-security.config]",
                    "    enabled = true",
                    f"    ttl-min = {256 - o.ttl_security_hops}",
                ]
            elif o.multihop:
                text += [
                    "  [neighbors.ebgp-multihop.config]",
                    "    enabled = true",
                    "    multihop-ttl = 255",
                ]
            if o.graceful_restart:
                text += [
                    "  [neighbors.graceful-restart.config]",
                    "    enabled = true",
                    f"    restart-time = {o.restart_time_s}",
                ]
            for family in ("ipv4-unicast", "ipv6-unicast"):
                text += [
                    "  [[neighbors.afi-safis]]",
                    "    [neighbors.afi-safis.config]",
                    f'      afi-safi-name = "{family}"',
                ]
                if o.graceful_restart:
                    text += [
                        "    [neighbors.afi-safis.mp-graceful-restart.config]",
                        "      enabled = true",
                    ]
        return "\n".join(text) + "\n"

    def start(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        (d / "gobgpd.toml").write_text(self.config())
        # The loopback of a fresh namespace is down; the API listens on it.
        self._run(["ip", "link", "set", "lo", "up"])
        argv = [
            "gobgpd", "-f", str(d / "gobgpd.toml"), "--api-hosts", GOBGP_API,
            "--pprof-disable", "--log-plain",
        ]  # fmt: skip
        self.records.append(self._start("gobgpd", argv, TcpListening(50051)))

    def gobgp(self, *args: str) -> str:
        host, port = GOBGP_API.split(":")
        return self._run(["gobgp", "-u", host, "-p", port, *args])

    def has_bfd(self) -> bool:
        return False  # GoBGP 3.10 has no BFD

    def routes(self) -> dict[str, RouterRoute]:
        found: dict[str, RouterRoute] = {}
        for af in ("ipv4", "ipv6"):
            table = json.loads(self.gobgp("global", "rib", "-a", af, "-j") or "{}")
            for prefix, paths in (table or {}).items():
                hops: set[str] = set()
                comm: set[str] = set()
                large: set[str] = set()
                prefs: set[int] = set()
                stale = False
                for path in paths:
                    stale = stale or bool(path.get("stale"))
                    for attr in path.get("attrs", []):
                        kind = attr.get("type")
                        if kind == 3:
                            hops.add(attr["nexthop"])
                        elif kind == 14:
                            hops.update(h for h in attr.get("nexthop", "").split(",") if h)
                        elif kind == 8:
                            comm.update(
                                f"{c >> 16}:{c & 0xFFFF}" for c in attr.get("communities", [])
                            )
                        elif kind == 32:
                            large.update(
                                f"{v['ASN']}:{v['LocalData1']}:{v['LocalData2']}"
                                for v in attr.get("value", [])
                            )
                        elif kind == 5:
                            prefs.add(attr["value"])
                found[prefix] = RouterRoute(
                    prefix,
                    tuple(sorted(h for h in hops if not h.startswith("fe80"))),
                    tuple(sorted(comm)),
                    tuple(sorted(large)),
                    max(prefs) if prefs else None,
                    stale,
                )
        return found

    def sessions(self) -> dict[str, bool]:
        peers = json.loads(self.gobgp("neighbor", "-j") or "[]")
        return {
            p["conf"]["neighbor_address"]: p.get("state", {}).get("session_state") == 6
            for p in peers
        }

    def monitor_argv(self) -> list[str]:
        host, port = GOBGP_API.split(":")
        return ["gobgp", "-u", host, "-p", port, "monitor", "global", "rib", "-j"]


ROUTER_KINDS: dict[str, type[Router]] = {"frr": Frr, "bird": Bird, "gobgp": GoBgp}


def upstream_namespace(lab: Lab) -> str:
    return f"{NAMESPACE_PREFIX}{lab.name}-{UPSTREAM}"
