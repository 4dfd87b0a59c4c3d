"""The lab's BGP side: the `router` host running FRR, BIRD or GoBGP, and pikube's BGP speakers.

Lab glue only (never deployed). `start_router` writes the router's configuration under the
lab's run directory and starts Debian's FRR (zebra, bgpd, bfdd), BIRD 2 or GoBGP in `router`
through the lab supervisor; each router listens passively for node01-03 and installs what it
learns (FRR and BIRD into the router's kernel table, so the client reaches the service IPs
through it; GoBGP keeps its RIB only). `Router.routes()` reads the router's table in one
shape for all three, and `Router.monitor_argv()` is a command that prints a line whenever the
table changes (for measuring announce and withdraw times). `route_client` sends the BGP pool
from the client to the router. `BgpSpeakers` runs `pikube lb bgp-speaker` on nodes with one
manifest directory. With `RouterOptions(upstream=True)` the daemons run in an extra namespace
behind `router` instead (`add_upstream`), one routed hop away from the nodes, for the multihop
and GTSM cells. The routers themselves (configuration, start, reading their tables) and the
lab's BGP numbers are in routers.py.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pikube.errors import PikubeError
from pikube.lab import state
from pikube.lab.hosts.processes import ProcessRecord, TcpListening
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.network.topology import HOST_INTERFACE
from pikube.lab.services import seed_service
from pikube.lab.services.routers import (
    GOBGP_API,
    NODE_ADDRESSES,
    NODE_ASN,
    POOL4,
    POOL6,
    ROUTER_ASN,
    ROUTER_KINDS,
    ROUTERS,
    SPEAKER_METRICS_PORT,
    UPSTREAM,
    UPSTREAM_ADDRESS,
    UPSTREAM_HOP,
    UPSTREAM_LINK,
    UPSTREAM_PORT,
    VIP4,
    VIP6,
    WORKERS,
    Bird,
    Frr,
    GoBgp,
    Router,
    RouterOptions,
    RouterRoute,
    upstream_namespace,
)
from pikube.system import require_commands

# The lab's BGP names live in routers.py; bgp.py keeps offering them to its users.
__all__ = [
    "GOBGP_API",
    "NODE_ADDRESSES",
    "NODE_ASN",
    "POOL4",
    "POOL6",
    "ROUTERS",
    "ROUTER_ASN",
    "ROUTER_KINDS",
    "SPEAKER_METRICS_PORT",
    "UPSTREAM",
    "UPSTREAM_ADDRESS",
    "UPSTREAM_HOP",
    "UPSTREAM_LINK",
    "UPSTREAM_PORT",
    "VIP4",
    "VIP6",
    "WORKERS",
    "Bird",
    "Frr",
    "GoBgp",
    "Router",
    "RouterOptions",
    "RouterRoute",
    "upstream_namespace",
]


def add_upstream(lab: Lab) -> str:
    """The upstream namespace behind `router`, which routes between it and the LAN; returns its
    name. Idempotent. Recorded in the lab's state, so `pikube lab down` removes it (and the link
    with it). IPv4 only: upstream's eth0 has UPSTREAM_ADDRESS and a default route via router's
    end of the link; the nodes reach it through their default gateway, `router`."""
    ns = upstream_namespace(lab)
    with state.locked(lab.name):
        current = lab.require_up()
        if ns not in current.namespaces:
            current.namespaces.append(ns)
            state.save(current)
    if not netns.exists(ns):
        netns.create(ns)
    router_ns = lab.namespace("router")
    with netns.route_socket(ns) as ipr:
        linked = bool(ipr.link_lookup(ifname=HOST_INTERFACE))
    if not linked:
        with netns.route_socket(router_ns) as ipr:
            stale = ipr.link_lookup(ifname=UPSTREAM_PORT)
            if stale:  # its peer's namespace is gone
                ipr.link("del", index=stale[0])
            fd = os.open(netns.path_of(ns), os.O_RDONLY)
            try:
                ipr.link(
                    "add",
                    ifname=UPSTREAM_PORT,
                    kind="veth",
                    peer={"ifname": HOST_INTERFACE, "net_ns_fd": fd},
                )
            finally:
                os.close(fd)
    length = UPSTREAM_LINK.prefixlen
    netns.configure_interface(
        router_ns, UPSTREAM_PORT, mac="02:00:00:00:02:53", addresses=[(str(UPSTREAM_HOP), length)]
    )
    netns.configure_interface(
        ns,
        HOST_INTERFACE,
        mac="02:00:00:00:02:54",
        addresses=[(str(UPSTREAM_ADDRESS), length)],
        gateway4=str(UPSTREAM_HOP),
    )
    return ns


def start_router(lab: Lab, options: RouterOptions) -> Router:
    """Start the router's BGP daemons in `router` (forwarding on), or with `options.upstream`
    in the upstream namespace behind it, per `options.kind`."""
    if options.kind not in ROUTER_KINDS:
        raise PikubeError(f"unknown router {options.kind!r}: choose one of {', '.join(ROUTERS)}")
    require_commands(*{"frr": ("vtysh",), "bird": ("bird",), "gobgp": ("gobgpd",)}[options.kind])
    lab.run(
        "router",
        ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
        check=True,
    )
    if options.upstream:
        add_upstream(lab)
    directory = state.lab_dir(lab.name) / f"router-{options.kind}"
    if directory.exists():
        shutil.rmtree(directory)
    router = ROUTER_KINDS[options.kind](lab, options, directory)
    try:
        router.start()
    except BaseException:
        router.stop()
        raise
    return router


def route_client(lab: Lab) -> None:
    """The client reaches the BGP pool through the router (IPv4 and the IPv6 twin)."""
    router = lab.topology.host("router")
    lab.run("client", ["ip", "route", "replace", str(POOL4), "via", str(router.ipv4)], check=True)
    lab.run(
        "client", ["ip", "-6", "route", "replace", str(POOL6), "via", str(router.ipv6)], check=True
    )


def manifests(
    lab: Lab,
    options: RouterOptions,
    *,
    vip4: ipaddress.IPv4Address | ipaddress.IPv6Address | None = VIP4,
    vip6: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
    endpoint_hosts: Sequence[str] = ("node02",),
    external_traffic_policy: str = "Cluster",
    communities: Sequence[str] = (),
    local_pref: int | None = None,
    bfd_profile: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The seed's nginx service, published over BGP: a pool in the BGP range, a BGPPeer for
    the router (as `options` configures it), one BGPAdvertisement, the endpoints, the Nodes."""
    ips = [str(ip) for ip in (vip4, vip6) if ip is not None]
    docs = seed_service.manifests(
        lab.topology,
        endpoint_hosts=list(endpoint_hosts),
        external_traffic_policy=external_traffic_policy,
    )
    out: list[dict[str, Any]] = []
    for doc in docs:
        kind = doc["kind"]
        if kind in ("IPAddressPool", "L2Advertisement"):
            continue
        if kind == "Service":
            spec = doc["spec"]
            spec.pop("loadBalancerIP", None)
            doc["metadata"].setdefault("annotations", {})["metallb.io/loadBalancerIPs"] = ",".join(
                ips
            )
            if len(ips) == 2:
                spec["ipFamilyPolicy"] = "PreferDualStack"
                spec["ipFamilies"] = ["IPv4", "IPv6"]
            elif vip6 is not None:
                spec["ipFamilies"] = ["IPv6"]
        out.append(doc)
    peer_spec: dict[str, Any] = {
        "myASN": options.node_asn,
        "peerASN": ROUTER_ASN,
        "peerAddress": str(options.address(lab)),
        "holdTime": f"{options.hold_time_s}s",
    }
    if options.password:
        peer_spec["password"] = options.password
    if options.multihop:
        peer_spec["ebgpMultiHop"] = True
    if options.graceful_restart:
        peer_spec["enableGracefulRestart"] = True
    if bfd_profile is not None:
        peer_spec["bfdProfile"] = bfd_profile["metadata"]["name"]
        out.append(bfd_profile)
    adv_spec: dict[str, Any] = {"ipAddressPools": ["bgp-pool"]}
    if communities:
        adv_spec["communities"] = list(communities)
    if local_pref is not None:
        adv_spec["localPref"] = local_pref
    out += [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "bgp-pool", "namespace": "metallb-system"},
            "spec": {"addresses": [str(POOL4), f"{POOL6.network_address}/120"]},
        },
        {
            "apiVersion": "metallb.io/v1beta2",
            "kind": "BGPPeer",
            "metadata": {"name": "router", "namespace": "metallb-system"},
            "spec": peer_spec,
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "BGPAdvertisement",
            "metadata": {"name": "bgp-adv", "namespace": "metallb-system"},
            "spec": adv_spec,
        },
    ]
    return out


@dataclass
class BgpSpeakers:
    """pikube's BGP speakers on lab nodes, sharing one manifest directory."""

    lab: Lab
    directory: Path
    nodes: tuple[str, ...] = WORKERS
    extra_args: tuple[str, ...] = ()
    records: dict[str, ProcessRecord] = field(default_factory=dict)

    @property
    def manifests(self) -> Path:
        return self.directory / "manifests"

    def write(self, docs: Sequence[dict[str, Any]]) -> None:
        seed_service.write_manifests(self.manifests, docs)

    def argv(self, node: str) -> list[str]:
        return [
            sys.executable, "-m", "pikube", "lb", "bgp-speaker",
            "--node", node,
            "--source", f"dir:{self.manifests}",
            "--metrics-port", str(SPEAKER_METRICS_PORT),
            "--connect-retry-s", "0.2",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, node: str) -> ProcessRecord:
        record = self.lab.start(
            node,
            "bgp-speaker",
            self.argv(node),
            ready=TcpListening(SPEAKER_METRICS_PORT),
            ready_timeout_s=20,
        )
        self.records[node] = record
        return record

    def start_all(self) -> None:
        for node in self.nodes:
            self.start(node)

    def stop(self, node: str, timeout_s: float = 5.0) -> int | None:
        record = self.records.pop(node)
        return self.lab.stop(record, timeout_s)

    def kill(self, node: str) -> None:
        record = self.records.pop(node)
        self.lab.supervisor.signal(record, 9)
        self.lab.supervisor.wait(record, 5.0)

    def status(self, node: str) -> dict[str, Any]:
        body = seed_service.http_body(self.lab, node, SPEAKER_METRICS_PORT, "/status")
        result: dict[str, Any] = json.loads(body)
        return result


def link(lab: Lab, host: str, up: bool) -> None:
    """Pull or plug a host's cable (its eth0, seen from the host), over netlink from this
    process: no program to start, so a failure happens when the caller says."""
    netns.set_link_state(lab.namespace(host), HOST_INTERFACE, up=up)


def monitor(lab: Lab, router: Router) -> subprocess.Popen[str]:
    """Start the router's table monitor (lines on stdout at every change)."""
    return subprocess.Popen(
        ["ip", "netns", "exec", router.namespace, *router.monitor_argv()],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=lab.environment(),
    )
