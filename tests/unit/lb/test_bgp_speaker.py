"""The BGP speaker daemon, in-process, against a scripted BGP peer on 127.0.0.1 (no root)."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pikube.lb.bgp import codec
from pikube.lb.bgp.speaker import BgpSpeaker, BgpSpeakerSettings
from pikube.lb.model import StandardCommunity

VIP = ipaddress.IPv4Network("203.0.113.10/32")


class FakeRouter:
    """Accepts sessions, answers OPEN and KEEPALIVE, and records every message."""

    def __init__(self) -> None:
        self.messages: list[codec.Message] = []
        self.connections = 0
        self.closed = asyncio.Event()
        self.changed = asyncio.Event()
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        stream = codec.Reader()
        caps = (
            codec.Multiprotocol(codec.IPV4_UNICAST),
            codec.FourOctetAS(64496),
            codec.GracefulRestart(120),
        )
        writer.write(codec.encode(codec.Open(64496, 9, ipaddress.IPv4Address("10.0.0.1"), caps)))
        writer.write(codec.encode(codec.Keepalive()))
        try:
            while data := await reader.read(65536):
                for frame in stream.feed(data):
                    self.messages.append(codec.decode(frame))
                    self.changed.set()
        finally:
            writer.close()
            self.closed.set()

    def updates(self) -> list[codec.Update]:
        return [m for m in self.messages if isinstance(m, codec.Update)]

    def announced(self) -> set[codec.IPNetwork]:
        routes: set[codec.IPNetwork] = set()
        for update in self.updates():
            routes.difference_update(update.withdrawn_all())
            routes.update(update.announced())
        return routes

    async def wait(self, condition: Any, what: str, timeout_s: float = 10.0) -> None:
        async def until() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(until(), timeout_s)
        except TimeoutError:
            pytest.fail(f"the fake router never saw {what}; messages: {self.messages}")


def with_router(scenario: Callable[[FakeRouter], Awaitable[None]]) -> None:
    """Run `scenario` against a fresh fake router, on a fresh loop, bounded in time."""

    async def main() -> None:
        fake = FakeRouter()
        # BGPPeer.peerPort allows 1-16384 (as MetalLB), below the ephemeral range.
        for port in random.sample(range(10000, 16385), 50):
            try:
                fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", port)
                break
            except OSError:
                continue
        assert fake.server is not None, "no free port in 10000-16384"
        try:
            await asyncio.wait_for(scenario(fake), 60)
        finally:
            fake.server.close()

    asyncio.run(main())


def write_manifests(
    directory: Path,
    port: int,
    *,
    graceful: bool = False,
    service: bool = True,
    source: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    peer: dict[str, Any] = {
        "myASN": 64497,
        "peerASN": 64496,
        "peerAddress": "127.0.0.1",
        "peerPort": port,
        "holdTime": "9s",
    }
    if graceful:
        peer["enableGracefulRestart"] = True
    if source:
        peer["sourceAddress"] = source
    peer.update(extra or {})
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "bgp", "namespace": "metallb-system"},
            "spec": {"addresses": ["203.0.113.0/24"]},
        },
        {
            "apiVersion": "metallb.io/v1beta2",
            "kind": "BGPPeer",
            "metadata": {"name": "router", "namespace": "metallb-system"},
            "spec": peer,
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "BGPAdvertisement",
            "metadata": {"name": "adv", "namespace": "metallb-system"},
            "spec": {"communities": ["64497:7"]},
        },
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}},
    ]
    if service:
        docs += [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "web",
                    "namespace": "default",
                    "annotations": {"metallb.io/loadBalancerIPs": "203.0.113.10"},
                },
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "web-1",
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "web"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.5"], "nodeName": "n1"}],
            },
        ]
    (directory / "all.yaml").write_text(yaml.safe_dump_all(docs))


async def start(directory: Path) -> tuple[BgpSpeaker, asyncio.Event, asyncio.Task[None]]:
    speaker = BgpSpeaker(
        BgpSpeakerSettings(node="n1", directory=directory, metrics_port=None, connect_retry_s=0.05)
    )
    stop = asyncio.Event()
    return speaker, stop, asyncio.create_task(speaker.run(stop))


def test_announces_then_withdraws_and_says_goodbye_on_stop(tmp_path: Path) -> None:
    async def scenario(router: FakeRouter) -> None:
        write_manifests(tmp_path, router.port)
        speaker, stop, task = await start(tmp_path)
        await router.wait(lambda: VIP in router.announced(), "the service route")
        (update,) = [u for u in router.updates() if u.announced()]
        assert update.next_hop == ipaddress.IPv4Address("127.0.0.1")
        assert update.communities == (StandardCommunity(64497, 7),)
        assert speaker.status()["peers"]["router"]["state"] == "Established"  # type: ignore[index]
        metrics = speaker.registry.render()
        assert 'metallb_bgp_session_up{peer="router"} 1' in metrics
        assert 'metallb_bgp_announced_prefixes_total{peer="router"} 1' in metrics
        # The route and End-of-RIB (the fake router speaks IPv4 only).
        assert 'metallb_bgp_updates_total{peer="router"} 2' in metrics
        # The service goes: the route is withdrawn, the session stays.
        write_manifests(tmp_path, router.port, service=False)
        await router.wait(lambda: not router.announced(), "the withdrawal")
        write_manifests(tmp_path, router.port)
        await router.wait(lambda: VIP in router.announced(), "the route again")
        stop.set()
        await asyncio.wait_for(task, 10)
        await asyncio.wait_for(router.closed.wait(), 10)
        assert not router.announced()
        assert router.messages[-1] == codec.Notification(6, 2)
        assert router.connections == 1

    with_router(scenario)


def test_graceful_restart_closes_without_a_word(tmp_path: Path) -> None:
    async def scenario(router: FakeRouter) -> None:
        write_manifests(tmp_path, router.port, graceful=True)
        _speaker, stop, task = await start(tmp_path)
        await router.wait(lambda: VIP in router.announced(), "the service route")
        opened = router.messages[0]
        assert isinstance(opened, codec.Open)
        assert opened.graceful_restart is not None
        stop.set()
        await asyncio.wait_for(task, 10)
        await asyncio.wait_for(router.closed.wait(), 10)
        assert router.announced() == {VIP}  # nothing withdrawn: the router keeps it as stale
        assert not any(isinstance(m, codec.Notification) for m in router.messages)

    with_router(scenario)


def test_a_changed_peer_gets_a_new_session(tmp_path: Path) -> None:
    async def scenario(router: FakeRouter) -> None:
        write_manifests(tmp_path, router.port)
        _speaker, stop, task = await start(tmp_path)
        await router.wait(lambda: VIP in router.announced(), "the service route")
        write_manifests(tmp_path, router.port, graceful=True)
        await router.wait(lambda: router.connections == 2, "a second session")
        assert codec.Notification(6, codec.Cease.PEER_DECONFIGURED) in router.messages
        stop.set()
        await asyncio.wait_for(task, 10)

    with_router(scenario)


def test_source_address_is_the_sessions_and_the_next_hop(tmp_path: Path) -> None:
    async def scenario(router: FakeRouter) -> None:
        write_manifests(tmp_path, router.port, source="127.0.0.2")
        _speaker, stop, task = await start(tmp_path)
        await router.wait(lambda: VIP in router.announced(), "the service route")
        (update,) = [u for u in router.updates() if u.announced()]
        assert update.next_hop == ipaddress.IPv4Address("127.0.0.2")
        stop.set()
        await asyncio.wait_for(task, 10)

    with_router(scenario)


def test_disable_mp_is_refused_by_name(tmp_path: Path) -> None:
    async def scenario(router: FakeRouter) -> None:
        write_manifests(tmp_path, router.port, extra={"disableMP": True})
        speaker, stop, task = await start(tmp_path)
        for _ in range(200):
            if speaker.status()["problems"]:
                break
            await asyncio.sleep(0.02)
        problems = speaker.status()["problems"]
        assert isinstance(problems, list)
        assert len(problems) == 1
        assert "spec.disableMP is not supported" in problems[0]
        assert speaker.status()["peers"] == {}
        assert router.connections == 0
        stop.set()
        await asyncio.wait_for(task, 10)

    with_router(scenario)
