"""The interop matrix: pikube's BGP speakers on node01-03 against FRR, BIRD and GoBGP in `router`.

Each test is one cell of the matrix in docs/bgp.md (router x feature). One lab per router
(module fixture); every test starts the router and the speakers and stops them again.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pikube.lab import state
from pikube.lab.lab import Lab
from pikube.lab.services import bgp
from pikube.lab.services.bgp import VIP4, VIP6, BgpSpeakers, Router, RouterOptions, RouterRoute
from tests.conftest import fresh_lab

pytestmark = pytest.mark.lab

NODES4 = ("198.51.100.21", "198.51.100.22", "198.51.100.23")
NODES6 = ("2001:db8:68::21", "2001:db8:68::22", "2001:db8:68::23")
V4 = f"{VIP4}/32"
V6 = f"{VIP6}/128"


@pytest.fixture(scope="module")
def bgp_lab() -> Iterator[Lab]:
    with fresh_lab() as lab:
        yield lab


class Scenario:
    def __init__(self, lab: Lab, options: RouterOptions) -> None:
        self.lab = lab
        self.options = options
        self.router: Router | None = None
        self.speakers = BgpSpeakers(
            lab, Path(tempfile.mkdtemp(prefix="bgp-", dir=state.lab_dir(lab.name)))
        )

    def __enter__(self) -> Scenario:
        self.router = bgp.start_router(self.lab, self.options)
        return self

    def __exit__(self, *exc: object) -> None:
        for node in list(self.speakers.records):
            self.speakers.stop(node)
        if self.router is not None:
            self.router.stop()

    @property
    def r(self) -> Router:
        assert self.router is not None
        return self.router

    def route(self, prefix: str) -> RouterRoute | None:
        return self.r.routes().get(prefix)

    def wait_hops(self, prefix: str, hops: tuple[str, ...], timeout_s: float = 15.0) -> RouterRoute:
        def ok(router: Router) -> bool:
            route = router.routes().get(prefix)
            return (route.next_hops if route else ()) == hops

        self.r.wait(ok, timeout_s, f"{prefix} via {hops}")
        route = self.route(prefix)
        return route if route is not None else RouterRoute(prefix, ())


def _cell(lab: Lab, kind: str, **options: object) -> Scenario:
    return Scenario(lab, RouterOptions(kind=kind, **options))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", bgp.ROUTERS)
def test_ipv4_ipv6_communities_and_ecmp(bgp_lab: Lab, kind: str) -> None:
    with _cell(bgp_lab, kind) as s:
        s.speakers.write(
            bgp.manifests(
                bgp_lab, s.options, vip6=VIP6, communities=["64497:100", "large:64497:1:2"]
            )
        )
        s.speakers.start_all()
        route4 = s.wait_hops(V4, NODES4)
        route6 = s.wait_hops(V6, NODES6)
        for route in (route4, route6):
            assert route.communities == ("64497:100",)
            assert route.large_communities == ("64497:1:2",)
        status = s.speakers.status("node01")["peers"]["router"]
        assert status["state"] == "Established"
        assert status["families"] == ["ipv4-unicast", "ipv6-unicast"]


@pytest.mark.parametrize("kind", bgp.ROUTERS)
def test_local_pref_over_ibgp(bgp_lab: Lab, kind: str) -> None:
    with _cell(bgp_lab, kind, ibgp=True, nodes=("node01",)) as s:
        s.speakers.nodes = ("node01",)
        s.speakers.write(bgp.manifests(bgp_lab, s.options, local_pref=250))
        s.speakers.start_all()
        route = s.wait_hops(V4, NODES4[:1])
        assert route.local_pref == 250


@pytest.mark.parametrize("kind", bgp.ROUTERS)
def test_md5_password(bgp_lab: Lab, kind: str) -> None:
    with _cell(bgp_lab, kind, password="lab-secret", nodes=("node01", "node02")) as s:
        s.speakers.nodes = ("node01", "node02")
        right = bgp.manifests(bgp_lab, s.options)
        s.speakers.write(right)
        s.speakers.start("node01")
        s.wait_hops(V4, NODES4[:1])
        # A speaker with the wrong password never gets a session.
        wrong = BgpSpeakers(
            bgp_lab,
            Path(tempfile.mkdtemp(prefix="bgp-", dir=state.lab_dir(bgp_lab.name))),
            ("node02",),
        )
        wrong.write(bgp.manifests(bgp_lab, RouterOptions(kind=kind, password="not-it")))
        wrong.start("node02")
        try:
            # With a wrong signature the router drops the SYNs: the connect times out.
            deadline = time.monotonic() + 20
            while not wrong.status("node02")["peers"]["router"]["last_error"]:
                assert time.monotonic() < deadline, "the wrong-password speaker never failed"
                time.sleep(0.2)
            assert wrong.status("node02")["peers"]["router"]["state"] != "Established"
            assert not s.r.sessions().get(NODES4[1])
            route = s.route(V4)
            assert route is not None
            assert route.next_hops == NODES4[:1]
        finally:
            wrong.stop("node02")


@pytest.mark.parametrize("kind", bgp.ROUTERS)
def test_ebgp_multihop_session(bgp_lab: Lab, kind: str) -> None:
    with _cell(bgp_lab, kind, multihop=True, nodes=("node01",)) as s:
        s.speakers.nodes = ("node01",)
        s.speakers.write(bgp.manifests(bgp_lab, s.options))
        s.speakers.start_all()
        s.wait_hops(V4, NODES4[:1])


def _never_established(router: Router, node: str, wait_s: float) -> None:
    """The router has no Established session with `node` and no route from it, now nor at any
    point in the next `wait_s`. (The router's view: when the router drops only what the node
    sends, the node can still see the router's OPEN and KEEPALIVE and call the session
    Established until the router gives up.)"""
    address = str(router.lab.topology.host(node).ipv4)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        assert not router.sessions().get(address)
        route = router.routes().get(V4)
        assert route is None or address not in route.next_hops
        time.sleep(0.2)


@pytest.mark.parametrize("kind", bgp.ROUTERS)
def test_ebgp_multihop_across_a_routed_hop(bgp_lab: Lab, kind: str) -> None:
    # The router runs in `upstream`, behind `router`: the nodes' packets cross one routed hop.
    with _cell(bgp_lab, kind, upstream=True, multihop=True, nodes=("node01", "node02")) as s:
        s.speakers.nodes = ("node01", "node02")
        multihop = BgpSpeakers(
            bgp_lab,
            Path(tempfile.mkdtemp(prefix="bgp-", dir=state.lab_dir(bgp_lab.name))),
            ("node01",),
        )
        s.speakers.nodes = ("node02",)
        multihop.write(bgp.manifests(bgp_lab, s.options))
        # node02's BGPPeer has no ebgpMultiHop: it sends with TTL 1, which dies at the hop.
        s.speakers.write(bgp.manifests(bgp_lab, replace(s.options, multihop=False)))
        s.speakers.start("node02")
        multihop.start("node01")
        try:
            route = s.wait_hops(V4, NODES4[:1])  # the node's own address: the hop is not it
            assert route.next_hops == NODES4[:1]
            _never_established(s.r, "node02", 3.0)
            status = s.speakers.status("node02")["peers"]["router"]
            assert status["state"] != "Established"
            assert status["last_error"]
        finally:
            multihop.stop("node01")


@pytest.mark.parametrize("kind", bgp.ROUTERS)
def test_gtsm_counts_the_routed_hop(bgp_lab: Lab, kind: str) -> None:
    # GTSM (RFC 5082): the speaker sends with TTL 255 (ebgpMultiHop), the hop makes it 254.
    # A router accepting one hop (a single-hop peer, TTL 255 only) refuses the session...
    options: dict[str, object] = {"upstream": True, "multihop": True, "nodes": ("node01",)}
    with _cell(bgp_lab, kind, ttl_security_hops=1, **options) as s:
        s.speakers.nodes = ("node01",)
        s.speakers.write(bgp.manifests(bgp_lab, s.options))
        s.speakers.start_all()
        _never_established(s.r, "node01", 4.0)
    # ...and one accepting two hops takes it.
    with _cell(bgp_lab, kind, ttl_security_hops=2, **options) as s:
        s.speakers.nodes = ("node01",)
        s.speakers.write(bgp.manifests(bgp_lab, s.options))
        s.speakers.start_all()
        s.wait_hops(V4, NODES4[:1])


@pytest.mark.parametrize("kind", bgp.ROUTERS)
def test_sigterm_withdraws_without_graceful_restart(bgp_lab: Lab, kind: str) -> None:
    with _cell(bgp_lab, kind, nodes=("node01", "node02")) as s:
        s.speakers.nodes = ("node01", "node02")
        s.speakers.write(bgp.manifests(bgp_lab, s.options))
        s.speakers.start_all()
        s.wait_hops(V4, NODES4[:2])
        assert s.speakers.stop("node01") == 0
        s.wait_hops(V4, NODES4[1:2])


@pytest.mark.parametrize("kind", bgp.ROUTERS)
def test_graceful_restart_keeps_the_route_across_a_restart(bgp_lab: Lab, kind: str) -> None:
    with _cell(bgp_lab, kind, graceful_restart=True, nodes=("node01",)) as s:
        s.speakers.nodes = ("node01",)
        s.speakers.write(bgp.manifests(bgp_lab, s.options))
        s.speakers.start_all()
        s.wait_hops(V4, NODES4[:1])
        assert s.speakers.stop("node01") == 0
        s.r.wait(lambda r: not r.sessions().get(NODES4[0]), 10, "node01's session down")
        # The router keeps the route (stale) while the speaker is away...
        route = s.route(V4)
        assert route is not None
        assert route.next_hops == NODES4[:1]
        if kind != "bird":  # (BIRD's stale mark is not read by Router.routes)
            assert route.stale
        # ...and takes it back as fresh once the speaker returns (End-of-RIB).
        s.speakers.start("node01")
        s.r.wait(lambda r: bool(r.sessions().get(NODES4[0])), 10, "node01's session back")
        s.r.wait(lambda r: not r.routes()[V4].stale, 10, "the route no longer stale")
        assert s.route(V4) is not None


def test_external_traffic_policy_local_announces_from_endpoint_nodes_only(bgp_lab: Lab) -> None:
    with _cell(bgp_lab, "frr") as s:
        docs = bgp.manifests(bgp_lab, s.options, external_traffic_policy="Local")
        s.speakers.write(docs)
        s.speakers.start_all()
        s.wait_hops(V4, NODES4[1:2])  # the endpoint is on node02
        s.speakers.write(
            bgp.manifests(
                bgp_lab,
                s.options,
                external_traffic_policy="Local",
                endpoint_hosts=("node02", "node03"),
            )
        )
        s.wait_hops(V4, NODES4[1:])


def test_deleted_service_is_withdrawn(bgp_lab: Lab) -> None:
    with _cell(bgp_lab, "frr") as s:
        docs = bgp.manifests(bgp_lab, s.options)
        s.speakers.write(docs)
        s.speakers.start_all()
        s.wait_hops(V4, NODES4)
        s.speakers.write([d for d in docs if d["kind"] != "Service"])
        s.r.wait(lambda r: V4 not in r.routes(), 10, "route withdrawn")


BFD_PROFILE = {
    "apiVersion": "metallb.io/v1beta1",
    "kind": "BFDProfile",
    "metadata": {"name": "fast", "namespace": "metallb-system"},
    "spec": {"receiveInterval": 100, "transmitInterval": 100, "detectMultiplier": 3},
}


@pytest.mark.parametrize("kind", ["frr", "bird"])
def test_bfd_takes_a_dead_node_out_of_the_route(bgp_lab: Lab, kind: str) -> None:
    # Hold time 90 s: only BFD can remove node01 within the wait below.
    options: dict[str, object] = {"bfd_interval_ms": 100, "hold_time_s": 90}
    with _cell(bgp_lab, kind, nodes=("node01", "node02"), **options) as s:
        s.speakers.nodes = ("node01", "node02")
        s.speakers.write(bgp.manifests(bgp_lab, s.options, bfd_profile=BFD_PROFILE))
        s.speakers.start_all()
        s.wait_hops(V4, NODES4[:2])
        deadline = time.monotonic() + 15
        while not s.speakers.status("node01")["peers"]["router"]["bfd_settled"]:
            assert time.monotonic() < deadline, "BFD never came up"
            time.sleep(0.1)
        bgp.link(bgp_lab, "node01", up=False)
        try:
            s.wait_hops(V4, NODES4[1:2], timeout_s=10)
        finally:
            bgp.link(bgp_lab, "node01", up=True)


def test_echo_mode_is_refused_by_name(bgp_lab: Lab) -> None:
    echo = {**BFD_PROFILE, "spec": {**BFD_PROFILE["spec"], "echoMode": True}}  # type: ignore[dict-item]
    with _cell(bgp_lab, "frr", nodes=("node01",)) as s:
        s.speakers.nodes = ("node01",)
        docs = bgp.manifests(bgp_lab, s.options, bfd_profile=echo)
        for doc in docs:
            if doc["kind"] == "IPAddressPool":
                # IPv4 only: echo mode with IPv6 addresses is already a configuration error.
                doc["spec"]["addresses"] = [str(bgp.POOL4)]
        s.speakers.write(docs)
        s.speakers.start_all()
        s.wait_hops(V4, NODES4[:1])
        status = s.speakers.status("node01")
        assert status["peers"]["router"]["bfd"] is None
        assert any("echoMode" in p for p in status["problems"])
