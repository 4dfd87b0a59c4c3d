"""The layer-2 speaker daemon: wires the source, membership, election and announcers together.

Life of an IP on one node:
- The source says a target exists and who may announce it. Heartbeats say who is live and who
  claims what. `election.elect` says who should own each target.
- Acquire: if no speaker was ever seen claiming the IP, probe it first (RFC 5227 style) and
  refuse it if a non-speaker host answers (a conflict, reported and retried). Then answer for
  it, send gratuitous ARP / unsolicited NA at once and in a short burst, and tell the peers
  with an immediate heartbeat.
- Release (make-before-break): when another node should own it, keep answering until that
  node's heartbeat claims it (or one detection time passes), then stop. When the target
  disappears, nobody may own it, or the announcing link goes down: stop at once.
- Leave (SIGTERM): heartbeats carry LEAVING, peers take over, and the speaker exits once every
  IP it held is claimed elsewhere (bounded).
- Join: after start or link-up, a speaker listens for one detection time (heartbeats carry
  JOINING; peers do not pick it) before it takes part, so it learns the current claims first.

All of this runs on one asyncio loop; packet handlers run inline in reader callbacks, and
timers are loop callbacks, so nothing waits behind anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pikube.lb import election
from pikube.lb.election import Target
from pikube.lb.l2 import bridge, links
from pikube.lb.l2.announcer import InterfaceAnnouncer, text_ip
from pikube.lb.membership import protocol
from pikube.lb.membership.transport import Datagram, HeartbeatSocket
from pikube.lb.metrics import Registry, serve
from pikube.lb.sources import Announcement, DesiredState, Source

log = logging.getLogger("pikube.speaker")

DEFAULT_INTERVAL_MS = 60
DEFAULT_MULTIPLIER = 3
DEFAULT_METRICS_PORT = 7472  # MetalLB's speaker metrics port
GARP_BURST_S = (0.0, 0.05, 0.25, 1.0, 2.0)  # after a takeover
PROTOCOL_LAYER2 = "layer2"


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
    # At a cold start nobody holds anything yet: a speaker waits this long before taking IPs
    # no speaker ever held, so that speakers started together share them out (the election
    # is sticky, so whoever takes an IP first keeps it).
    startup_grace_s: float = 2.0
    realtime: bool = True

    @property
    def detect_s(self) -> float:
        return self.interval_ms * self.multiplier / 1000.0


class SpeakerMetrics:
    """MetalLB's metric names where the meaning is the same, pikube's own for the rest."""

    def __init__(self, node: str) -> None:
        self.node = node
        r = self.registry = Registry()
        self.requests = r.counter(
            "metallb_layer2_requests_received",
            "Number of layer2 requests received for owned IPs",
            "ip",
        )
        self.responses = r.counter(
            "metallb_layer2_responses_sent", "Number of layer2 responses sent for owned IPs", "ip"
        )
        self.gratuitous = r.counter(
            "metallb_layer2_gratuitous_sent", "Number of gratuitous layer2 packets sent", "ip"
        )
        self.announced = r.gauge(
            "metallb_speaker_announced",
            "Services being announced from this node",
            "service",
            "protocol",
            "node",
            "ip",
        )
        self.peers = r.gauge("pikube_membership_peers", "Live peer speakers seen by this node")
        self.heartbeats_sent = r.counter(
            "pikube_membership_heartbeats_sent_total", "Heartbeats sent", "interface"
        )
        self.heartbeats_received = r.counter(
            "pikube_membership_heartbeats_received_total",
            "Heartbeats received, by result (accepted, unauthenticated, malformed, replayed)",
            "result",
        )
        self.expired = r.counter(
            "pikube_membership_peers_expired_total", "Peers declared dead after the detect time"
        )
        self.takeovers = r.counter("pikube_layer2_takeovers_total", "Targets this node took")
        self.releases = r.counter(
            "pikube_layer2_releases_total", "Targets this node gave up, by reason", "reason"
        )
        self.conflicts = r.counter(
            "pikube_layer2_conflicts_total",
            "Non-speaker hosts seen answering for a service IP",
            "ip",
        )
        self.malformed_packets = r.counter(
            "pikube_layer2_malformed_packets_total", "Malformed ARP/NDP packets ignored", "protocol"
        )
        self.problems = r.gauge(
            "pikube_speaker_config_problems", "Services or files the speaker cannot act on"
        )

    # L2Stats, for the announcers
    def request_received(self, ip: str) -> None:
        self.requests.inc(ip)

    def response_sent(self, ip: str) -> None:
        self.responses.inc(ip)

    def gratuitous_sent(self, ip: str) -> None:
        self.gratuitous.inc(ip)

    def malformed(self, protocol_name: str) -> None:
        self.malformed_packets.inc(protocol_name)


@functools.lru_cache(maxsize=65536)
def packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


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
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(epoch))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot record the epoch in %s (%s); restarts rely on the clock", path, exc)
    return epoch


@dataclass
class _Interface:
    name: str
    link: links.Link | None = None
    up: bool = False
    announcer: InterfaceAnnouncer | None = None
    heartbeat: HeartbeatSocket | None = None


@dataclass
class Speaker:
    settings: SpeakerSettings
    source: Source
    clock: Callable[[], float] = time.monotonic
    metrics: SpeakerMetrics = field(init=False)
    view: protocol.View = field(init=False)
    desired: DesiredState = field(default_factory=DesiredState)
    claimed: dict[str, Announcement] = field(default_factory=dict)
    leaving: bool = False
    joining_until: float = 0.0
    _interfaces: dict[str, _Interface] = field(default_factory=dict)
    _handover: dict[str, float] = field(default_factory=dict)
    _speaker_ips: set[bytes] = field(default_factory=set)  # ever claimed by some speaker
    _speaker_macs: set[bytes] = field(default_factory=set)  # of every speaker ever heard
    _conflict_logged: dict[bytes, float] = field(default_factory=dict)
    _claims: frozenset[bytes] = frozenset()  # packed IPs of `claimed`, for heartbeats
    _peer_addresses: dict[str, str] = field(default_factory=dict)  # heartbeat source address
    _bridges: dict[bridge.BridgeEntry, float] = field(default_factory=dict)  # entry: expiry
    _bridge_error: str = ""
    _was_joining: bool = True
    _started_at: float = 0.0
    _last_evaluated: float = 0.0
    _drained_at: float = 0.0
    _ticker: asyncio.Handle | None = None
    _refresher: asyncio.TimerHandle | None = None
    _said_version: int = 0  # bumped when claims, interfaces or links change
    _said: tuple[int, bool, bool] | None = None
    _encoder: protocol.Encoder = field(init=False)
    _conflicts: dict[str, tuple[float, str]] = field(default_factory=dict)  # key: (retry, why)
    _probing: dict[str, float] = field(default_factory=dict)  # key: verdict time
    _probe_answers: dict[bytes, bytes] = field(default_factory=dict)  # ip: answering mac
    _defended: dict[str, float] = field(default_factory=dict)
    _epoch: int = 0
    _seq: int = 0
    _timer: asyncio.TimerHandle | None = None
    _timer_at: float = float("inf")
    _released_all: asyncio.Event = field(default_factory=asyncio.Event)
    _loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self.metrics = SpeakerMetrics(self.settings.node)
        self.view = protocol.View(self.settings.node)
        self._encoder = protocol.Encoder(self.settings.key)
        bind = getattr(self.source, "bind", None)
        if bind is not None:  # a source that reports back (the Kubernetes API's) reads these
            bind(self.metrics)

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loop = self._loop = asyncio.get_running_loop()
        s = self.settings
        self._epoch = next_epoch(s.state_dir)
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
        monitor = links.link_monitor_socket()
        loop.add_reader(monitor.fileno(), self._on_link_events, monitor)
        server = None
        if s.metrics_port is not None:
            server = await serve(
                self.metrics.registry, s.metrics_host, s.metrics_port, status=self.status
            )
        self._started_at = self.clock()
        self.joining_until = self._started_at + s.detect_s
        self._arm(self.joining_until)
        self._ticker = loop.call_soon(self._tick)
        source_task = asyncio.create_task(self._source_loop(), name="source")
        self._refresher = loop.call_later(s.refresh_s, self._refresh)
        log.info(
            "speaker %s started: interfaces %s, heartbeat every %d ms, peers dead after %.0f ms",
            s.node,
            ", ".join(names) or "none",
            s.interval_ms,
            s.detect_s * 1000,
        )
        try:
            await stop.wait()
            await self._leave()
        finally:
            if self._refresher is not None:
                self._refresher.cancel()
            if self._ticker is not None:
                self._ticker.cancel()
            source_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await source_task
            if self._timer is not None:
                self._timer.cancel()
            loop.remove_reader(monitor.fileno())
            monitor.close()
            if self._bridges:
                self._bridges.clear()
                self._apply_bridges()
            for iface in self._interfaces.values():
                self._close_interface(iface)
            if server is not None:
                server.close()
                await server.wait_closed()
        log.info("speaker %s stopped", s.node)

    async def _leave(self) -> None:
        """Hand every target over before exiting (make-before-break), bounded in time."""
        self.leaving = True
        log.info("leaving: handing over %d targets", len(self.claimed))
        self._send_heartbeats()
        self._evaluate()
        if self.claimed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._released_all.wait(), timeout=self.settings.detect_s * 2 + 0.5
                )
        for key in list(self.claimed):
            self._release(key, "leaving")
        self._send_heartbeats()

    async def _source_loop(self) -> None:
        async for state in self.source.updates():
            for problem in set(state.problems) - set(self.desired.problems):
                log.warning("%s", problem)
            self.desired = state
            self.metrics.problems.set(len(state.problems))
            self._evaluate()

    # -- interfaces -------------------------------------------------------------------------

    def _open_interface(self, name: str) -> None:
        iface = self._interfaces[name]
        assert self._loop is not None
        try:
            iface.link = links.link(name)
        except links.LinkMissing:
            log.error(
                "interface %s does not exist on node %s; announcing on the others and "
                "waiting for it to appear",
                name,
                self.settings.node,
            )
            return
        iface.up = links.is_usable(name)
        self._said_version += 1
        iface.announcer = InterfaceAnnouncer(iface.link, self.metrics, self._on_foreign_claim)
        iface.announcer.open(self._loop)
        iface.heartbeat = HeartbeatSocket(name, self.settings.port, links.ipv4_address(name))
        if not iface.up:
            log.warning("interface %s is down; not announcing on it until it comes up", name)

    def _close_interface(self, iface: _Interface) -> None:
        if iface.announcer is not None:
            iface.announcer.close()
            iface.announcer = None
        if iface.heartbeat is not None:
            iface.heartbeat.close()
            iface.heartbeat = None

    def _on_link_events(self, sock: socket.socket) -> None:
        changed = False
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            for event in links.parse_link_events(data):
                changed |= self._on_link_event(event)
        if changed:
            self._evaluate()

    def _on_link_event(self, event: links.LinkEvent) -> bool:
        for iface in self._interfaces.values():
            if iface.link is None:
                if not event.deleted:
                    with contextlib.suppress(OSError):
                        if _socket_name(event.index) == iface.name:
                            self._open_interface(iface.name)
                            return True
                continue
            if iface.link.index != event.index:
                continue
            if event.deleted:
                log.error("interface %s was removed", iface.name)
                self._link_down(iface)
                self._close_interface(iface)
                iface.link = None
                return True
            if event.up == iface.up:
                return False
            self._said_version += 1
            if event.up:
                iface.up = True
                self.joining_until = self.clock() + self.settings.detect_s
                self._arm(self.joining_until)
                log.info("interface %s is up again; rejoining", iface.name)
            else:
                self._link_down(iface)
            return True
        return False

    def _link_down(self, iface: _Interface) -> None:
        iface.up = False
        self._said_version += 1
        log.warning("interface %s went down: no longer announcing on it", iface.name)
        for key, announcement in list(self.claimed.items()):
            if not self._usable_interfaces(announcement):
                self._release(key, "link-down")

    def _usable_interfaces(self, announcement: Announcement) -> list[_Interface]:
        wanted = announcement.interfaces
        return [
            i
            for i in self._interfaces.values()
            if i.up and i.announcer is not None and (not wanted or i.name in wanted)
        ]

    # -- membership -------------------------------------------------------------------------

    def _heartbeat(self) -> protocol.Heartbeat:
        """What this node says now (sequence number 0: `_send_heartbeats` numbers them)."""
        mac = next((i.link.mac for i in self._interfaces.values() if i.link), b"\x00" * 6)
        return protocol.Heartbeat(
            node=self.settings.node,
            epoch=self._epoch,
            seq=0,
            interval_ms=self.settings.interval_ms,
            multiplier=self.settings.multiplier,
            mac=mac,
            interfaces=tuple(i.name for i in self._interfaces.values() if i.up),
            claims=self._claims,
            leaving=self.leaving,
            joining=self._joining(),
        )

    def _send_heartbeats(self) -> None:
        # Rebuild what we say only when it changed (cheap check; this runs every interval).
        said = (self._said_version, self.leaving, self._joining())
        if said != self._said:
            self._said = said
            self._encoder.set_template(self._heartbeat())
        self._seq += 1
        data = self._encoder.sign(self._seq)
        for iface in self._interfaces.values():
            if iface.up and iface.heartbeat is not None and iface.heartbeat.send(data):
                self.metrics.heartbeats_sent.inc(iface.name)

    def _tick(self) -> None:
        """Once per interval: read what peers sent, notice the dead, send our heartbeat.

        A plain loop callback, not a task sleeping in a loop: one event-loop turn per interval.
        Jitter only shortens the interval (as BFD does), so peers' detection still holds.
        """
        assert self._loop is not None
        interval = self.settings.interval_ms / 1000.0
        self._ticker = self._loop.call_later(interval * random.uniform(0.85, 1.0), self._tick)
        changed = self._drain_all()
        now = self.clock()
        gone = self._expire(now)
        if changed or gone:
            self._evaluate()
        self._send_heartbeats()
        # A peer that missed a heartbeat gets a precise timer for its deadline, so that its
        # death is noticed at once rather than at the next tick.
        for peer in self.view.peers.values():
            if now - peer.last_heard_s > peer.heartbeat.interval_ms * 1.5 / 1000.0:
                self._arm(peer.deadline_s)

    def _receive(self, datagrams: Iterable[Datagram]) -> bool:
        changed = False
        for datagram in datagrams:
            try:
                change, node = self.view.receive_datagram(
                    datagram.data, self.settings.key, datagram.arrived_s
                )
            except protocol.Unauthenticated as exc:
                self.view.reject(exc)
                self.metrics.heartbeats_received.inc("unauthenticated")
                continue
            except protocol.HeartbeatError as exc:
                self.view.reject(exc)
                self.metrics.heartbeats_received.inc("malformed")
                continue
            if change is protocol.Change.STALE:
                self.metrics.heartbeats_received.inc("replayed")
                continue
            if node == self.settings.node:
                continue
            self.metrics.heartbeats_received.inc("accepted")
            if change is protocol.Change.NONE:
                continue
            heartbeat = self.view.peers[node].heartbeat
            self._peer_addresses[node] = datagram.source
            self._speaker_ips |= heartbeat.claims
            self._speaker_macs.add(heartbeat.mac)
            if change is protocol.Change.JOINED:
                log.info("peer %s joined (epoch %d)", node, heartbeat.epoch)
            changed = True
        self.metrics.peers.set(len(self.view.peers))
        return changed

    def _drain_all(self) -> bool:
        now = self.clock()
        changed = False
        for iface in self._interfaces.values():
            if iface.heartbeat is not None:
                changed |= self._receive(iface.heartbeat.drain(now, self._drained_at))
        self._drained_at = now
        return changed

    def _expire(self, now: float) -> list[str]:
        gone = self.view.expire(now)
        for node in gone:
            log.warning(
                "peer %s is dead (no heartbeat for %.0f ms)", node, self.settings.detect_s * 1000
            )
        if gone:
            self.metrics.expired.inc(amount=len(gone))
            self.metrics.peers.set(len(self.view.peers))
        return gone

    # -- timers -----------------------------------------------------------------------------

    def _arm(self, at: float) -> None:
        """Make sure `_on_timer` runs no later than `at` (monotonic seconds)."""
        if self._loop is None or at >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        delay = max(0.0, at - self.clock())
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        # Heartbeats that arrived while this process was not scheduled count before any
        # peer is declared dead: a stall of this speaker must not look like a dead peer.
        self._drain_all()
        now = self.clock()
        gone = self._expire(now)
        joined = self._was_joining and not self._joining()
        grace_end = self._started_at + self.settings.startup_grace_s
        due = (
            gone
            or joined
            or self._last_evaluated < grace_end <= now
            or any(t <= now for t in self._handover.values())
            or any(t <= now for t in self._probing.values())
            or any(retry <= now for retry, _ in self._conflicts.values())
        )
        self._expire_bridges(now)
        if due:
            self._evaluate()
        else:
            self._rearm()

    def _rearm(self) -> None:
        """Arm the timer for the next timed event. (Peers' deadlines are armed by `_tick`, only
        for a peer that has missed a heartbeat.)"""
        now = self.clock()
        candidates: list[float] = []
        if self._joining():
            candidates.append(self.joining_until)
        grace_end = self._started_at + self.settings.startup_grace_s
        if self._last_evaluated < grace_end:
            candidates.append(grace_end)
        candidates += list(self._handover.values())
        candidates += [retry for retry, _ in self._conflicts.values()]
        candidates += list(self._probing.values())
        candidates += list(self._bridges.values())
        if candidates:
            self._arm(max(min(candidates), now))

    def _joining(self) -> bool:
        return self.clock() < self.joining_until

    # -- deciding ---------------------------------------------------------------------------

    def _candidate_targets(self) -> dict[str, tuple[Announcement, Target]]:
        """Targets with their eligible set narrowed to nodes that can announce them now."""
        peers = {name: peer.heartbeat for name, peer in self.view.peers.items()}
        me = self.settings.node
        result = {}
        joining = self._joining()
        for announcement in self.desired.announcements:
            target = announcement.target
            wanted = announcement.interfaces
            # A target no speaker ever held (a cold start) may go to a node that is still
            # joining: it claims it when it has joined, and a fleet started together spreads
            # out. A target someone held (a failover) goes only to nodes ready now.
            fresh = not any(packed(ip) in self._speaker_ips for ip in target.ips)
            able = {
                name
                for name, hb in peers.items()
                if not hb.leaving
                and (fresh or not hb.joining)
                and (not wanted or set(wanted) & set(hb.interfaces))
            }
            if (
                not self.leaving
                and (fresh or not joining)
                and self._usable_interfaces(announcement)
            ):
                able.add(me)
            eligible = able if target.eligible is None else able & target.eligible
            result[target.key] = (announcement, replace(target, eligible=frozenset(eligible)))
        return result

    def _evaluate(self) -> None:
        now = self.clock()
        self._last_evaluated = now
        self._was_joining = self._joining()
        me = self.settings.node
        targets = self._candidate_targets()
        ip_to_key = {packed(ip): key for key, (_, t) in targets.items() for ip in t.ips}
        claims: dict[str, set[str]] = {me: set(self.claimed)}
        for name, peer in self.view.peers.items():
            keys = {ip_to_key[ip] for ip in peer.heartbeat.claims if ip in ip_to_key}
            claims[name] = keys
        live = {n for _, t in targets.values() for n in (t.eligible or ())}
        owners = election.elect((t for _, t in targets.values()), live, claims)

        for key in list(self.claimed):
            if key not in targets:
                self._release(key, "removed")
                continue
            announcement, _ = targets[key]
            owner = owners.get(key)
            if owner == me:
                self._handover.pop(key, None)
                self._update_ips(key, announcement)
                others = [n for n, keys in claims.items() if n != me and key in keys]
                if others and now - self._defended.get(key, -1e9) > self.settings.detect_s:
                    # Split brain resolved in our favour: make clients point at us again.
                    self._defended[key] = now
                    self._announce(announcement)
                continue
            if owner is None:
                self._release(key, "no-candidate")
            elif key in claims.get(owner, set()):
                self._release(key, "handed-over", f"to {owner}")
            else:
                deadline = self._handover.setdefault(key, now + self.settings.detect_s)
                if now >= deadline:
                    self._release(key, "handover-timeout", f"{owner} did not claim it")

        if not self._joining():
            for key, owner in owners.items():
                if owner == me and key not in self.claimed:
                    self._acquire(targets[key][0], now)

        for key in list(self._conflicts):
            if key not in targets:
                del self._conflicts[key]
        if self.leaving and not self.claimed:
            self._released_all.set()
        self._rearm()

    def _update_ips(self, key: str, announcement: Announcement) -> None:
        held = self.claimed[key]
        if (
            held.target.ips == announcement.target.ips
            and held.interfaces == announcement.interfaces
        ):
            self.claimed[key] = announcement
            return
        for ip in set(held.target.ips) - set(announcement.target.ips):
            for iface in self._interfaces.values():
                if iface.announcer is not None:
                    iface.announcer.release(packed(ip))
        self.claimed[key] = announcement
        self._claims_changed()
        self._claim_ips(announcement)

    # -- acquiring and releasing ------------------------------------------------------------

    def _acquire(self, announcement: Announcement, now: float) -> None:
        key = announcement.target.key
        conflict = self._conflicts.get(key)
        if conflict is not None and now < conflict[0]:
            return  # a non-speaker host answered for it; retry later
        ips = [packed(ip) for ip in announcement.target.ips]
        if key in self._probing:
            if now < self._probing[key]:
                return  # the probe's answers are not all in yet
            del self._probing[key]
            answers = [(ip, self._probe_answers.pop(ip)) for ip in ips if ip in self._probe_answers]
            for iface in self._interfaces.values():
                if iface.announcer is not None:
                    iface.announcer.watched.difference_update(ips)
            if answers:
                ip, mac = answers[0]
                why = (
                    f"{text_ip(ip)} is already in use by a host that is not a speaker "
                    f"(MAC {_mac(mac)}); not announcing {', '.join(announcement.services)}"
                )
                log.error("IP conflict: %s", why)
                self.metrics.conflicts.inc(text_ip(ip))
                self._conflicts[key] = (now + self.settings.conflict_retry_s, why)
                return
        elif not any(ip in self._speaker_ips for ip in ips):
            if now < self._started_at + self.settings.startup_grace_s:
                return  # a cold start: let the other speakers come up first
            # No speaker has ever held it: make sure nobody else on the LAN does.
            self._start_probe(announcement, now)
            return
        self._conflicts.pop(key, None)
        self._bridge_from_holders(announcement, now)
        self.claimed[key] = announcement
        self._claims_changed()
        self._speaker_ips.update(ips)
        self._claim_ips(announcement)
        self.metrics.takeovers.inc()
        for service in announcement.services:
            for address in announcement.target.ips:
                self.metrics.announced.set(1, service, PROTOCOL_LAYER2, self.settings.node, address)
        log.info(
            "announcing %s (%s)",
            ", ".join(announcement.target.ips),
            ", ".join(announcement.services),
        )
        self._send_heartbeats()
        self._announce(announcement)
        assert self._loop is not None
        for delay in GARP_BURST_S[1:]:
            self._loop.call_later(delay, self._announce_if_held, key)

    def _bridge_from_holders(self, announcement: Announcement, now: float) -> None:
        """A live peer still holds what we take (a planned handover): bridge its connections."""
        if self.settings.bridge_s <= 0:
            return
        ips = {packed(ip) for ip in announcement.target.ips}
        added = False
        for node, peer in self.view.peers.items():
            address = self._peer_addresses.get(node)
            if address is None or not ips & peer.heartbeat.claims:
                continue
            for iface in self._usable_interfaces(announcement):
                for ip in announcement.target.ips:
                    if ":" not in ip:
                        entry = bridge.BridgeEntry(ip, address, iface.name)
                        self._bridges[entry] = now + self.settings.bridge_s
                        added = True
        if added:
            self._apply_bridges()

    def _apply_bridges(self) -> None:
        error = bridge.apply(list(self._bridges))
        if error and error != self._bridge_error:
            log.warning("cannot keep connections alive across handovers: %s", error)
        elif not error and self._bridges:
            log.info(
                "bridging connections of %s for %.0f s",
                ", ".join(sorted({f"{e.vip} to {e.previous_owner}" for e in self._bridges})),
                self.settings.bridge_s,
            )
        self._bridge_error = error or ""

    def _expire_bridges(self, now: float) -> None:
        expired = [entry for entry, until in self._bridges.items() if until <= now]
        for entry in expired:
            del self._bridges[entry]
        if expired:
            self._apply_bridges()

    def _claims_changed(self) -> None:
        self._said_version += 1
        self._claims = frozenset(packed(ip) for a in self.claimed.values() for ip in a.target.ips)

    def _start_probe(self, announcement: Announcement, now: float) -> None:
        key = announcement.target.key
        ips = [packed(ip) for ip in announcement.target.ips]
        usable = self._usable_interfaces(announcement)
        if not usable:
            return
        for ip in ips:
            self._probe_answers.pop(ip, None)
            for iface in usable:
                assert iface.announcer is not None
                iface.announcer.probe(ip)
        self._probing[key] = now + self.settings.probe_wait_s

    def _claim_ips(self, announcement: Announcement) -> None:
        for iface in self._usable_interfaces(announcement):
            assert iface.announcer is not None
            for ip in announcement.target.ips:
                iface.announcer.claim(packed(ip))

    def _release(self, key: str, reason: str, detail: str = "") -> None:
        announcement = self.claimed.pop(key, None)
        self._handover.pop(key, None)
        if announcement is None:
            return
        self._claims_changed()
        for iface in self._interfaces.values():
            if iface.announcer is not None:
                for ip in announcement.target.ips:
                    iface.announcer.release(packed(ip))
        for service in announcement.services:
            for ip in announcement.target.ips:
                self.metrics.announced.remove(service, PROTOCOL_LAYER2, self.settings.node, ip)
        self.metrics.releases.inc(reason)
        log.info(
            "stopped announcing %s (%s%s)",
            ", ".join(announcement.target.ips),
            reason,
            f": {detail}" if detail else "",
        )
        self._send_heartbeats()
        if self.leaving and not self.claimed:
            self._released_all.set()

    def _announce(self, announcement: Announcement) -> None:
        for iface in self._usable_interfaces(announcement):
            assert iface.announcer is not None
            for ip in announcement.target.ips:
                iface.announcer.announce(packed(ip))

    def _announce_if_held(self, key: str) -> None:
        announcement = self.claimed.get(key)
        if announcement is not None:
            self._announce(announcement)

    def _refresh(self) -> None:
        for announcement in list(self.claimed.values()):
            self._announce(announcement)
        assert self._loop is not None
        jitter = random.uniform(0.9, 1.1)
        self._refresher = self._loop.call_later(self.settings.refresh_s * jitter, self._refresh)

    def _on_foreign_claim(self, ip: bytes, mac: bytes) -> None:
        if mac in self._speaker_macs:
            # Another speaker (perhaps one we cannot hear right now: a partition). Heartbeats
            # and the election settle it once they flow again; it is not a foreign host.
            return
        if any(
            ip in (iface.announcer.watched if iface.announcer else ())
            for iface in self._interfaces.values()
        ):
            self._probe_answers.setdefault(ip, mac)
            return
        self.metrics.conflicts.inc(text_ip(ip))
        now = self.clock()
        if now - self._conflict_logged.get(ip, -1e9) > self.settings.conflict_retry_s:
            self._conflict_logged[ip] = now
            log.error(
                "IP conflict: host %s, which is not a speaker, claims %s, which this node "
                "announces; find that host and remove the address from it",
                _mac(mac),
                text_ip(ip),
            )
        key = next((k for k, a in self.claimed.items() if text_ip(ip) in a.target.ips), None)
        if key is not None and now - self._defended.get(key, -1e9) > 1.0:
            self._defended[key] = now  # defend once a second at most (RFC 5227 section 2.4)
            self._announce(self.claimed[key])

    # -- reporting --------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return {
            "node": self.settings.node,
            "epoch": self._epoch,
            "joining": self._joining(),
            "leaving": self.leaving,
            "interfaces": {i.name: i.up for i in self._interfaces.values()},
            "announcing": sorted(ip for a in self.claimed.values() for ip in a.target.ips),
            "peers": {
                name: {
                    "claims": sorted(text_ip(ip) for ip in peer.heartbeat.claims),
                    "leaving": peer.heartbeat.leaving,
                    "joining": peer.heartbeat.joining,
                }
                for name, peer in sorted(self.view.peers.items())
            },
            "conflicts": sorted(why for _, why in self._conflicts.values()),
            "bridges": [
                {"vip": e.vip, "to": e.previous_owner, "interface": e.interface}
                for e in sorted(self._bridges, key=lambda e: (e.vip, e.previous_owner))
            ],
            "problems": list(self.desired.problems),
            "counters": vars(self.view.counters),
        }


def _socket_name(index: int) -> str:
    return socket.if_indextoname(index)


def _mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


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
    """Run the speaker until SIGTERM or SIGINT, then hand over and exit."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Speaker(settings, source).run(stop)

    asyncio.run(main())
