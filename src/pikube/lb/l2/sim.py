"""A deterministic simulation of N speakers and their clients over the real core. Pure.

No sockets, no root, no wall clock: a virtual clock and an event queue drive real
`SpeakerCore`s (the very code the daemon runs); the network between them is a model with
partitions of every shape, loss and delay; clients follow the last gratuitous ARP or ARP reply
they received, as a LAN host does between its neighbour-cache refreshes (about 30 s, longer than
any schedule here, so no refresh rescues a stale client).

The schedules (`pikube.lb.l2.schedule`): a cold start, chaotic segments, a heal. Loss applies
to heartbeats; ARP frames (gratuitous ARP, replies, probes) are delayed but delivered: a lost
one can leave a client on a node that then vanishes, with nothing left to tell the owner (see
docs/decisions/0061). After every step the invariants (`pikube.lb.l2.invariants`) are checked;
`run` returns the first violation, or None. A run ends early once the heal is quiescent:
nothing left could change the verdict (docs/decisions/0100).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from pikube.lb.announcements import Announcement, DesiredState
from pikube.lb.election import Target
from pikube.lb.l2 import events as ev
from pikube.lb.l2 import invariants, plan
from pikube.lb.l2.core import TICK_JITTER, CoreSettings, SpeakerCore
from pikube.lb.l2.lifecycle import packed
from pikube.lb.l2.schedule import (
    INTERFACE,
    KEY,
    SETTINGS,
    Fault,
    Schedule,
    Segment,
    Shape,
    Violation,
    random_schedule,
)

QUIET_CHECK_S = 0.03  # how often the heal looks for quiescence (the run may end there)
NO_ARP = (b"", b"")
_INTERVAL_S = SETTINGS.interval_ms / 1000.0
_INF = float("inf")
_WHOLE = Shape.WHOLE  # (an enum member's lookup costs more than a global's)
_NOBODY: frozenset[str] = frozenset()
_SILENT = (ev.Note, ev.Took, ev.Gave)  # actions with nothing to carry out here
_SEND = ev.SendHeartbeat  # (a module's attribute costs more than a global)
_SETTINGS: dict[str, CoreSettings] = {}  # per node name (immutable: shared by every run)
# The elections' memo (`plan`) keeps more here: a few IPs, some ten thousand views of them.
plan.PLANS.kept = 65536
__all__ = [
    "INTERFACE", "KEY", "SETTINGS", "Fault", "Schedule", "Segment", "Shape", "Simulation",
    "Violation", "random_schedule", "run", "run_many", "summary",
]  # fmt: skip


@dataclass(slots=True)
class _Node:
    name: str
    core: SpeakerCore | None = None
    epoch: int = 0
    seq: int = 0
    link_up: bool = True
    leaving_until: float = float("inf")
    answering: set[bytes] = field(default_factory=set)
    inbox: list[ev.Received] = field(default_factory=list)
    latest: float = float("-inf")  # no heartbeat in the inbox arrives after this
    timer_at: float = float("inf")


@dataclass(slots=True)
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


_TICK, _TIMER, _SEGMENT, _FAULT, _ARP, _ANSWER = 0, 1, 2, 3, 4, 5


@dataclass
class Simulation:
    schedule: Schedule
    quiesce: bool = True  # end the run once the heal is quiescent (see `_quiescent`)
    jitter: tuple[float, float] = TICK_JITTER  # a tick's gap, in intervals (the speaker's)
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
    _cut_from: dict[str, frozenset[str]] = field(default_factory=dict)  # see `_cut`
    steps: int = 0  # events handled (each followed by the invariants' check)
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
        self._jitter_lo, self._jitter_width = self.jitter[0], self.jitter[1] - self.jitter[0]
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
        queue, nodes, end_s, pop = self._queue, self.nodes, self.end_s, heapq.heappop
        check = invariants.check  # looked up once per run (a test may put its own there)
        while queue:
            at, _, kind, name, epoch, arp = pop(queue)
            if at > end_s:
                break
            self.now = at
            if kind == _TICK:
                node = nodes[name]
                if node.core is None or node.epoch != epoch:
                    continue
                self._tick(node)
            elif kind == _TIMER:
                node = nodes[name]
                if node.core is None or node.epoch != epoch or at != node.timer_at:
                    continue
                node.timer_at = _INF
                self._deliver(node, node.core.handle(ev.TimerFired(at, self._drain(node))))
            elif kind == _ARP:
                self._arps_pending -= 1
                node = self.nodes[name]
                if node.core is None or not node.link_up:
                    continue
                if arp[0] not in node.answering and arp[0] not in node.core.watched:
                    continue  # the announcer reports only IPs it answers for or probes
                self._deliver(node, node.core.handle(ev.ForeignClaim(at, *arp)))
            elif kind == _ANSWER:  # a peer's kernel answered this node's liveness probe
                self._arps_pending -= 1
                node = self.nodes[name]
                if node.core is None or node.epoch != epoch or not node.link_up:
                    continue
                self._deliver(node, node.core.handle(ev.PeerAnswered(at, arp[1].decode())))
            elif kind == _SEGMENT:
                in_flight = self.segment.delay_max_s  # frames sent before may still arrive
                self.segment = self._segments.pop(0)
                self.segment_start = at
                self._cut_from = _cut(self.segment, self.nodes)
                self.whole_since = at if self._is_whole(self.segment) else None
                delay = max(in_flight, self.segment.delay_max_s)
                self.window_s = SETTINGS.detect_s + 2 * delay
                self.owners.clear()
                self.left.clear()
            else:
                _fault(self, *self._faults.pop(0)[1:])
                self.owners.clear()  # an owner may move after a fault: that is no flap
                self.left.clear()
                if self.whole_since is not None:
                    self.whole_since = at  # settled means whole and without faults for W
            self.steps += 1
            violation = check(self)
            if violation is not None:
                return violation
            if (
                not self._segments  # (the heal: the other tests only then)
                and self.quiesce
                and at >= self._quiet_check_at
                and not self._faults
            ):
                self._quiet_check_at = at + QUIET_CHECK_S
                if invariants.quiescent(self):  # the rest of the heal can change nothing
                    self.stopped_at = at
                    return None
        self.stopped_at = self.now
        return None

    def _push(
        self, at: float, kind: int, name: str, epoch: int = 0, arp: tuple[bytes, bytes] = NO_ARP
    ) -> None:
        self._order += 1
        if kind in (_ARP, _ANSWER):
            self._arps_pending += 1
        heapq.heappush(self._queue, (at, self._order, kind, name, epoch, arp))

    def _start(self, node: _Node, at: float) -> None:
        node.epoch += 1
        node.seq = 0
        node.inbox.clear()
        node.answering.clear()
        node.leaving_until = float("inf")
        node.timer_at = float("inf")
        settings = _SETTINGS.get(node.name)
        if settings is None:
            settings = _SETTINGS[node.name] = replace(SETTINGS, node=node.name)
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
        core = node.core
        assert core is not None
        now = self.now
        received = self._drain(node) if node.inbox else ()
        self._deliver(node, core.handle(ev.Tick(now, received)))
        if node.core is not None:  # (read again: `_deliver` may have stopped it)
            # As rng.uniform(*self.jitter) would draw it, without the call.
            at = now + _INTERVAL_S * (self._jitter_lo + self._jitter_width * self.rng.random())
            self._order += 1
            heapq.heappush(self._queue, (at, self._order, _TICK, node.name, node.epoch, NO_ARP))
        if node.answering:
            self._ask(node)

    def _drain(self, node: _Node) -> tuple[ev.Received, ...]:
        inbox = node.inbox
        if not inbox:
            return ()
        now = self.now
        if node.latest <= now:  # the usual case: everything has arrived
            ready = tuple(inbox)
            inbox.clear()
            return ready
        ready = tuple(r for r in inbox if r.arrived_s <= now)
        node.inbox = [r for r in inbox if r.arrived_s > now]
        return ready

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
            if type(action) is _SEND:  # the hot path: _blocked, _lost, _delay
                if not node.link_up or not action.interfaces:
                    continue
                node.seq += 1
                heartbeat, seq = action.heartbeat, node.seq  # numbered in Received: no copy
                segment, random, name = self.segment, self.rng.random, node.name
                loss, top = segment.loss, segment.delay_max_s
                if segment.shape is _WHOLE or (  # as _blocked says, for every receiver at once
                    segment.flap_s and int((self.now - self.segment_start) / segment.flap_s) % 2
                ):
                    blocked = _NOBODY
                else:
                    blocked = self._cut_from[name]
                undelayed = None  # without delay, every receiver gets the same value
                for other in self.nodes.values():
                    if other is node or other.core is None or not other.link_up:
                        continue
                    if other.name in blocked:
                        continue
                    if loss > 0.0 and random() < loss:
                        continue
                    if top:  # as rng.uniform(0.0, top) would draw it, without the call
                        arrives = now + (0.0 + (top - 0.0) * random())
                        other.inbox.append(ev.Received(heartbeat, name, arrives, seq))
                    else:
                        arrives = now + 0.0
                        if undelayed is None:
                            undelayed = ev.Received(heartbeat, name, arrives, seq)
                        other.inbox.append(undelayed)
                    if arrives > other.latest:  # noqa: PLR1730 (no call on the hot path)
                        other.latest = arrives
            elif not isinstance(action, _SILENT):
                _carry(self, node, action, now)
        core = node.core
        if core is not None:
            if core.leaving and (core.released_all or now >= node.leaving_until):
                core.handle(ev.Stop(now))
                node.core = None
                node.answering.clear()
                return
            wake = core.wake_at(now)
            if node.leaving_until < wake:  # noqa: PLR1730 (no call on the hot path)
                wake = node.leaving_until
            if wake < node.timer_at:
                node.timer_at = wake
                self._order += 1
                heapq.heappush(
                    self._queue, (wake, self._order, _TIMER, node.name, node.epoch, NO_ARP)
                )

    def _ask(self, node: _Node) -> None:
        """Clients with no entry for an IP ask for it (broadcast); whoever answers replies."""
        if not node.link_up or not node.answering:
            return
        for client in self.clients:
            for ip in node.answering:
                if ip not in client.entries:
                    client.hears(ip, self.now + self._delay(), node.name)

    def _check(self) -> Violation | None:
        return invariants.check(self)

    def _quiescent(self) -> bool:
        return invariants.quiescent(self)


def _fault(sim: Simulation, fault: Fault, name: str) -> None:
    """A node event of the schedule: leave, crash, return, restart, link down or up."""
    node = sim.nodes[name]
    if fault is Fault.LEAVE and node.core is not None:
        sim.leave_at = sim.now
        sim.owned_at_leave = {
            ip for ip in map(packed, sim.schedule.ips) if invariants.answering(sim, ip)
        }
        node.leaving_until = sim.now + SETTINGS.detect_s * 2 + 0.5
        sim._deliver(node, node.core.handle(ev.Leave(sim.now)))
    elif fault is Fault.CRASH and node.core is not None:
        node.core = None
        node.answering.clear()
    elif fault is Fault.RESTART or (fault is Fault.RETURN and node.core is None):
        node.core = None
        node.answering.clear()
        sim._start(node, sim.now)
    elif fault in (Fault.LINK_DOWN, Fault.LINK_UP):
        up = fault is Fault.LINK_UP
        node.link_up = up
        if node.core is not None:
            sim._deliver(node, node.core.handle(ev.LinkChanged(sim.now, INTERFACE, up)))


def _carry(sim: Simulation, node: _Node, action: ev.Action, now: float) -> None:
    """Carry out an action other than a heartbeat (those are `Simulation._deliver`'s)."""
    if isinstance(action, ev.Announce):  # the most frequent of them (bursts)
        if node.link_up and action.interfaces:
            top, random, ip = sim.segment.delay_max_s, sim.rng.random, action.ip
            for client in sim.clients:  # each delay as rng.uniform(0.0, top) draws it
                client.hears(ip, now + (0.0 + (top - 0.0) * random() if top else 0.0), node.name)
            # Other speakers see it too (partitions here drop heartbeats, not ARP).
            mac = sim.macs[node.name]
            for other in sim.nodes.values():
                if other is not node and other.core is not None:
                    delay = 0.0 + (top - 0.0) * random() if top else 0.0
                    sim._push(now + delay, _ARP, other.name, 0, (ip, mac))
    elif isinstance(action, ev.Claim):
        node.answering.add(action.ip)
        sim.took_at[node.name, action.ip] = now
    elif isinstance(action, ev.Release):
        node.answering.discard(action.ip)
    elif isinstance(action, ev.Probe) and node.link_up and action.interfaces:
        for other in sim.nodes.values():  # whoever answers for it replies
            if other.core is not None and other.link_up and action.ip in other.answering:
                answer = (action.ip, sim.macs[other.name])
                sim._push(now + 2 * sim._delay(), _ARP, node.name, 0, answer)
    elif isinstance(action, ev.ProbePeer) and node.link_up and action.interfaces:
        _answer_probe(sim, node, action.address, now)


def _cut(segment: Segment, nodes: dict[str, _Node]) -> dict[str, frozenset[str]]:
    """Whom each node's heartbeats do not reach in this segment (while it is not flapping
    whole): what `Simulation._blocked` says, for every pair at once."""
    if segment.shape is _WHOLE:
        return dict.fromkeys(nodes, _NOBODY)
    group = segment.group
    shape = segment.shape
    cut = {}
    for sender in nodes:
        if shape is Shape.SYMMETRIC:
            blocked = {r for r in nodes if (sender in group) != (r in group)}
        elif shape is Shape.ONE_WAY:
            blocked = {r for r in nodes if r in group and sender not in group}
        elif shape is Shape.DEAF:
            blocked = {r for r in nodes if r in group}
        else:  # MUTE
            blocked = set(nodes) if sender in group else set()
        cut[sender] = frozenset(blocked)
    return cut


def _answer_probe(sim: Simulation, node: _Node, address: str, now: float) -> None:
    """The peer's kernel answers a liveness probe while its link is up, its daemon alive or
    not; the probes (two) and the answer cross the network as heartbeats do."""
    other = sim.nodes[address]  # the simulation's addresses are node names
    if (
        other.link_up
        and not sim._blocked(node.name, other.name)
        and not sim._blocked(other.name, node.name)
        and not (sim._lost() and sim._lost())
        and not sim._lost()
    ):
        answer = (b"", other.name.encode())
        sim._push(now + 2 * sim._delay(), _ANSWER, node.name, node.epoch, answer)


def summary(sim: Simulation) -> str:
    """The run's outcome in words, to compare runs: steps, end, every node's state (view,
    counters, what it answers for, its targets' states), the clients' ARP tables, the owners
    seen, and where the random streams stand (the same draws in the same order)."""
    parts = [f"steps {sim.steps} end {sim.stopped_at!r} rng {hash(sim.rng.getstate()[1])}"]
    for node in sim.nodes.values():
        core = node.core
        parts.append(
            f"{node.name} e{node.epoch} s{node.seq} link {node.link_up} "
            f"answering {sorted(node.answering)} inbox {len(node.inbox)}"
        )
        if core is not None:
            parts.append(
                f"  peers {sorted(core.view.peers)} {asdict(core.view.counters)} "
                f"states {[(k, life.state.value) for k, life in sorted(core.lives.items())]} "
                f"leaving {core.leaving} rng {hash(core.rng.getstate()[1])}"
            )
    for i, client in enumerate(sim.clients):
        parts.append(f"client {i} {sorted(client.entries.items())}")
    parts.append(f"owners {sorted(sim.owners.items())} took {sorted(sim.took_at.items())}")
    return "\n".join(parts)


def run(schedule: Schedule, jitter: tuple[float, float] = TICK_JITTER) -> Violation | None:
    return Simulation(schedule, jitter=jitter).run()


def run_many(
    seeds: range,
    stop: Callable[[Violation], bool] = lambda _: False,
    jitter: tuple[float, float] = TICK_JITTER,
) -> tuple[int, list[Violation]]:
    """Run the schedules of these seeds (ticks with this jitter); (schedules run, violations
    found)."""
    found: list[Violation] = []
    count = 0
    for seed in seeds:
        count += 1
        violation = run(random_schedule(seed), jitter)
        if violation is not None:
            found.append(violation)
            if stop(violation):
                break
    return count, found
