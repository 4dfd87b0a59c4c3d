"""A deterministic simulation of N speakers and their clients over the real core. Pure.

No sockets, no root, no wall clock: a virtual clock and an event queue drive real
`SpeakerCore`s (the very code the daemon runs); the network between them is a model with
partitions of every shape, loss and delay; clients follow the last gratuitous ARP or ARP reply
they received, as a LAN host does between its neighbour-cache refreshes (about 30 s, longer than
any schedule here, so no refresh rescues a stale client).

A `Schedule` is: a cold start on a whole network, a few chaotic segments (each a partition
shape, flapping or not, with loss and delay, and node events: crash, return, restart, link
down/up), then a heal: a whole network, no loss, for long enough to settle, perhaps with a
planned leave (SIGTERM). Loss applies to heartbeats; ARP frames (gratuitous ARP, replies,
probes) are delayed but delivered: a lost one can leave a client on a node that then vanishes,
with nothing left to tell the owner (see docs/decisions/0061). After every step the invariants
are checked; `run` returns the first violation, or None.

Invariants, with W = one detection time + twice the largest delay (of the segment, or of the
one before it, whose frames may still be in flight):
- one owner: from W after the network became whole (and after its last fault), at most one
  node announces each IP;
- clients follow: every client names the owner by W after the heal, or (for an owner that took
  over later, perhaps racing another node that took over at the same instant) by W after;
- no flapping: while the network stays whole (after W), no IP goes back to a node it left;
- planned handover: after a node starts leaving, an IP that had an owner always has one.
"""

from __future__ import annotations

import enum
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pikube.lb.announcements import Announcement, DesiredState
from pikube.lb.election import Target
from pikube.lb.l2 import events as ev
from pikube.lb.l2.core import CoreSettings, SpeakerCore
from pikube.lb.l2.lifecycle import IPState, packed, text_ip
from pikube.lb.membership.protocol import Heartbeat

KEY = b"pikube-simulation-key-0123456789"
INTERFACE = "eth0"


class Shape(enum.Enum):
    """Which heartbeats a segment's network drops (clients always hear live links)."""

    WHOLE = "whole"
    SYMMETRIC = "symmetric"  # two groups that cannot hear each other
    ONE_WAY = "one-way"  # group A does not hear group B; B hears A
    DEAF = "deaf"  # one node hears nobody; everybody hears it
    MUTE = "mute"  # nobody hears one node; it hears everybody


_SETTLED = frozenset({IPState.STANDBY, IPState.ANNOUNCING})


class Fault(enum.Enum):
    CRASH = "crash"
    RETURN = "return"
    RESTART = "restart"
    LINK_DOWN = "link-down"
    LINK_UP = "link-up"
    LEAVE = "leave"  # SIGTERM: hand over, then exit


@dataclass(frozen=True)
class Segment:
    duration_s: float
    shape: Shape
    group: frozenset[str] = frozenset()  # the shape's group A, or its one node
    flap_s: float = 0.0  # > 0: alternate between the shape and whole every flap_s
    loss: float = 0.0
    delay_max_s: float = 0.0
    faults: tuple[tuple[float, Fault, str], ...] = ()  # (offset, what, node)


@dataclass(frozen=True)
class Schedule:
    seed: int
    nodes: tuple[str, ...]
    ips: tuple[str, ...]
    clients: int
    start_s: float  # the cold start, whole
    segments: tuple[Segment, ...]
    heal: Segment  # whole, no loss

    def describe(self) -> str:
        parts = [f"seed {self.seed}: {len(self.nodes)} nodes, {len(self.ips)} IPs"]
        for s in self.segments:
            flap = f" flapping every {s.flap_s * 1000:.0f} ms" if s.flap_s else ""
            group = ",".join(sorted(s.group))
            faults = "".join(f"; {f.value} {n} at +{t * 1000:.0f} ms" for t, f, n in s.faults)
            parts.append(
                f"{s.duration_s * 1000:.0f} ms {s.shape.value}({group}){flap} loss {s.loss:.2f} "
                f"delay<={s.delay_max_s * 1000:.0f} ms{faults}"
            )
        leave = "".join(f"; {f.value} {n} at +{t * 1000:.0f} ms" for t, f, n in self.heal.faults)
        parts.append(f"heal {self.heal.duration_s * 1000:.0f} ms{leave}")
        return " | ".join(parts)


@dataclass(frozen=True)
class Violation:
    schedule: Schedule
    at_s: float
    what: str

    def __str__(self) -> str:
        return f"at {self.at_s * 1000:.0f} ms: {self.what} [{self.schedule.describe()}]"


SETTINGS = CoreSettings(
    node="",
    key=KEY,
    interval_ms=60,
    multiplier=3,
    probe_wait_s=0.06,
    startup_grace_s=0.3,  # the daemon's is 2 s; shorter here to keep schedules short
    bridge_s=0.0,  # connection bridges are nftables rules: nothing to model
)
HEAL_DELAY_MAX_S = 0.002
QUIET_CHECK_S = 0.03  # how often the heal looks for quiescence (the run may end there)
INF = float("inf")
NO_ARP = (b"", b"")


def random_schedule(seed: int) -> Schedule:
    rng = random.Random(seed)
    nodes = tuple(f"node{i:02d}" for i in range(1, rng.randint(2, 4) + 1))
    ips = tuple(f"198.51.100.{230 + i}" for i in range(rng.randint(1, 3)))
    segments = tuple(_random_segment(rng, nodes) for _ in range(rng.randint(1, 3)))
    crashed: set[str] = set()
    link_down: set[str] = set()
    for segment in segments:
        for _, fault, node in segment.faults:
            if fault is Fault.CRASH:
                crashed.add(node)
            elif fault in (Fault.RETURN, Fault.RESTART):
                crashed.discard(node)
            elif fault is Fault.LINK_DOWN:
                link_down.add(node)
            elif fault is Fault.LINK_UP:
                link_down.discard(node)
    faults: tuple[tuple[float, Fault, str], ...] = ()
    live = [n for n in nodes if n not in crashed | link_down]
    detect = SETTINGS.detect_s
    if len(live) >= 2 and rng.random() < 0.25:
        faults = ((detect * 2 + rng.uniform(0, 0.3), Fault.LEAVE, rng.choice(live)),)
    heal = Segment(detect * 2 + 1.0, Shape.WHOLE, delay_max_s=HEAL_DELAY_MAX_S, faults=faults)
    start = SETTINGS.startup_grace_s + detect + 0.3
    return Schedule(seed, nodes, ips, rng.randint(1, 2), start, segments, heal)


def _random_segment(rng: random.Random, nodes: tuple[str, ...]) -> Segment:
    shape = rng.choice(list(Shape))
    if shape in (Shape.DEAF, Shape.MUTE):
        group = frozenset({rng.choice(nodes)})
    else:
        cut = rng.randint(1, len(nodes) - 1)
        group = frozenset(rng.sample(nodes, cut))
    duration = rng.uniform(0.1, 1.2)
    faults = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        fault = rng.choice(
            (Fault.CRASH, Fault.RESTART, Fault.LINK_DOWN, Fault.RETURN, Fault.LINK_UP)
        )
        faults.append((rng.uniform(0, duration), fault, rng.choice(nodes)))
    return Segment(
        duration_s=duration,
        shape=shape,
        group=group,
        flap_s=rng.choice((0.0, 0.0, rng.uniform(0.03, 0.3))),
        loss=rng.choice((0.0, 0.0, 0.05, 0.3)),
        delay_max_s=rng.choice((0.0, 0.002, 0.01)),
        faults=tuple(sorted(faults)),
    )


@dataclass
class _Node:
    name: str
    core: SpeakerCore | None = None
    epoch: int = 0
    seq: int = 0
    link_up: bool = True
    leaving_until: float = float("inf")
    answering: set[bytes] = field(default_factory=set)
    inbox: list[ev.Received] = field(default_factory=list)
    timer_at: float = float("inf")


@dataclass
class _Client:
    entries: dict[bytes, list[tuple[float, str]]] = field(default_factory=dict)

    def hears(self, ip: bytes, arrival: float, node: str) -> None:
        self.entries.setdefault(ip, []).append((arrival, node))

    def names(self, ip: bytes, now: float) -> str | None:
        entries = self.entries.get(ip)
        if entries is not None and len(entries) == 1:  # the usual case: nothing new
            arrival, node = entries[0]
            return node if arrival <= now else None
        heard = [e for e in entries or () if e[0] <= now]
        if not heard:
            return None
        latest = max(heard)
        self.entries[ip] = [latest, *(e for e in self.entries[ip] if e[0] > now)]
        return latest[1]


_TICK, _TIMER, _SEGMENT, _FAULT, _ARP = 0, 1, 2, 3, 4


@dataclass
class Simulation:
    schedule: Schedule
    quiesce: bool = True  # end the run once the heal is quiescent (see `_quiescent`)
    rng: random.Random = field(init=False)
    now: float = 0.0
    nodes: dict[str, _Node] = field(default_factory=dict)
    clients: list[_Client] = field(default_factory=list)
    segment: Segment = field(init=False)
    segment_start: float = 0.0
    whole_since: float | None = 0.0
    leave_at: float | None = None
    owned_at_leave: set[bytes] = field(default_factory=set)
    owners: dict[bytes, str] = field(default_factory=dict)  # while whole, after W
    left: dict[bytes, set[str]] = field(default_factory=dict)
    took_at: dict[tuple[str, bytes], float] = field(default_factory=dict)
    _queue: list[tuple[float, int, int, str, int, tuple[bytes, bytes]]] = field(
        default_factory=list
    )
    _order: int = 0
    _arps_pending: int = 0
    _quiet_check_at: float = 0.0
    stopped_at: float = 0.0  # when the run ended: the schedule's end, or once quiescent
    desired: DesiredState = field(init=False)

    def __post_init__(self) -> None:
        s = self.schedule
        self.rng = random.Random(s.seed ^ 0x5EED)
        self.segment = Segment(s.start_s, Shape.WHOLE)
        self.clients = [_Client() for _ in range(s.clients)]
        self.desired = DesiredState(
            tuple(
                Announcement(Target(ip, (ip,)), (f"default/svc{i}",)) for i, ip in enumerate(s.ips)
            )
        )
        self.window_s = SETTINGS.detect_s
        self._packed_ips = tuple(packed(ip) for ip in s.ips)
        self._ip_keys = {packed(ip): ip for ip in s.ips}
        self.macs = {name: bytes([2, 0, 0, 0, 0, 0x21 + i]) for i, name in enumerate(s.nodes)}
        for name in s.nodes:
            self.nodes[name] = _Node(name)
            self._start(self.nodes[name], self.rng.uniform(0, 0.1))
        at = s.start_s
        for segment in (*s.segments, s.heal):
            self._push(at, _SEGMENT, "")
            for offset, _, _ in segment.faults:
                self._push(at + offset, _FAULT, "")
            at += segment.duration_s
        self.end_s = at
        self._segments = [*s.segments, s.heal]
        self._faults: list[tuple[float, Fault, str]] = sorted(
            (start + off, fault, node)
            for start, seg in zip(self._starts(), self._segments, strict=True)
            for off, fault, node in seg.faults
        )

    def _starts(self) -> list[float]:
        starts, at = [], self.schedule.start_s
        for segment in self._segments:
            starts.append(at)
            at += segment.duration_s
        return starts

    # -- running ----------------------------------------------------------------------------

    def run(self) -> Violation | None:
        queue = self._queue
        while queue:
            at, _, kind, name, epoch, arp = heapq.heappop(queue)
            if at > self.end_s:
                break
            self.now = at
            if kind == _TICK:
                node = self.nodes[name]
                if node.core is None or node.epoch != epoch:
                    continue
                self._tick(node)
            elif kind == _TIMER:
                node = self.nodes[name]
                if node.core is None or node.epoch != epoch or at != node.timer_at:
                    continue
                node.timer_at = float("inf")
                self._deliver(node, node.core.handle(ev.TimerFired(at, self._drain(node))))
            elif kind == _ARP:
                self._arps_pending -= 1
                node = self.nodes[name]
                if node.core is None or not node.link_up:
                    continue
                if arp[0] not in node.answering and arp[0] not in node.core.watched:
                    continue  # the announcer reports only IPs it answers for or probes
                self._deliver(node, node.core.handle(ev.ForeignClaim(at, *arp)))
            elif kind == _SEGMENT:
                in_flight = self.segment.delay_max_s  # frames sent before may still arrive
                self.segment = self._segments.pop(0)
                self.segment_start = at
                self.whole_since = at if self._is_whole(self.segment) else None
                delay = max(in_flight, self.segment.delay_max_s)
                self.window_s = SETTINGS.detect_s + 2 * delay
                self.owners.clear()
                self.left.clear()
            else:
                self._fault(*self._faults.pop(0)[1:])
                self.owners.clear()  # an owner may move after a fault: that is no flap
                self.left.clear()
                if self.whole_since is not None:
                    self.whole_since = at  # settled means whole and without faults for W
            violation = self._check()
            if violation is not None:
                return violation
            if (
                self.quiesce
                and at >= self._quiet_check_at
                and not self._segments
                and not self._faults
            ):
                self._quiet_check_at = at + QUIET_CHECK_S
                if self._quiescent():  # the rest of the heal can change nothing
                    self.stopped_at = at
                    return None
        self.stopped_at = self.now
        return None

    def _push(
        self, at: float, kind: int, name: str, epoch: int = 0, arp: tuple[bytes, bytes] = NO_ARP
    ) -> None:
        self._order += 1
        if kind == _ARP:
            self._arps_pending += 1
        heapq.heappush(self._queue, (at, self._order, kind, name, epoch, arp))

    def _start(self, node: _Node, at: float) -> None:
        node.epoch += 1
        node.seq = 0
        node.inbox.clear()
        node.answering.clear()
        node.leaving_until = float("inf")
        node.timer_at = float("inf")
        settings = replace(SETTINGS, node=node.name)
        node.core = SpeakerCore(
            settings,
            node.epoch,
            self.macs[node.name],
            {INTERFACE: node.link_up},
            at,
            random.Random(node.epoch),
        )
        self._deliver(node, node.core.handle(ev.Configured(at, self.desired)), at)
        self._push(at, _TICK, node.name, node.epoch)

    def _tick(self, node: _Node) -> None:
        assert node.core is not None
        self._deliver(node, node.core.handle(ev.Tick(self.now, self._drain(node))))
        if node.core is not None:
            interval = SETTINGS.interval_ms / 1000.0
            at = self.now + interval * self.rng.uniform(0.85, 1.0)
            self._push(at, _TICK, node.name, node.epoch)
        self._ask(node)

    def _drain(self, node: _Node) -> tuple[ev.Received, ...]:
        if not node.inbox:
            return ()
        now = self.now
        ready = tuple(r for r in node.inbox if r.arrived_s <= now)
        node.inbox = [r for r in node.inbox if r.arrived_s > now]
        return ready

    def _fault(self, fault: Fault, name: str) -> None:
        node = self.nodes[name]
        if fault is Fault.LEAVE and node.core is not None:
            self.leave_at = self.now
            self.owned_at_leave = {
                ip for ip in map(packed, self.schedule.ips) if self._answering(ip)
            }
            node.leaving_until = self.now + SETTINGS.detect_s * 2 + 0.5
            self._deliver(node, node.core.handle(ev.Leave(self.now)))
        elif fault is Fault.CRASH and node.core is not None:
            node.core = None
            node.answering.clear()
        elif fault is Fault.RESTART or (fault is Fault.RETURN and node.core is None):
            node.core = None
            node.answering.clear()
            self._start(node, self.now)
        elif fault in (Fault.LINK_DOWN, Fault.LINK_UP):
            up = fault is Fault.LINK_UP
            node.link_up = up
            if node.core is not None:
                self._deliver(node, node.core.handle(ev.LinkChanged(self.now, INTERFACE, up)))

    # -- the network ------------------------------------------------------------------------

    def _is_whole(self, segment: Segment) -> bool:
        return segment.shape is Shape.WHOLE and segment.loss == 0.0

    def _blocked(self, sender: str, receiver: str) -> bool:
        segment = self.segment
        shape = segment.shape
        if shape is Shape.WHOLE:
            return False
        if segment.flap_s and int((self.now - self.segment_start) / segment.flap_s) % 2:
            return False
        group = segment.group
        if shape is Shape.SYMMETRIC:
            return (sender in group) != (receiver in group)
        if shape is Shape.ONE_WAY:
            return receiver in group and sender not in group
        if shape is Shape.DEAF:
            return receiver in group
        return sender in group  # MUTE

    def _lost(self) -> bool:
        loss = self.segment.loss
        return loss > 0.0 and self.rng.random() < loss

    def _delay(self) -> float:
        top = self.segment.delay_max_s
        return self.rng.uniform(0.0, top) if top else 0.0

    def _deliver(self, node: _Node, actions: list[ev.Action], at: float | None = None) -> None:
        now = self.now if at is None else at
        for action in actions:
            kind = type(action)
            if kind is ev.SendHeartbeat:  # the hot path: _blocked, _lost, _delay inlined
                assert isinstance(action, ev.SendHeartbeat)
                if not node.link_up or not action.interfaces:
                    continue
                node.seq += 1
                heartbeat, seq = action.heartbeat, node.seq  # numbered in Received: no copy
                segment, rng, name = self.segment, self.rng, node.name
                whole, loss, top = segment.shape is Shape.WHOLE, segment.loss, segment.delay_max_s
                for other in self.nodes.values():
                    if other is node or other.core is None or not other.link_up:
                        continue
                    if not whole and self._blocked(name, other.name):
                        continue
                    if loss > 0.0 and rng.random() < loss:
                        continue
                    delay = rng.uniform(0.0, top) if top else 0.0
                    other.inbox.append(ev.Received(heartbeat, name, now + delay, seq))
            elif kind is ev.Note or kind is ev.Took or kind is ev.Gave:
                continue
            elif isinstance(action, ev.Claim):
                node.answering.add(action.ip)
                self.took_at[node.name, action.ip] = now
            elif isinstance(action, ev.Release):
                node.answering.discard(action.ip)
            elif isinstance(action, ev.Probe) and node.link_up and action.interfaces:
                for other in self.nodes.values():  # whoever answers for it replies
                    if other.core is not None and other.link_up and action.ip in other.answering:
                        answer = (action.ip, self.macs[other.name])
                        self._push(now + 2 * self._delay(), _ARP, node.name, 0, answer)
            elif isinstance(action, ev.Announce) and node.link_up and action.interfaces:
                for client in self.clients:
                    client.hears(action.ip, now + self._delay(), node.name)
                # Other speakers see it too (partitions here drop heartbeats, not ARP).
                mac = self.macs[node.name]
                for other in self.nodes.values():
                    if other is not node and other.core is not None:
                        self._push(now + self._delay(), _ARP, other.name, 0, (action.ip, mac))
        core = node.core
        if core is not None:
            if core.leaving and (core.released_all or now >= node.leaving_until):
                core.handle(ev.Stop(now))
                node.core = None
                node.answering.clear()
                return
            wake = core.wake_at(now)
            wake = min(wake, node.leaving_until)
            if wake < node.timer_at:
                node.timer_at = wake
                self._push(wake, _TIMER, node.name, node.epoch)

    def _ask(self, node: _Node) -> None:
        """Clients with no entry for an IP ask for it (broadcast); whoever answers replies."""
        if not node.link_up or not node.answering:
            return
        for client in self.clients:
            for ip in node.answering:
                if ip not in client.entries:
                    client.hears(ip, self.now + self._delay(), node.name)

    def _quiescent(self) -> bool:
        """Nothing can change any more: the rest of the schedule would keep every invariant.

        The network is whole, lossless and settled, and stays so (no segment or fault is left);
        no ARP frame is in flight; every live node has finished joining, its grace and any
        leave, and holds no target in a transient state (probing, conflict, handing over: no
        target deadline is armed); every live node's view holds exactly the other live nodes,
        each as it speaks now, and every heartbeat in flight says the same again; each IP has
        at most one owner, and every client names it, with nothing else on its way to them.
        From there each core only receives heartbeats it already has, so no election runs
        again; what is left are the owners' burst and refresh announcements, which tell
        clients what they already know.
        """
        now = self.now
        if self._arps_pending or self.whole_since is None:
            return False
        if now < self.whole_since + self.window_s:
            return False
        live = {n.name: n for n in self.nodes.values() if n.core is not None and n.link_up}
        speaking: dict[str, Heartbeat] = {}
        for name, node in live.items():
            core = node.core
            assert core is not None
            if core.leaving or core.rejoined or core.contested or now < core.joining_until:
                return False
            if (
                core._was_joining
                or core._last_evaluated < core.started_at + SETTINGS.startup_grace_s
            ):
                return False
            for life in core.lives.values():
                if life.deadline != INF or life.state not in _SETTLED:
                    return False
            speaking[name] = core.heartbeat(now)
        for node in live.values():
            core = node.core
            assert core is not None
            peers = core.view.peers
            if len(peers) != len(live) - 1:
                return False
            for other, peer in peers.items():
                said = speaking.get(other)
                if said is None or peer.heartbeat != said:
                    return False
            for item in node.inbox:
                heartbeat = item.heartbeat
                assert isinstance(heartbeat, Heartbeat)
                if speaking.get(heartbeat.node) != heartbeat:
                    return False
        for ip in self._packed_ips:
            owners = self._announcing(ip)
            if len(owners) > 1:
                return False
            others = [n.name for n in live.values() if ip in n.answering and n.name not in owners]
            if others:
                return False
            if not owners:
                continue
            for client in self.clients:
                entries = client.entries.get(ip, ())
                if client.names(ip, now) != owners[0]:
                    return False
                if any(node != owners[0] for arrival, node in entries if arrival > now):
                    return False
        return True

    # -- invariants -------------------------------------------------------------------------

    def _answering(self, ip: bytes) -> list[str]:
        return [n.name for n in self.nodes.values() if n.core is not None and ip in n.answering]

    def _announcing(self, ip: bytes) -> list[str]:
        """Nodes announcing `ip` as its owner (not those handing it over)."""
        found = []
        for node in self.nodes.values():
            if node.core is None or ip not in node.answering:
                continue
            life = node.core.lives.get(self._ip_keys[ip])
            if life is not None and life.state is IPState.ANNOUNCING:
                found.append(node.name)
        return found

    def _check(self) -> Violation | None:
        now = self.now
        if self.leave_at is not None:
            for ip in self.owned_at_leave:
                if not self._answering(ip):
                    return self._violation(f"{text_ip(ip)} unowned during a planned handover")
        if self.whole_since is None or now < self.whole_since + self.window_s:
            return None
        for ip in self._packed_ips:
            owners = self._announcing(ip)
            if len(owners) > 1:
                return self._violation(f"{text_ip(ip)} has {len(owners)} owners: {owners}")
            if not owners:
                continue
            owner = owners[0]
            previous = self.owners.get(ip)
            if previous != owner:
                if owner in self.left.setdefault(ip, set()):
                    return self._violation(f"{text_ip(ip)} flapped back to {owner}")
                if previous is not None:
                    self.left[ip].add(previous)
                self.owners[ip] = owner
            due = max(
                self.whole_since + self.window_s,
                self.took_at.get((owner, ip), 0.0) + self.window_s,
            )
            if now < due:
                continue
            for i, client in enumerate(self.clients):
                named = client.names(ip, now)
                if named != owner:
                    return self._violation(
                        f"client {i} names {named} for {text_ip(ip)}, owned by {owner}"
                    )
        return None

    def _violation(self, what: str) -> Violation:
        return Violation(self.schedule, self.now, what)


def run(schedule: Schedule) -> Violation | None:
    return Simulation(schedule).run()


def run_many(
    seeds: range, stop: Callable[[Violation], bool] = lambda _: False
) -> tuple[int, list[Violation]]:
    """Run the schedules of these seeds; (schedules run, violations found)."""
    found: list[Violation] = []
    count = 0
    for seed in seeds:
        count += 1
        violation = run(random_schedule(seed))
        if violation is not None:
            found.append(violation)
            if stop(violation):
                break
    return count, found
