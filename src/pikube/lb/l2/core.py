"""The speaker's decisions on one node: events in, actions out. Pure: no sockets, no clock.

Rules of this module: everything a speaker decides lives here or below it (`lifecycle` for one
target's states, `election` for who should own what, `membership.protocol` for who is live);
the speaker (`pikube.lb.speaker`) and the simulation (`pikube.lb.l2.sim`) only carry events in
and carry the actions out. Randomness (jitter) comes from the `rng` given.

Theory of operation
-------------------
- Membership: heartbeats arrive in batches (`Tick`, `TimerFired`); a peer silent for its
  detection time is dropped, or earlier when it is late and its kernel does not answer an ARP
  probe either (`liveness`). A change (a peer joined, died, claims something new) re-runs the
  election; so do configuration changes, links going up or down, and a target's deadline.
- Join: after start, and after an interface comes back, the node listens for one detection
  time (its heartbeats say JOINING) before it takes part, so it learns the claims first.
- Each evaluation narrows every target to the speakers able to take it now
  (`election.candidates`), elects an owner per target (`election.elect`), gives each target a
  verdict and moves it through `lifecycle.TRANSITIONS`.
- Healing a split brain: when a target this node keeps was also claimed by others and they
  withdraw, or when a peer comes (back) into view, the node announces what it holds again in a
  burst, so clients that followed the loser come back within the detection time.
- Leave: heartbeats say LEAVING, peers take over, each target is released when its new owner
  claims it; `Stop` releases what is left.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from pikube.lb.announcements import Announcement, DesiredState
from pikube.lb.l2 import events as ev
from pikube.lb.l2.bridge import BridgeEntry
from pikube.lb.l2.decide import evaluate, foreign_claim
from pikube.lb.l2.lifecycle import IPState, TargetLife, packed, text_ip
from pikube.lb.l2.liveness import CONFIRM_S, Liveness
from pikube.lb.membership import protocol

GARP_BURST_S = (0.0, 0.05, 0.25, 1.0, 2.0)  # after a takeover, and after a split brain heals
# The next tick comes interval x uniform(*TICK_JITTER) after this one (the speaker's loop and
# the simulation's model). Jitter only shortens an interval: every margin of the detection is
# taken from the longest gap, one interval (docs/decisions/0109). 95-100 %: the simulation finds
# it as safe as 85-100 % (0109), and an idle speaker wakes 5 % less often (0165).
TICK_JITTER = (0.95, 1.0)
_STALE, _UNCHANGED, _JOINED = protocol.Change.STALE, protocol.Change.NONE, protocol.Change.JOINED
_INF = float("inf")


@dataclass(frozen=True)
class CoreSettings:
    node: str
    key: bytes
    interval_ms: int = 60
    multiplier: int = 3
    probe_wait_s: float = 0.06
    conflict_retry_s: float = 10.0
    # At a cold start nobody holds anything yet: a speaker waits this long before taking IPs
    # no speaker ever held, so that speakers started together share them out.
    startup_grace_s: float = 2.0
    bridge_s: float = 60.0  # keep connections alive across planned handovers (0: off)
    refresh_s: float = 30.0  # periodic gratuitous ARP so switch FDB entries never age out
    burst_s: tuple[float, ...] = GARP_BURST_S
    confirm_s: float = CONFIRM_S  # a late peer's kernel must answer by then (0: never ask)

    @property
    def detect_s(self) -> float:
        return self.interval_ms * self.multiplier / 1000.0


@dataclass(slots=True)
class SpeakerCore:
    settings: CoreSettings
    epoch: int
    mac: bytes
    interfaces: dict[str, bool]  # announcing interfaces: up?
    started_at: float
    rng: random.Random = field(default_factory=random.Random)
    view: protocol.View = field(init=False)
    liveness: Liveness = field(init=False)
    desired: DesiredState = field(default_factory=DesiredState)
    lives: dict[str, TargetLife] = field(default_factory=dict)
    leaving: bool = False
    joining_until: float = field(init=False)
    speaker_ips: set[bytes] = field(default_factory=set)  # ever claimed by some speaker
    speaker_macs: set[bytes] = field(default_factory=set)  # of every speaker ever heard
    peer_addresses: dict[str, str] = field(default_factory=dict)
    bridges: dict[BridgeEntry, float] = field(default_factory=dict)  # entry: expiry
    probe_answers: dict[bytes, bytes] = field(default_factory=dict)  # probed ip: mac
    watched: set[bytes] = field(default_factory=set)  # being probed
    _conflict_noted: dict[bytes, float] = field(default_factory=dict)
    _heartbeat: protocol.Heartbeat | None = None
    rejoined: bool = False  # a peer came into view since the last evaluation
    contested: set[bytes] = field(default_factory=set)  # held IPs a peer claimed since then
    mac_nodes: dict[bytes, str] = field(default_factory=dict)  # speaker MAC: node
    arp_rivals: dict[str, set[bytes]] = field(default_factory=dict)  # announced our IPs
    _was_joining: bool = True
    _last_evaluated: float = -1e9
    _watch_at: float = float("inf")  # a peer that missed a heartbeat: its deadline
    _refresh_at: float = float("inf")
    _wake_cache: float | None = None
    _up: tuple[str, ...] | None = None
    _sending: ev.SendHeartbeat | None = None

    def __post_init__(self) -> None:
        self.view = protocol.View(self.settings.node)
        self.liveness = Liveness(self.settings.confirm_s)
        self.joining_until = self.started_at + self.settings.detect_s
        self._refresh_at = self.started_at + self.settings.refresh_s

    # -- events -----------------------------------------------------------------------------

    def handle(self, event: ev.Event) -> list[ev.Action]:
        out: list[ev.Action] = []
        if type(event) is ev.Tick:  # the hot path: once per interval
            self._tick(event.now, event.received, out)
            return out
        self._wake_cache = None
        if type(event) is ev.TimerFired:  # the next most frequent, then foreign claims
            self._timer(event.now, event.received, out)
            return out
        if type(event) is ev.ForeignClaim:
            foreign_claim(self, event.now, event.ip, event.mac, out)
            return out
        match event:
            case ev.Configured(now, desired):
                for problem in set(desired.problems) - set(self.desired.problems):
                    out.append(ev.Note(logging.WARNING, problem))
                self.desired = desired
                self._evaluate(now, out)
            case ev.LinkChanged(now, name, up):
                self._link(now, name, up, out)
            case ev.PeerAnswered(now, address):
                self.liveness.answer(now, address)
            case ev.Leave(now):
                self.leaving = True
                self._heartbeat = None
                out.append(ev.Note(logging.INFO, f"leaving: handing over {len(self.held())}"))
                self._evaluate(now, out, heartbeat=True)
            case ev.Stop(now):
                for life in self.lives.values():
                    if life.holding:
                        self._release(life, "leaving", out)
                out.append(self._send(now))
        return out

    def quiet_tick(
        self, now: float, received: Sequence[protocol.Datagram]
    ) -> ev.SendHeartbeat | None:
        """`handle(Tick(now, received))` for an idle speaker, in one pass and without events:
        when every datagram repeats its sender's last heartbeat, every peer is on time, no
        rival's withdrawal is awaited and the node is not leaving, the tick's one action is our
        heartbeat, returned. Otherwise None, with nothing changed: the caller hands the same
        datagrams to `handle`. (tests/unit/lb/test_quiet_tick.py runs both ways in lockstep.)"""
        if self.arp_rivals or self.leaving:
            return None
        if not self.view.repeated(received, self.settings.key, now):
            return None
        return self._send(now)

    def _tick(self, now: float, received: Sequence[ev.Received], out: list[ev.Action]) -> None:
        changed = _receive(self, received, out) if received else False
        if self.view.all_on_time(now):  # an idle speaker's path: none can be late or expired
            if changed:
                self._evaluate(now, out)
            out.append(self._send(now))
            return
        if self._expire(now, out) or changed:
            self._evaluate(now, out)
        out.append(self._send(now))
        self.liveness.ask(now, self.view.peers, self.peer_addresses, self.up_interfaces(), out)
        # A peer that missed a heartbeat gets a precise wake-up at its deadline, so that its
        # death is noticed at once rather than at the next tick.
        late = now - self.settings.interval_ms * 1.5 / 1000.0
        for peer in self.view.peers.values():
            if peer.last_heard_s < late and peer.deadline_s < self._watch_at:
                self._watch_at = peer.deadline_s

    def _timer(self, now: float, received: Sequence[ev.Received], out: list[ev.Action]) -> None:
        # Heartbeats that arrived while this process was not scheduled count before any peer
        # is declared dead: a stall of this speaker must not look like a dead peer.
        changed = _receive(self, received, out)
        if self._watch_at <= now:
            self._watch_at = float("inf")
        grace_end = self.started_at + self.settings.startup_grace_s
        gone = self._expire(now, out)
        gone = self.liveness.confirm(now, self.view, out) or gone
        # Joining ends: peers must know at once that this node is a candidate now. Until its
        # next tick they would elect without it, and take over alongside it (decision 0109).
        joined = self._was_joining and now >= self.joining_until
        due = (
            gone
            or changed
            or joined
            or self._last_evaluated < grace_end <= now
            or any(life.deadline <= now for life in self.lives.values())
        )
        if due:
            self._evaluate(now, out, heartbeat=joined)
        for life in self.lives.values():
            if life.bursts and life.bursts[0] <= now:
                while life.bursts and life.bursts[0] <= now:
                    life.bursts.pop(0)
                if life.state is IPState.ANNOUNCING:
                    self._announce(life, out)
            if life.defend_at <= now:
                life.defend_at = float("inf")
                if life.state is IPState.ANNOUNCING:
                    life.defended_at = now
                    self._announce(life, out)
        if now >= self._refresh_at:
            self._refresh_at = now + self.settings.refresh_s * self.rng.uniform(0.9, 1.1)
            for life in self.lives.values():
                if life.state is IPState.ANNOUNCING:  # not while handing over
                    self._announce(life, out)
        if self.bridges:
            expired = [entry for entry, until in self.bridges.items() if until <= now]
            for entry in expired:
                del self.bridges[entry]
            if expired:
                out.append(ev.ApplyBridges(tuple(self.bridges)))
        self.liveness.ask(now, self.view.peers, self.peer_addresses, self.up_interfaces(), out)

    def wake_at(self, now: float) -> float:
        """When the core must next hear `TimerFired` (peers' deadlines are watched by ticks).

        Asked after every event, so the targets' part is kept until an event other than a
        quiet tick changes it: a speaker with many IPs must not walk them every interval.
        """
        cached = self._wake_cache
        if cached is None:
            cached = self._wake_cache = _targets_wake_at(self, now)
        watch, refresh = self._watch_at, self._refresh_at  # the earliest, without min()
        at = cached if cached < watch else watch
        at = at if at < refresh else refresh
        return min(at, self.liveness.next_at()) if self.liveness.asked else at

    def _link(self, now: float, name: str, up: bool, out: list[ev.Action]) -> None:
        if self.interfaces.get(name) == up:
            return
        self.interfaces[name] = up
        self._up = None
        self._heartbeat = None
        if up:
            self.joining_until = now + self.settings.detect_s
            out.append(ev.Note(logging.INFO, f"interface {name} is up again; rejoining"))
        else:
            out.append(
                ev.Note(logging.WARNING, f"interface {name} went down: not announcing on it")
            )
        self._evaluate(now, out)

    # -- membership -------------------------------------------------------------------------

    def _expire(self, now: float, out: list[ev.Action]) -> bool:
        for peer in self.view.peers.values():
            if peer.deadline_s <= now:
                break
        else:
            return False  # the usual case: nobody is past the deadline (view.expire's test)
        gone = self.view.expire(now)
        if gone:
            self.liveness.forget(gone)
        silent_ms = self.settings.detect_s * 1000
        for node in gone:
            text = f"peer {node} is dead (no heartbeat for {silent_ms:.0f} ms)"
            out.append(ev.Note(logging.WARNING, text))
        return bool(gone)

    def heartbeat(self, now: float) -> protocol.Heartbeat:
        """What this node says now (sequence number 0: the sender numbers them)."""
        joining = now < self.joining_until
        said = self._heartbeat
        if said is None or said.joining != joining:
            said = self._heartbeat = protocol.Heartbeat(
                node=self.settings.node,
                epoch=self.epoch,
                seq=0,
                interval_ms=self.settings.interval_ms,
                multiplier=self.settings.multiplier,
                mac=self.mac,
                interfaces=self.up_interfaces(),
                claims=frozenset(
                    packed(ip) for life in self.held() for ip in life.announcement.target.ips
                ),
                leaving=self.leaving,
                joining=joining,
            )
        return said

    def _send(self, now: float) -> ev.SendHeartbeat:
        said, up = self.heartbeat(now), self.up_interfaces()
        sending = self._sending  # the same values as last time: the same (immutable) action
        if sending is None or sending.heartbeat is not said or sending.interfaces is not up:
            sending = self._sending = ev.SendHeartbeat(said, up)
        return sending

    # -- deciding ---------------------------------------------------------------------------

    def _evaluate(self, now: float, out: list[ev.Action], heartbeat: bool = False) -> None:
        self._wake_cache = None
        self._last_evaluated = now
        self._was_joining = now < self.joining_until
        if evaluate(self, now, out) or heartbeat:
            out.append(self._send(now))

    def held(self) -> list[TargetLife]:
        return [life for life in self.lives.values() if life.holding]

    @property
    def released_all(self) -> bool:
        return not any(life.holding for life in self.lives.values())

    def up_interfaces(self) -> tuple[str, ...]:
        if self._up is None:
            self._up = tuple(name for name, up in self.interfaces.items() if up)
        return self._up

    def usable(self, announcement: Announcement) -> tuple[str, ...]:
        wanted = announcement.interfaces
        if not wanted:  # the usual case: any interface that is up
            return self.up_interfaces()
        return tuple(
            name for name, up in self.interfaces.items() if up and (not wanted or name in wanted)
        )

    def _announce(self, life: TargetLife, out: list[ev.Action]) -> None:
        usable = self.usable(life.announcement)
        for ip in life.announcement.target.ips:
            out.append(ev.Announce(packed(ip), usable))

    def _release(self, life: TargetLife, reason: str, out: list[ev.Action]) -> None:
        life.state = IPState.STANDBY
        life.deadline = float("inf")
        life.bursts.clear()
        life.defend_at = float("inf")
        life.rivals = frozenset()
        self._heartbeat = None
        for ip in life.announcement.target.ips:
            out.append(ev.Release(packed(ip)))
        out.append(ev.Gave(life.announcement, reason))

    def status(self, now: float) -> dict[str, object]:
        return status(self, now)


def _targets_wake_at(core: SpeakerCore, now: float) -> float:
    """When the core's targets (and joining, grace, bridges) next need a `TimerFired`."""
    # The earliest, by comparisons rather than min() (asked after most events).
    at = _INF
    if now < core.joining_until:
        at = core.joining_until
    grace_end = core.started_at + core.settings.startup_grace_s
    if core._last_evaluated < grace_end < at:
        at = grace_end
    for life in core.lives.values():
        if life.deadline < at:  # noqa: PLR1730
            at = life.deadline
        if life.defend_at < at:  # noqa: PLR1730
            at = life.defend_at
        if life.bursts and life.bursts[0] < at:
            at = life.bursts[0]
    if core.bridges:
        at = min(at, *core.bridges.values())
    return at


def status(core: SpeakerCore, now: float) -> dict[str, object]:
    """What /status shows: the node's view, its targets' states, conflicts, bridges."""
    return {
        "node": core.settings.node,
        "epoch": core.epoch,
        "joining": now < core.joining_until,
        "leaving": core.leaving,
        "interfaces": dict(core.interfaces),
        "announcing": sorted(ip for life in core.held() for ip in life.announcement.target.ips),
        "states": {key: life.state.value for key, life in sorted(core.lives.items())},
        "peers": {
            name: {
                "claims": sorted(text_ip(ip) for ip in peer.heartbeat.claims),
                "leaving": peer.heartbeat.leaving,
                "joining": peer.heartbeat.joining,
            }
            for name, peer in sorted(core.view.peers.items())
        },
        "conflicts": sorted(life.conflict for life in core.lives.values() if life.conflict),
        "bridges": [
            {"vip": e.vip, "to": e.previous_owner, "interface": e.interface}
            for e in sorted(core.bridges, key=lambda e: (e.vip, e.previous_owner))
        ],
        "problems": list(core.desired.problems),
        "counters": asdict(core.view.counters),
    }


def _receive(core: SpeakerCore, received: Iterable[ev.Received], out: list[ev.Action]) -> bool:
    """Apply heartbeats to the view; note joins, updates and withdrawn rivals. Changed?"""
    changed = False
    view = core.view
    for item in received:
        data = item.heartbeat
        try:
            if isinstance(data, bytes):
                change, node = view.receive_datagram(data, core.settings.key, item.arrived_s)
            else:
                change, node = view.receive(data, item.arrived_s, item.seq), data.node
        except protocol.HeartbeatError as exc:
            view.reject(exc)
            continue
        if change is _STALE:
            continue
        if core.arp_rivals and node in core.arp_rivals:
            # A speaker announced one of our IPs; a heartbeat of its that no longer
            # claims it means it withdrew: clients may still follow it.
            # Each IP on its own: the rival may rightly keep another of them.
            rival_ips = core.arp_rivals[node]
            withdrawn = rival_ips - view.peers[node].heartbeat.claims
            if withdrawn:
                rival_ips -= withdrawn
                if not rival_ips:
                    del core.arp_rivals[node]
                core.contested |= withdrawn
                changed = True
        if change is _UNCHANGED:
            continue
        heartbeat = view.peers[node].heartbeat
        if heartbeat.claims:
            # A rival claim, perhaps withdrawn again before we evaluate: remember it.
            core.contested |= heartbeat.claims & core.heartbeat(item.arrived_s).claims
        core.peer_addresses[node] = item.source
        core.speaker_ips |= heartbeat.claims
        core.speaker_macs.add(heartbeat.mac)
        core.mac_nodes[heartbeat.mac] = node
        if change is _JOINED:
            out.append(ev.Note(logging.INFO, f"peer {node} joined (epoch {heartbeat.epoch})"))
            core.rejoined = True
        changed = True
    return changed
