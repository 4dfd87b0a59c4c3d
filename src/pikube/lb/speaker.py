"""The layer-2 speaker daemon: the wiring around the core (`pikube.lb.l2.core`).

Every decision (who owns which IP, when to probe, hand over, release, announce) is made by the
pure core, which takes events and returns actions. This module only carries them: it reads
heartbeats, link events, ARP/NDP answers and the source's desired state into events, and does
what the actions say with the announcers, the heartbeat sockets, nftables, logs and metrics.

One asyncio loop: packet handlers run inline in reader callbacks and the core's timer is a loop
callback (no task per packet). The heartbeat tick runs on its own thread (`pikube.lb.ticker`:
an idle speaker's only wake-up, kept off the loop); the core is entered under one lock, and
what it asks for is carried out in order on the loop, except a quiet tick's heartbeat. Tasks
(the source, the metrics server's connections) run under a TaskGroup; a callback, task or tick
that raises stops the speaker with one clear message instead of vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from socket import inet_aton
from typing import Any

from pikube.errors import PikubeError
from pikube.helpers import METRICS_PORT, write_atomic
from pikube.lb.l2 import bridge, links
from pikube.lb.l2 import events as ev
from pikube.lb.l2.announcer import InterfaceAnnouncer
from pikube.lb.l2.core import GARP_BURST_S, CoreSettings, SpeakerCore
from pikube.lb.membership import protocol
from pikube.lb.membership.transport import HeartbeatSocket
from pikube.lb.metrics import serve
from pikube.lb.sources import Source
from pikube.lb.speaker_metrics import SpeakerMetrics
from pikube.lb.ticker import Carrier, Ticker

log = logging.getLogger("pikube.speaker")

DEFAULT_INTERVAL_MS = 60
DEFAULT_MULTIPLIER = 3
DEFAULT_METRICS_PORT = METRICS_PORT


@dataclass(frozen=True)
class SpeakerSettings:
    node: str
    key: bytes
    interfaces: tuple[str, ...] = ()  # empty: every interface MetalLB would use
    interval_ms: int = DEFAULT_INTERVAL_MS
    multiplier: int = DEFAULT_MULTIPLIER
    port: int = protocol.DEFAULT_PORT
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = DEFAULT_METRICS_PORT
    refresh_s: float = 30.0  # periodic gratuitous ARP so switch FDB entries never age out
    probe_wait_s: float = 0.06
    conflict_retry_s: float = 10.0
    state_dir: Path | None = None  # where the epoch is kept across restarts
    bridge_s: float = 60.0  # keep connections alive across planned handovers (0: off)
    startup_grace_s: float = 2.0  # see CoreSettings
    realtime: bool = True

    @property
    def detect_s(self) -> float:
        return self.interval_ms * self.multiplier / 1000.0

    def core(self) -> CoreSettings:
        return CoreSettings(
            node=self.node,
            key=self.key,
            interval_ms=self.interval_ms,
            multiplier=self.multiplier,
            probe_wait_s=self.probe_wait_s,
            conflict_retry_s=self.conflict_retry_s,
            startup_grace_s=self.startup_grace_s,
            bridge_s=self.bridge_s,
            refresh_s=self.refresh_s,
            burst_s=GARP_BURST_S,
        )


def next_epoch(state_dir: Path | None) -> int:
    """A new incarnation number, larger than any used before on this node.

    Wall-clock nanoseconds, but never below the last one recorded in `state_dir`: a Raspberry
    Pi without a real-time clock can boot with its clock behind, and peers reject an epoch
    that goes backwards (it would look like a replay).
    """
    epoch = time.time_ns()
    if state_dir is None:
        return epoch
    path = state_dir / "epoch"
    with contextlib.suppress(OSError, ValueError):
        epoch = max(epoch, int(path.read_text().strip()) + 1)
    try:
        write_atomic(path, str(epoch))
    except OSError as exc:
        log.warning("cannot record the epoch in %s (%s); restarts rely on the clock", path, exc)
    return epoch


class SpeakerFailed(Exception):
    """A callback of the speaker raised: the speaker stops rather than run half-broken."""


@dataclass
class _Interface:
    """One announcing interface: its link, ARP/NDP announcer and heartbeat socket."""

    name: str
    link: links.Link | None = None
    announcer: InterfaceAnnouncer | None = None
    heartbeat: HeartbeatSocket | None = None

    def open(
        self,
        loop: asyncio.AbstractEventLoop,
        settings: SpeakerSettings,
        metrics: SpeakerMetrics,
        on_foreign_claim: Callable[[bytes, bytes], None],
        on_peer_answer: Callable[[bytes], None],
    ) -> None:
        name = self.name
        try:
            self.link = links.link(name)
        except links.LinkMissing:
            log.error(
                "interface %s does not exist on node %s; announcing on the others and "
                "waiting for it to appear",
                name,
                settings.node,
            )
            return
        self.announcer = InterfaceAnnouncer(
            self.link, metrics, on_foreign_claim, on_peer_answer=on_peer_answer
        )
        self.announcer.open(loop)
        self.heartbeat = HeartbeatSocket(name, settings.port, links.ipv4_address(name))
        if not links.is_usable(name):
            log.warning("interface %s is down; not announcing on it until it comes up", name)

    def close(self) -> None:
        if self.announcer is not None:
            self.announcer.close()
            self.announcer = None
        if self.heartbeat is not None:
            self.heartbeat.close()
            self.heartbeat = None


@dataclass
class _Bridges:
    """Applies the core's connection bridges (nftables), logging a failure once."""

    bridge_s: float
    error: str = ""

    def apply(self, action: ev.ApplyBridges) -> None:
        error = bridge.apply(list(action.entries))
        if error and error != self.error:
            log.warning("cannot keep connections alive across handovers: %s", error)
        elif not error and action.entries:
            log.info(
                "bridging connections of %s for %.0f s",
                ", ".join(sorted({f"{e.vip} to {e.previous_owner}" for e in action.entries})),
                self.bridge_s,
            )
        self.error = error or ""


@dataclass
class Speaker:
    settings: SpeakerSettings
    source: Source
    clock: Callable[[], float] = time.monotonic
    metrics: SpeakerMetrics = field(init=False)
    core: SpeakerCore | None = None
    _interfaces: dict[str, _Interface] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _failure: asyncio.Future[None] | None = None
    _ticker: Ticker | None = None
    _carrier: Carrier = field(init=False)
    _lock: threading.RLock = field(init=False)  # held around every entry into the core
    _timer: asyncio.TimerHandle | None = None
    _timer_at: float = float("inf")
    _drained_at: float = 0.0
    _encoder: protocol.Encoder = field(init=False)
    _encoded: protocol.Heartbeat | None = None
    _seq: int = 0
    _bridges: _Bridges = field(init=False)
    _released_all: asyncio.Event = field(default_factory=asyncio.Event)
    _handlers: dict[type, Callable[[Any], None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics = SpeakerMetrics(self.settings.node)
        self._bridges = _Bridges(self.settings.bridge_s)
        self.metrics.registry.collectors.append(self._collect)
        self._encoder = protocol.Encoder(self.settings.key)
        bind = getattr(self.source, "bind", None)
        if bind is not None:  # a source that reports back (the Kubernetes API's) reads these
            bind(self.metrics)
        on = self._announcers
        self._handlers = {
            ev.SendHeartbeat: self._send_heartbeat,
            ev.Claim: lambda a: _each(on(a.interfaces), lambda x: x.claim(a.ip)),
            ev.Release: lambda a: _each(on(), lambda x: x.release(a.ip)),
            ev.Announce: lambda a: _each(on(a.interfaces), lambda x: x.announce(a.ip)),
            ev.Probe: lambda a: _each(on(a.interfaces), lambda x: x.probe(a.ip)),
            ev.ProbePeer: lambda a: _each(
                on(a.interfaces), lambda x: x.probe_peer(inet_aton(a.address), a.probes)
            ),
            ev.EndProbe: lambda a: _each(
                self._announcers(), lambda x: x.watched.difference_update(a.ips)
            ),
            ev.ApplyBridges: self._bridges.apply,
            ev.Took: self.metrics.took,
            ev.Gave: self.metrics.gave,
            ev.ConflictSeen: lambda a: self.metrics.conflicts.inc(a.ip),
            ev.Note: lambda a: log.log(a.level, "%s", a.text),
        }
        self._carrier = Carrier(self._handlers, self._after_actions, self._timer_moves, self._guard)
        self._lock = self._carrier.lock

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then hand over and return. Raises SpeakerFailed (in an
        ExceptionGroup) if a callback or task crashed."""
        loop = self._loop = asyncio.get_running_loop()
        self._carrier.bind(loop)
        self._failure = loop.create_future()
        s = self.settings
        epoch = next_epoch(s.state_dir)
        if s.realtime:
            _try_realtime()
        names = s.interfaces or tuple(links.default_interfaces())
        if not names:
            log.error(
                "no interface to announce on (none is up, broadcast-capable and not excluded)"
            )
        for name in names:
            self._interfaces[name] = _Interface(name)
            self._open_interface(name)
        mac = next((i.link.mac for i in self._interfaces.values() if i.link), b"\x00" * 6)
        up = {name: self._usable(name) for name in names}
        self.core = SpeakerCore(s.core(), epoch, mac, up, started_at=self.clock())
        monitor = links.link_monitor_socket()
        loop.add_reader(
            monitor.fileno(), self._guard(self._on_link_events, "link monitor"), monitor
        )
        server = None
        try:
            if s.metrics_port is not None:
                server = await serve(
                    self.metrics.registry, s.metrics_host, s.metrics_port, status=self.status
                )
            self._ticker = Ticker(s.interval_ms / 1000.0, self._tick, self._tick_crashed)
            self._ticker.start()
            self._arm()
            log.info(
                "speaker %s started: interfaces %s, heartbeat every %d ms, peers dead after "
                "%.0f ms",
                s.node, ", ".join(names) or "none", s.interval_ms, s.detect_s * 1000,
            )  # fmt: skip
            async with asyncio.TaskGroup() as tasks:
                source = tasks.create_task(self._source_loop(), name="configuration source")
                watch = tasks.create_task(self._watch_callbacks(), name="callbacks")
                await stop.wait()
                await self._leave()
                source.cancel()
                watch.cancel()
        finally:
            if self._ticker is not None:
                self._ticker.stop()
            if self._timer is not None:
                self._timer.cancel()
            loop.remove_reader(monitor.fileno())
            monitor.close()
            if self.core is not None and self.core.bridges:
                self.core.bridges.clear()
                self._bridges.apply(ev.ApplyBridges(()))
            for iface in self._interfaces.values():
                iface.close()
            if server is not None:
                server.close()
                await server.wait_closed()
        log.info("speaker %s stopped", s.node)

    def _guard(self, callback: Callable[..., None], what: str) -> Callable[..., None]:
        """A loop callback whose exception stops the speaker (through `_watch_callbacks`)."""

        def guarded(*args: object) -> None:
            try:
                callback(*args)
            except Exception as exc:
                log.debug("%s crashed", what, exc_info=True)
                if self._failure is not None and not self._failure.done():
                    self._failure.set_exception(SpeakerFailed(f"{what} crashed: {exc}"))

        return guarded

    async def _watch_callbacks(self) -> None:
        assert self._failure is not None
        await self._failure

    async def _leave(self) -> None:
        """Hand every target over before exiting (make-before-break), bounded in time."""
        core = self._core()
        self._handle(ev.Leave(self.clock()))
        if not core.released_all:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._released_all.wait(), timeout=self.settings.detect_s * 2 + 0.5
                )
        self._handle(ev.Stop(self.clock()))

    async def _source_loop(self) -> None:
        try:
            async for state in self.source.updates():
                self.metrics.problems.set(len(state.problems))
                self._handle(ev.Configured(self.clock(), state))
        except Exception as exc:
            log.debug("the configuration source crashed", exc_info=True)
            raise SpeakerFailed(f"the configuration source crashed: {exc}") from exc

    def _core(self) -> SpeakerCore:
        assert self.core is not None, "the speaker is not running"
        return self.core

    # -- events in, actions out -------------------------------------------------------------

    def _handle(self, event: ev.Event) -> None:
        with self._lock:
            core = self._core()
            self._carrier.carry(core.handle(event), core.leaving)

    def _timer_moves(self) -> bool:
        return self._core().wake_at(self.clock()) < self._timer_at

    def _after_actions(self) -> None:
        core = self._core()
        if core.leaving and core.released_all:
            self._released_all.set()
        self._arm()

    def _arm(self) -> None:
        """Make sure the core hears `TimerFired` no later than it asked."""
        now = self.clock()
        at = self._core().wake_at(now)
        if at >= self._timer_at or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_later(
            max(0.0, at - now), self._guard(self._on_timer, "timer")
        )

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            self._timer_at = float("inf")
            received = _events(self._drain())
            self._handle(ev.TimerFired(self.clock(), received))

    def _tick(self) -> None:
        """Once per interval, on the ticker's thread: read what peers sent, notice the dead,
        send our heartbeat. An idle speaker's tick takes the core's short way (`quiet_tick`)."""
        with self._lock:  # the drain and the tick it makes, as one
            now, received = self.clock(), self._drain()
            if not self._carrier.pending:  # (else our heartbeat would overtake their actions)
                sending = self._core().quiet_tick(now, received)
                if sending is not None:  # nothing changed that the loop's timer depends on
                    self._send_heartbeat(sending)
                    return
            self._handle(ev.Tick(now, _events(received)))

    def _tick_crashed(self, exc: Exception) -> None:
        def fail() -> None:
            if self._failure is not None and not self._failure.done():
                self._failure.set_exception(SpeakerFailed(f"heartbeat tick crashed: {exc}"))

        self._carrier.call(fail)

    def _drain(self) -> list[protocol.Datagram]:
        since, self._drained_at = self._drained_at, self.clock()
        return _drain(self._interfaces.values(), self._drained_at, since)

    # -- actions ----------------------------------------------------------------------------

    def _announcers(self, names: Iterable[str] | None = None) -> Iterable[InterfaceAnnouncer]:
        chosen = self._interfaces.values() if names is None else (
            self._interfaces[n] for n in names if n in self._interfaces
        )  # fmt: skip
        return (i.announcer for i in chosen if i.announcer is not None)

    def _send_heartbeat(self, action: ev.SendHeartbeat) -> None:
        if action.heartbeat is not self._encoded:
            self._encoded = action.heartbeat
            self._encoder.set_template(action.heartbeat)
        self._seq += 1
        data = self._encoder.sign(self._seq)
        for name in action.interfaces:
            iface = self._interfaces.get(name)
            if iface is not None and iface.heartbeat is not None and iface.heartbeat.send(data):
                self.metrics.heartbeats_sent.inc(name)

    # -- interfaces -------------------------------------------------------------------------

    def _usable(self, name: str) -> bool:
        iface = self._interfaces[name]
        return iface.announcer is not None and links.is_usable(name)

    def _open_interface(self, name: str) -> None:
        assert self._loop is not None
        self._interfaces[name].open(
            self._loop, self.settings, self.metrics, self._on_foreign_claim, self._on_peer_answer
        )

    def _on_foreign_claim(self, ip: bytes, mac: bytes) -> None:
        self._handle(ev.ForeignClaim(self.clock(), ip, mac))

    def _on_peer_answer(self, ip: bytes) -> None:
        self._handle(ev.PeerAnswered(self.clock(), socket.inet_ntoa(ip)))

    def _on_link_events(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:  # BlockingIOError when drained
                break
            with self._lock:  # interfaces open and close: not under the tick's feet
                for event in links.parse_link_events(data):
                    self._on_link_event(event)

    def _on_link_event(self, event: links.LinkEvent | links.AddressEvent) -> None:
        for iface in self._interfaces.values():  # a new address or MAC: heartbeats carry them
            if iface.heartbeat is not None and iface.link and iface.link.index == event.index:
                iface.heartbeat.refresh()
        if isinstance(event, links.AddressEvent):
            return
        for iface in self._interfaces.values():
            if iface.link is None:
                if not event.deleted:
                    with contextlib.suppress(OSError):
                        if socket.if_indextoname(event.index) == iface.name:
                            log.info("interface %s appeared", iface.name)
                            self._open_interface(iface.name)
                            self._handle(
                                ev.LinkChanged(self.clock(), iface.name, self._usable(iface.name))
                            )
                            return
                continue
            if iface.link.index != event.index:
                continue
            if event.deleted:
                log.error("interface %s was removed", iface.name)
                iface.close()
                iface.link = None
            self._handle(ev.LinkChanged(self.clock(), iface.name, event.up and not event.deleted))
            return

    # -- reporting --------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        with self._lock:
            return self._core().status(self.clock())

    def _collect(self) -> None:
        with self._lock:
            self.metrics.collect(self.core)


def _datagram(data: bytes, source: str, arrived: float) -> protocol.Datagram:
    return data, source, arrived


def _drain(interfaces: Iterable[_Interface], now: float, since: float) -> list[protocol.Datagram]:
    """What every interface's heartbeat socket received since `since`."""
    received: list[protocol.Datagram] = []
    for iface in interfaces:
        if iface.heartbeat is not None:
            received += iface.heartbeat.drain(now, since, _datagram)
    return received


def _events(received: list[protocol.Datagram]) -> tuple[ev.Received, ...]:
    return tuple(ev.Received(data, source, arrived) for data, source, arrived in received)


def _each(
    announcers: Iterable[InterfaceAnnouncer], do: Callable[[InterfaceAnnouncer], None]
) -> None:
    for announcer in announcers:
        do(announcer)


def _try_realtime() -> None:
    """Run at a real-time priority, as keepalived does, so a saturated CPU cannot delay the
    heartbeats enough to cause a false failover. Not fatal when not permitted."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(20))
    except (OSError, AttributeError) as exc:
        log.warning(
            "cannot use real-time scheduling (%s); heavy CPU load may delay heartbeats", exc
        )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


def run_forever(settings: SpeakerSettings, source: Source) -> None:
    """Run the speaker until SIGTERM or SIGINT, then hand over and exit. A crash of any of its
    parts ends it with one line naming the part (PikubeError), not a traceback."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Speaker(settings, source).run(stop)

    try:
        asyncio.run(main())
    except* Exception as group:
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        log.debug("the speaker failed", exc_info=first)
        raise PikubeError(f"speaker {settings.node} stopped: {first}") from None
