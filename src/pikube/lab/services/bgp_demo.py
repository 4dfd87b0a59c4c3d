"""The BGP story in a lab: FRR in `router` learns the service IP from node01-03 (ECMP), the
client gets nginx through it, then a node dies and BFD takes it out of the route.

The steps return plain values; `pikube lab demo --mode bgp` prints them. Real programs only:
FRR (zebra, bgpd, bfdd), pikube's BGP speakers, nginx, kube-proxy-style nftables rules.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

from pikube.bench.bgp import Watch
from pikube.lab import state
from pikube.lab.lab import Lab
from pikube.lab.services import bgp, seed_service
from pikube.lab.services.bgp import VIP4, BgpSpeakers, Frr, RouterOptions
from pikube.lab.services.demo import get_from_client

BACKEND = "master"  # never announces, so a node's crash does not take the service with it
BFD_INTERVAL_MS = 100


@dataclass(frozen=True)
class BgpPublished:
    table: str  # the router's BGP table for the service IP (vtysh)
    kernel_route: str  # the router's forwarding entry (ip route)
    next_hops: tuple[str, ...]
    http_status: int
    http_ms: float
    welcome_page: bool


@dataclass(frozen=True)
class BgpFailure:
    node: str
    withdrawal_ms: float
    table: str
    kernel_route: str
    next_hops: tuple[str, ...]
    http_status: int


@dataclass
class BgpDemo:
    lab: Lab
    router: Frr | None = None
    speakers: BgpSpeakers | None = None
    watch: Watch | None = None

    def publish(self) -> BgpPublished:
        options = RouterOptions(kind="frr", bfd_interval_ms=BFD_INTERVAL_MS, hold_time_s=9)
        router = bgp.start_router(self.lab, options)
        assert isinstance(router, Frr)
        self.router = router
        bgp.route_client(self.lab)
        profile = {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "BFDProfile",
            "metadata": {"name": "fast", "namespace": "metallb-system"},
            "spec": {
                "receiveInterval": BFD_INTERVAL_MS,
                "transmitInterval": BFD_INTERVAL_MS,
                "detectMultiplier": 3,
            },
        }
        self.speakers = BgpSpeakers(self.lab, state.lab_dir(self.lab.name) / "bgp-demo")
        self.speakers.write(
            bgp.manifests(self.lab, options, endpoint_hosts=(BACKEND,), bfd_profile=profile)
        )
        self.speakers.start_all()
        seed_service.publish(self.lab, backend_host=BACKEND, vip=VIP4)  # type: ignore[arg-type]
        self.watch = Watch(self.lab, router)
        all_nodes = tuple(sorted(bgp.NODE_ADDRESSES.values()))
        self.watch.until(time.monotonic(), lambda h: h == all_nodes, 20, "the route via 3 nodes")
        status, body, http_ms = get_from_client(self.lab, f"http://{VIP4}/")
        return BgpPublished(
            table=self._table(),
            kernel_route=self._kernel_route(),
            next_hops=self.watch.next_hops(),
            http_status=status,
            http_ms=http_ms,
            welcome_page=b"Welcome to nginx!" in body,
        )

    def crash(self, node: str = "node01") -> BgpFailure:
        """Kill the node's speaker and pull its cable; time the route losing it."""
        assert self.speakers is not None
        assert self.watch is not None
        deadline = time.monotonic() + 10
        while not self.speakers.status(node)["peers"]["router"]["bfd_settled"]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        address = bgp.NODE_ADDRESSES[node]
        since = time.monotonic()
        self.lab.supervisor.signal(self.speakers.records.pop(node), signal.SIGKILL)
        bgp.link(self.lab, node, up=False)
        ms = self.watch.until(since, lambda h: address not in h, 20, f"the route without {node}")
        status, _body, _ms = get_from_client(self.lab, f"http://{VIP4}/")
        return BgpFailure(
            node=node,
            withdrawal_ms=ms,
            table=self._table(),
            kernel_route=self._kernel_route(),
            next_hops=self.watch.next_hops(),
            http_status=status,
        )

    def _table(self) -> str:
        assert self.router is not None
        return self.router.vtysh(f"show bgp ipv4 unicast {VIP4}/32").strip()

    def _kernel_route(self) -> str:
        return self.lab.run("router", ["ip", "route", "show", f"{VIP4}/32"]).stdout.strip()

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
