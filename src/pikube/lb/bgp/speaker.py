"""The BGP speaker daemon: one BGP session per selected BGPPeer, announcing this node's routes.

Wiring only. The desired state comes from a source: a directory of manifests (the same objects
the layer-2 speaker reads, plus BGPPeer, BGPAdvertisement, Community and BFDProfile; pikube.lb.ipam
gives services their IPs) or the Kubernetes API (pikube.lb.sources.kube_bgp: the IPs the
controller wrote, and ServiceBGPStatus objects back from `advertised_services`);
routes.node_routes says what this node announces to whom. Each
peer gets a session.Connection (fsm.Session + TCP); a changed BGPPeer gets a new session, a
removed one is stopped (withdraw + Cease). A peer with a bfdProfile also gets a BFD session
(pikube.lb.bfd), and BFD going down ends the BGP session at once.

SIGTERM: every session withdraws its routes and closes with Cease/administrative shutdown, or,
for a peer with enableGracefulRestart, closes without a word so the router keeps the routes
as stale until the speaker is back (RFC 4724); then the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import random
import signal
import socket
import struct
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pikube.errors import PikubeError
from pikube.helpers import METRICS_PORT
from pikube.lb import ipam
from pikube.lb.bfd import fsm as bfd_fsm
from pikube.lb.bfd.codec import SessionState
from pikube.lb.bfd.session import BfdEndpoint, BfdPeer
from pikube.lb.bgp import codec, fsm
from pikube.lb.bgp.codec import IPAddress
from pikube.lb.bgp.routes import (
    BgpInput,
    BgpSource,
    NodeRoutes,
    is_external,
    node_routes,
    peer_settings,
)
from pikube.lb.bgp.session import Connection, Transport
from pikube.lb.bgp.status import advertised_services
from pikube.lb.config import load_manifests
from pikube.lb.ipam import Allocation
from pikube.lb.metrics import Registry, serve
from pikube.lb.model import BFDProfile, BGPPeer
from pikube.lb.sources.watch import DirectoryWatch

log = logging.getLogger("pikube.bgp")

DEFAULT_METRICS_PORT = METRICS_PORT
SIOCGIFADDR = 0x8915


@dataclass(frozen=True)
class BgpSpeakerSettings:
    node: str
    directory: Path = Path()  # with the directory source
    router_id: ipaddress.IPv4Address | None = None  # default: each session's local IPv4
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = DEFAULT_METRICS_PORT
    connect_retry_s: float = 1.0
    recheck_s: float = 30.0


def interface_of(address: IPAddress) -> str | None:
    """The interface that has `address` (IPv4 through SIOCGIFADDR, IPv6 from /proc)."""
    if address.version == 6:
        for name, found, _scope in _ipv6_addresses():
            if found == address:
                return name
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()))
            except OSError:
                continue
            if ipaddress.IPv4Address(raw[20:24]) == address:
                return name
    return None


def _ipv6_addresses() -> list[tuple[str, ipaddress.IPv6Address, int]]:
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 6:
            out.append((parts[5], ipaddress.IPv6Address(int(parts[0], 16)), int(parts[3], 16)))
    return out


def global_ipv6_of(interface: str) -> ipaddress.IPv6Address | None:
    """The first global-scope IPv6 address of `interface`: the next hop of IPv6 routes
    announced over an IPv4 session."""
    found = sorted(a for name, a, scope in _ipv6_addresses() if name == interface and scope == 0)
    return found[0] if found else None


@dataclass
class DirectorySource:
    """`--source dir:PATH`: the manifests of a directory (inotify), IPs from pikube's allocator."""

    directory: Path
    recheck_s: float = 30.0

    async def updates(self) -> AsyncIterator[BgpInput]:
        watch = DirectoryWatch(self.directory)
        wait_s = self.recheck_s if watch.uses_inotify else 1.0
        previous: Mapping[str, Allocation] | None = None
        last_error = ""
        try:
            while True:
                try:
                    resources = load_manifests([self.directory])
                    result = ipam.allocate(resources, previous=previous)
                except PikubeError as exc:
                    if exc.message != last_error:
                        log.error("%s; keeping the last valid configuration", exc.message)
                    last_error = exc.message
                else:
                    last_error = ""
                    previous = result.allocations
                    yield BgpInput(
                        resources,
                        {k: a.ips for k, a in result.allocations.items()},
                        tuple(f"service {k}: {why}" for k, why in sorted(result.errors.items())),
                    )
                await watch.changed(wait_s)
        finally:
            watch.close()


@dataclass
class _Peer:
    peer: BGPPeer
    connection: Connection
    started_at: float
    established_after_ms: float | None = None
    bfd: BfdPeer | None = None


@dataclass
class BgpSpeaker:
    settings: BgpSpeakerSettings
    source: BgpSource | None = None  # default: the manifests of settings.directory
    registry: Registry = field(default_factory=Registry)
    peers: dict[str, _Peer] = field(default_factory=dict)
    current: NodeRoutes = field(default_factory=NodeRoutes)
    profiles: Mapping[str, BFDProfile] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    bfd_problems: dict[str, str] = field(default_factory=dict)
    _bfd: BfdEndpoint | None = None
    _closing: set[asyncio.Task[None]] = field(default_factory=set)  # sessions being closed
    _stopping: bool = False

    def __post_init__(self) -> None:
        r = self.registry
        self.m_up = r.gauge("metallb_bgp_session_up", "BGP session state (1 is up)", "peer")
        self.m_updates = r.counter(
            "metallb_bgp_updates_total", "Number of BGP UPDATE messages sent", "peer"
        )
        self.m_prefixes = r.gauge(
            "metallb_bgp_announced_prefixes_total", "Number of prefixes announced", "peer"
        )
        self.m_received = r.gauge(
            "pikube_bgp_received_prefixes",
            "Prefixes the peer sent (validated, not installed)",
            "peer",
        )
        self.m_bfd_up = r.gauge("pikube_bfd_session_up", "BFD session state (1 is up)", "peer")

    # -- the desired state -----------------------------------------------------------------

    async def _source_loop(self) -> None:
        source = self.source or DirectorySource(self.settings.directory, self.settings.recheck_s)
        bind = getattr(source, "bind", None)
        if bind is not None:
            # What it advertises changes with a session's state and with the UPDATEs sent.
            bind(self.advertised_services, self.registry, (self.m_up, self.m_updates))
        async for item in source.updates():
            self.profiles = {p.name: p for p in item.resources.bfd_profiles}
            self.apply(
                node_routes(item.resources, item.allocations, self.settings.node, item.problems)
            )

    def advertised_services(self) -> dict[str, frozenset[str]]:
        """service key -> the peers whose Established session carries one of its prefixes."""
        advertised = {
            name: list(entry.connection.session.advertised)
            for name, entry in self.peers.items()
            if entry.connection.session.state is fsm.State.ESTABLISHED
        }
        return advertised_services(self.current.services, advertised)

    def apply(self, wanted: NodeRoutes) -> None:
        """Make the sessions and their routes match `wanted` (nothing once stopping)."""
        if self._stopping:
            return
        if wanted.problems != self.problems:
            for problem in wanted.problems:
                log.warning("%s", problem)
        refused = [p for p in wanted.peers if p.disable_mp]
        problems = wanted.problems + tuple(
            f"BGPPeer {p.name}: spec.disableMP is not supported (pikube carries IPv4 and "
            "IPv6 in one multiprotocol session); no session with this peer"
            for p in refused
        )
        if problems != self.problems:
            for problem in problems[len(wanted.problems) :]:
                log.error("%s", problem)
        self.current, self.problems = wanted, problems
        by_name = {p.name: p for p in wanted.peers if not p.disable_mp}
        for name in list(self.peers):
            if by_name.get(name) != self.peers[name].peer:
                self._stop_peer(name, fsm.Stop(codec.Cease.PEER_DECONFIGURED))
        for name, peer in by_name.items():
            if name not in self.peers:
                self._start_peer(peer)
            self._set_routes(name)

    def _start_peer(self, peer: BGPPeer) -> None:
        # connectTime is MetalLB's wait between connection attempts: our first retry delay.
        settings = replace(
            peer_settings(peer, self.settings.router_id),
            connect_retry_s=float(peer.connect_time_s or self.settings.connect_retry_s),
        )
        external = is_external(peer)
        transport = Transport(
            peer_address=peer.peer_address,
            peer_port=peer.peer_port,
            source_address=peer.source_address,
            password=peer.password,
            ttl=1 if external and not peer.ebgp_multihop else 255,
            connect_timeout_s=5.0,
        )
        connection = Connection(peer.name, fsm.Session(settings), transport, self._on_action)
        self.peers[peer.name] = _Peer(peer, connection, time.monotonic())
        self.m_up.set(0, peer.name)
        self.m_updates.inc(peer.name, amount=0)
        log.info(
            "peer %s: %s AS %s, from AS %d%s",
            peer.name,
            peer.peer_address,
            peer.peer_asn or (peer.dynamic_asn.value if peer.dynamic_asn else "?"),
            settings.local_asn,
            ", graceful restart" if settings.graceful_restart else "",
        )
        self._start_bfd(self.peers[peer.name])
        connection.handle(fsm.Start())

    def _start_bfd(self, entry: _Peer) -> None:
        peer = entry.peer
        self.bfd_problems.pop(peer.name, None)
        if not peer.bfd_profile:
            return
        profile = self.profiles.get(peer.bfd_profile)
        if profile is None:
            self.bfd_problems[peer.name] = (
                f"BGPPeer {peer.name}: BFDProfile {peer.bfd_profile!r} does not exist; "
                "the session runs without BFD"
            )
        elif profile.echo_mode:
            self.bfd_problems[peer.name] = (
                f"BGPPeer {peer.name}: BFDProfile {profile.name!r} has echoMode on, which "
                "pikube does not support (asynchronous mode only); the session runs without BFD"
            )
        if peer.name in self.bfd_problems:
            log.error("%s", self.bfd_problems[peer.name])
            return
        assert profile is not None
        if self._bfd is None:
            self._bfd = BfdEndpoint()
        settings = bfd_fsm.BfdSettings(
            local_discriminator=random.getrandbits(32) or 1,
            desired_min_tx_ms=profile.transmit_interval_ms,
            required_min_rx_ms=profile.receive_interval_ms,
            detect_mult=profile.detect_multiplier,
            passive=profile.passive_mode,
        )
        entry.bfd = self._bfd.add(
            peer.peer_address,
            settings,
            self._on_bfd,
            minimum_ttl=profile.minimum_ttl if peer.ebgp_multihop else 255,
            source=peer.source_address,
        )
        self.m_bfd_up.set(0, peer.name)

    def _on_bfd(self, bfd: BfdPeer, change: bfd_fsm.StateChanged) -> None:
        entry = next((e for e in self.peers.values() if e.bfd is bfd), None)
        if entry is None:
            return
        self.m_bfd_up.set(1 if change.new is SessionState.UP else 0, entry.peer.name)
        if change.old is SessionState.UP:
            entry.connection.handle(fsm.BfdDown())

    def _stop_peer(self, name: str, event: fsm.Stop | fsm.StopGraceful) -> None:
        entry = self.peers.pop(name)
        entry.connection.handle(event)
        if entry.bfd is not None:
            entry.bfd.close()
            self.m_bfd_up.remove(name)
        self.m_up.remove(name)
        self.m_prefixes.remove(name)
        self.m_received.remove(name)
        task = asyncio.get_running_loop().create_task(entry.connection.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _set_routes(self, name: str) -> None:
        entry = self.peers[name]
        routes = self.current.routes.get(name, {})
        hop6 = None
        session = entry.connection.session
        if session.local_address is not None and session.local_address.version == 4:
            interface = interface_of(session.local_address)
            hop6 = global_ipv6_of(interface) if interface else None
        entry.connection.handle(fsm.SetRoutes(dict(routes), hop6))
        self.m_prefixes.set(len(session.advertised), name)

    def _on_action(self, connection: Connection, action: fsm.Action) -> None:
        entry = self.peers.get(connection.name)
        if entry is None or entry.connection is not connection:
            return
        if isinstance(action, fsm.StateChanged):
            up = action.new is fsm.State.ESTABLISHED
            self.m_up.set(1 if up else 0, connection.name)
            if up and entry.established_after_ms is None:
                entry.established_after_ms = (time.monotonic() - entry.started_at) * 1000
                log.info(
                    "peer %s: established %.1f ms after start",
                    connection.name,
                    entry.established_after_ms,
                )
            if action.new is fsm.State.OPEN_SENT or up:
                # The next hop of IPv6 routes depends on the connection's local address.
                loop = asyncio.get_running_loop()
                loop.call_soon(self._refresh_routes, connection)
        elif isinstance(action, fsm.Send) and action.kind is codec.MessageType.UPDATE:
            self.m_updates.inc(connection.name)
            self.m_prefixes.set(len(connection.session.advertised), connection.name)
        elif isinstance(action, fsm.RoutesReceived):
            self.m_received.set(len(connection.session.received), connection.name)

    def _refresh_routes(self, connection: Connection) -> None:
        entry = self.peers.get(connection.name)
        if entry is not None and entry.connection is connection:
            self._set_routes(connection.name)

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        peers: dict[str, object] = {}
        for name, entry in sorted(self.peers.items()):
            session = entry.connection.session
            negotiated = session.negotiated
            peers[name] = {
                "address": str(entry.peer.peer_address),
                "state": session.state.value,
                "established_after_ms": entry.established_after_ms,
                "advertised": sorted(str(n) for n in session.advertised),
                "received": len(session.received),
                "families": sorted(str(f) for f in negotiated.families) if negotiated else [],
                "hold_time_s": negotiated.hold_time_s if negotiated else None,
                "graceful_restart": session.settings.graceful_restart,
                "last_error": session.last_error,
                "bfd": entry.bfd.state.name if entry.bfd is not None else None,
                # Settled: Up and the switch to the profile's rate acknowledged by the peer.
                "bfd_settled": entry.bfd is not None
                and entry.bfd.state is SessionState.UP
                and not entry.bfd.session.polling,
                # CLOCK_MONOTONIC is one clock for every process: benchmarks compare it.
                "last_update_monotonic": entry.connection.last_update_at,
            }
        problems = [*self.problems, *self.bfd_problems.values()]
        return {"node": self.settings.node, "peers": peers, "problems": problems}

    # -- life ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        server = None
        if s.metrics_port is not None:
            server = await serve(self.registry, s.metrics_host, s.metrics_port, status=self.status)
        source = asyncio.create_task(self._source_loop(), name="bgp source")
        stopping = asyncio.create_task(stop.wait(), name="bgp stop")
        log.info("BGP speaker %s started", s.node)
        failure: BaseException | None = None
        try:
            await asyncio.wait({source, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if source.done() and not source.cancelled():
                failure = source.exception() or RuntimeError("it ended")
        finally:
            # Withdraw first: a source's own clean-up (the API's, bounded) must not delay it.
            self._stopping = True
            await self.shutdown()
            stopping.cancel()
            source.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await source
            if server is not None:
                server.close()
                await server.wait_closed()
        if failure is not None:
            log.debug("the configuration source failed", exc_info=failure)
            message = failure.message if isinstance(failure, PikubeError) else str(failure)
            raise PikubeError(
                f"BGP speaker {s.node} stopped: the configuration source failed: "
                f"{message or type(failure).__name__}",
                exit_code=failure.exit_code if isinstance(failure, PikubeError) else None,
            )
        log.info("BGP speaker %s stopped", s.node)

    async def shutdown(self) -> None:
        """Withdraw (or, with graceful restart, just close) every session, then close them."""
        entries = list(self.peers.values())
        for entry in entries:
            graceful = entry.connection.session.settings.graceful_restart
            entry.connection.handle(fsm.StopGraceful() if graceful else fsm.Stop())
        self.peers.clear()
        for entry in entries:
            await entry.connection.flush()
            await entry.connection.close()
            if entry.bfd is not None:
                entry.bfd.close()
        if self._bfd is not None:
            self._bfd.close()
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=2)


def run_forever(settings: BgpSpeakerSettings, source: BgpSource | None = None) -> None:
    """Run until SIGTERM or SIGINT, then withdraw (or close gracefully) and exit."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await BgpSpeaker(settings, source).run(stop)

    asyncio.run(main())
