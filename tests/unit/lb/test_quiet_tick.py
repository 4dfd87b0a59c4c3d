"""An idle speaker's short way through a tick (`SpeakerCore.quiet_tick`, `View.repeated`) decides
exactly what `handle(Tick(...))` decides: run in lockstep with it over random heartbeat traffic
(repeats, silence, replays, forgeries, restarts, changed claims, our own looped back), it
either gives the same one action and leaves the core in the same state, or declines and
changes nothing."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pikube.lb.announcements import Announcement, DesiredState
from pikube.lb.election import Target
from pikube.lb.l2 import events as ev
from pikube.lb.l2.core import CoreSettings, SpeakerCore
from pikube.lb.l2.lifecycle import packed
from pikube.lb.membership import protocol

KEY = protocol.load_key(b"quiet-tick-test-key-32-bytes....")
VIP = "198.51.100.231"
PEERS = ("node02", "node03", "node04")


def mac(node: str) -> bytes:
    return bytes([2, 0, 0, 0, 0, int(node[-2:])])


def make_core() -> SpeakerCore:
    core = SpeakerCore(
        CoreSettings("node01", KEY, startup_grace_s=0.0), 1, mac("node01"), {"eth0": True},
        0.0, random.Random(7),
    )  # fmt: skip
    target = Announcement(Target(VIP, (VIP,), None), ("default/nginx",))
    core.handle(ev.Configured(0.0, DesiredState((target,))))
    return core


@dataclass
class Wire:
    """One peer's heartbeats as datagrams, numbered and signed as a speaker sends them."""

    node: str
    epoch: int = 1
    seq: int = 0
    claims: frozenset[bytes] = frozenset()
    sent: list[bytes] = field(default_factory=list)
    encoder: protocol.Encoder = field(default_factory=lambda: protocol.Encoder(KEY))

    def datagram(self) -> bytes:
        self.seq += 1
        heartbeat = protocol.Heartbeat(
            self.node, self.epoch, 0, 60, 3, mac(self.node), ("eth0",), self.claims, False, False
        )
        self.encoder.set_template(heartbeat)
        self.sent.append(self.encoder.sign(self.seq))
        return self.sent[-1]


def own(core: SpeakerCore, now: float) -> bytes:
    """Our own heartbeat, as the kernel would loop our broadcast back."""
    return protocol.Encoder(KEY).encode(core.heartbeat(now))


def state(core: SpeakerCore) -> dict[str, Any]:
    """Everything the core keeps (the random generator by its state)."""
    kept = {f.name: getattr(core, f.name) for f in fields(core) if f.name != "rng"}
    kept["rng"] = core.rng.getstate()
    return kept


KINDS = ("says",) * 8 + ("silent", "replay", "forged", "claims", "restart")
STEP = st.tuples(
    st.sampled_from((0.03, 0.057, 0.06, 0.1, 0.2)),  # time to this tick
    st.tuples(*(st.sampled_from(KINDS) for _ in PEERS)),
    st.booleans(),  # our own heartbeat looped back
    st.booleans(),  # the loop's timer fires after the tick
)


def traffic(wire: Wire, kind: str) -> list[bytes]:
    if kind == "silent":
        return []
    if kind == "replay" and wire.sent:
        return [wire.sent[0]]
    if kind == "claims":
        wire.claims = frozenset() if wire.claims else frozenset({packed(VIP)})
    if kind == "restart":
        wire.epoch += 1
    data = wire.datagram()
    if kind == "forged":
        return [data[:-1] + bytes([data[-1] ^ 1])]
    return [data]


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=60))
def test_the_short_way_decides_what_the_long_way_does(steps: list[Any]) -> None:
    long_way, short_way = make_core(), make_core()
    wires = [Wire(node) for node in PEERS]
    now = 0.0
    for dt, kinds, looped, timer in steps:
        now += dt
        batch = [
            data for wire, kind in zip(wires, kinds, strict=True) for data in traffic(wire, kind)
        ]
        if looped:
            batch.append(own(long_way, now))
        received = [(data, "198.51.100.1", now - 0.001) for data in batch]
        events = tuple(ev.Received(*item) for item in received)
        expected = long_way.handle(ev.Tick(now, events))
        before = state(short_way)
        sending = short_way.quiet_tick(now, received)
        if sending is None:
            assert state(short_way) == before  # declined: nothing changed
            got = short_way.handle(ev.Tick(now, events))
        else:
            got = [sending]
        assert got == expected
        assert state(short_way) == state(long_way)
        if timer:
            assert short_way.handle(ev.TimerFired(now)) == long_way.handle(ev.TimerFired(now))


def test_an_idle_speakers_tick_takes_the_short_way() -> None:
    core, wires, now = make_core(), [Wire(node) for node in PEERS], 0.0
    for _ in range(5):  # the first heartbeats join the peers: the long way
        now += 0.057
        core.handle(ev.Tick(now, tuple(ev.Received(w.datagram(), "", now) for w in wires)))
    accepted = core.view.counters.accepted
    now += 0.057
    sending = core.quiet_tick(now, [(w.datagram(), "", now - 0.01) for w in wires])
    assert sending == ev.SendHeartbeat(core.heartbeat(now), ("eth0",))
    assert core.view.counters.accepted == accepted + len(wires)
    assert all(peer.last_heard_s == now - 0.01 for peer in core.view.peers.values())
    # A late peer, a replay, a changed heartbeat: each takes the long way.
    now += 0.057
    assert core.quiet_tick(now + 0.2, [(w.datagram(), "", now) for w in wires[:2]]) is None
    assert core.quiet_tick(now, [(wires[0].sent[0], "", now)]) is None
    wires[1].claims = frozenset({packed(VIP)})
    assert core.quiet_tick(now, [(w.datagram(), "", now) for w in wires]) is None
