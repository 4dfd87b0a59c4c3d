"""The speaker's decisions, without root: the per-target table and the node's core."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from pikube.lb.announcements import Announcement, DesiredState
from pikube.lb.election import Target
from pikube.lb.l2 import events as ev
from pikube.lb.l2.core import CoreSettings, SpeakerCore
from pikube.lb.l2.lifecycle import (
    HOLDING,
    RELEASE_REASONS,
    TRANSITIONS,
    IPState,
    Step,
    TargetLife,
    Verdict,
    packed,
    transition,
    verdict,
)
from pikube.lb.membership.protocol import Heartbeat

KEY = b"k" * 32
VIP = "198.51.100.231"  # node01 ranks first for it, then node02
DETECT_S = 0.18


def mac(node: str) -> bytes:
    return bytes([2, 0, 0, 0, 0, int(node[-2:])])


def announcement(ip: str = VIP, eligible: Iterable[str] | None = None) -> Announcement:
    nodes = None if eligible is None else frozenset(eligible)
    return Announcement(Target(ip, (ip,), nodes), ("default/nginx",))


def make_core(node: str = "node01", grace_s: float = 0.0, now: float = 0.0) -> SpeakerCore:
    settings = CoreSettings(node, KEY, startup_grace_s=grace_s, conflict_retry_s=10.0)
    return SpeakerCore(settings, 1, mac(node), {"eth0": True}, now, random.Random(0))


class Peer:
    """A peer's heartbeats, numbered."""

    def __init__(self, node: str, epoch: int = 1) -> None:
        self.node, self.epoch, self.seq = node, epoch, 0

    def says(
        self, now: float, claims: Iterable[str] = (), leaving: bool = False, joining: bool = False
    ) -> ev.Received:
        self.seq += 1
        heartbeat = Heartbeat(
            self.node, self.epoch, self.seq, 60, 3, mac(self.node), ("eth0",),
            frozenset(packed(ip) for ip in claims), leaving, joining,
        )  # fmt: skip
        return ev.Received(heartbeat, f"198.51.100.{int(self.node[-2:]) + 20}", now)


def of(kind: type, actions: list[ev.Action]) -> list[object]:
    return [a for a in actions if isinstance(a, kind)]


def configured(core: SpeakerCore, *anns: Announcement, now: float = 0.0) -> list[ev.Action]:
    return core.handle(ev.Configured(now, DesiredState(tuple(anns))))


def claims(core: SpeakerCore, now: float) -> frozenset[bytes]:
    return core.heartbeat(now).claims


def joined(core: SpeakerCore, now: float = DETECT_S) -> list[ev.Action]:
    """Let the core finish joining (its timer)."""
    return core.handle(ev.TimerFired(now))


# -- the table -------------------------------------------------------------------------------


def test_every_release_has_a_reason_and_only_held_targets_are_released() -> None:
    for (state, found), (_, steps) in TRANSITIONS.items():
        if Step.RELEASE in steps:
            assert state in HOLDING
            assert found in RELEASE_REASONS


def test_only_an_elected_node_starts_answering() -> None:
    for (state, found), (new, _) in TRANSITIONS.items():
        if new in HOLDING and state not in HOLDING:
            assert found in (Verdict.MINE, Verdict.PROBE_CLEAN), (state, found)


def test_a_pair_missing_from_the_table_stays_put() -> None:
    assert transition(IPState.STANDBY, Verdict.ELSEWHERE) == (IPState.STANDBY, ())
    assert transition(IPState.CONFLICT, Verdict.MINE) == (IPState.CONFLICT, ())


def test_a_deadline_only_matters_where_the_election_leaves_the_target() -> None:
    life = TargetLife(announcement(), IPState.PROBING, deadline=1.0)
    assert verdict(life, Verdict.MINE_FRESH, 0.5, False) is Verdict.MINE_FRESH
    assert verdict(life, Verdict.MINE_FRESH, 1.0, False) is Verdict.PROBE_CLEAN
    assert verdict(life, Verdict.MINE_FRESH, 1.0, True) is Verdict.PROBE_ANSWERED
    assert verdict(life, Verdict.ELSEWHERE, 1.0, False) is Verdict.ELSEWHERE
    life.state = IPState.HANDING_OVER
    assert verdict(life, Verdict.ELSEWHERE, 1.0, False) is Verdict.HANDOVER_TIMEOUT
    assert verdict(life, Verdict.TAKEN, 1.0, False) is Verdict.TAKEN
    life.state = IPState.CONFLICT
    assert verdict(life, Verdict.NOBODY, 1.0, False) is Verdict.RETRY
    assert verdict(life, Verdict.GONE, 1.0, False) is Verdict.GONE


# -- the core --------------------------------------------------------------------------------


def test_a_joining_node_takes_nothing_then_probes_an_ip_nobody_held_and_announces_it() -> None:
    core = make_core()
    actions = configured(core, announcement())
    assert not of(ev.Claim, actions)
    assert not of(ev.Probe, actions)
    assert core.wake_at(0.0) == pytest.approx(DETECT_S)
    actions = joined(core)
    assert of(ev.Probe, actions) == [ev.Probe(packed(VIP), ("eth0",))]
    assert not of(ev.Claim, actions)
    actions = core.handle(ev.TimerFired(DETECT_S + 0.06))
    assert of(ev.Claim, actions) == [ev.Claim(packed(VIP), ("eth0",))]
    assert of(ev.Announce, actions)
    assert of(ev.SendHeartbeat, actions)
    assert claims(core, 0.3) == {packed(VIP)}


def test_a_cold_start_waits_for_the_grace_so_a_fleet_spreads_out() -> None:
    core = make_core(grace_s=2.0)
    configured(core, announcement())
    assert not of(ev.Probe, joined(core))
    assert core.wake_at(0.5) == pytest.approx(2.0)
    assert of(ev.Probe, core.handle(ev.TimerFired(2.0)))


def test_a_probe_answered_by_a_host_that_is_not_a_speaker_is_a_conflict_retried_later() -> None:
    core = make_core()
    configured(core, announcement())
    joined(core)
    core.handle(ev.ForeignClaim(0.2, packed(VIP), b"\x02\x99\x00\x00\x00\x01"))
    actions = core.handle(ev.TimerFired(0.3))
    assert not of(ev.Claim, actions)
    assert of(ev.ConflictSeen, actions) == [ev.ConflictSeen(VIP)]
    assert core.lives[VIP].state is IPState.CONFLICT
    status = core.status(0.3)["conflicts"]
    assert isinstance(status, list)
    assert "02:99:00:00:00:01" in status[0]
    assert core.wake_at(0.3) == pytest.approx(10.3)
    assert of(ev.Probe, core.handle(ev.TimerFired(10.3)))


def test_a_failover_takes_a_held_ip_at_once_without_probing_and_in_a_burst() -> None:
    core = make_core()
    peer = Peer("node02")
    configured(core, announcement())
    core.handle(ev.Tick(0.05, (peer.says(0.05, [VIP]),)))
    joined(core, 0.2)
    assert not claims(core, 0.2)
    actions = core.handle(ev.Tick(0.5))  # node02 silent since 0.05: dead at 0.23
    assert of(ev.Claim, actions)
    assert not of(ev.Probe, actions)
    assert core.wake_at(0.5) == pytest.approx(0.55)
    assert of(ev.Announce, core.handle(ev.TimerFired(0.55)))


def test_a_planned_handover_keeps_answering_until_the_new_owner_claims() -> None:
    core = make_core()
    peer = Peer("node02")
    configured(core, announcement())
    core.handle(ev.Tick(0.05, (peer.says(0.05),)))
    joined(core, 0.2)
    core.handle(ev.Tick(0.21, (peer.says(0.21),)))
    core.handle(ev.TimerFired(0.3))  # probe done
    assert claims(core, 0.3)
    core.handle(ev.Tick(0.35, (peer.says(0.35),)))
    actions = core.handle(ev.Leave(0.4))
    assert core.heartbeat(0.4).leaving
    assert not of(ev.Release, actions)
    assert core.lives[VIP].state is IPState.HANDING_OVER
    actions = core.handle(ev.Tick(0.45, (peer.says(0.45, [VIP]),)))
    assert of(ev.Release, actions) == [ev.Release(packed(VIP))]
    gave = of(ev.Gave, actions)
    assert isinstance(gave[0], ev.Gave)
    assert gave[0].reason == "handed-over: to node02"
    assert core.released_all


def test_a_handover_nobody_completes_ends_after_one_detection_time() -> None:
    core = make_core()
    peer = Peer("node02")
    configured(core, announcement())
    joined(core, 0.2)
    core.handle(ev.TimerFired(0.3))
    core.handle(ev.Tick(0.31, (peer.says(0.31),)))
    configured(core, announcement(eligible=["node02"]), now=0.32)
    assert core.lives[VIP].state is IPState.HANDING_OVER
    core.handle(ev.Tick(0.4, (peer.says(0.4),)))
    actions = core.handle(ev.TimerFired(0.32 + DETECT_S))
    gave = of(ev.Gave, actions)
    assert isinstance(gave[0], ev.Gave)
    assert gave[0].reason == "handover-timeout: node02 did not claim it"


def test_a_link_going_down_releases_at_once_and_coming_back_rejoins() -> None:
    core = make_core()
    configured(core, announcement())
    joined(core)
    core.handle(ev.TimerFired(0.3))
    actions = core.handle(ev.LinkChanged(1.0, "eth0", False))
    gave = of(ev.Gave, actions)
    assert isinstance(gave[0], ev.Gave)
    assert gave[0].reason == "link-down"
    actions = core.handle(ev.LinkChanged(2.0, "eth0", True))
    assert not of(ev.Claim, actions)
    assert core.heartbeat(2.0).joining
    assert of(ev.Claim, core.handle(ev.TimerFired(2.0 + DETECT_S)))


def test_a_removed_service_is_released_at_once() -> None:
    core = make_core()
    configured(core, announcement())
    joined(core)
    core.handle(ev.TimerFired(0.3))
    actions = configured(core, now=1.0)
    assert of(ev.Release, actions) == [ev.Release(packed(VIP))]
    assert VIP not in core.lives


def test_a_split_brain_leaves_the_hash_winner_and_the_loser_withdraws() -> None:
    nodes = {"node01": make_core("node01"), "node02": make_core("node02")}
    peers = {name: Peer(name, epoch=2) for name in nodes}
    for core in nodes.values():
        configured(core, announcement())
        joined(core)
        core.handle(ev.TimerFired(0.3))  # each probed alone: a partition
        assert claims(core, 0.3)
    for name, core in nodes.items():
        other = next(n for n in nodes if n != name)
        core.handle(ev.Tick(0.4, (peers[other].says(0.4, [VIP]),)))
    holding = [name for name, core in nodes.items() if core.lives[VIP].holding]
    assert len(holding) == 1


def test_a_foreign_host_claiming_an_announced_ip_is_reported_and_answered() -> None:
    core = make_core()
    configured(core, announcement())
    joined(core)
    core.handle(ev.TimerFired(0.3))
    actions = core.handle(ev.ForeignClaim(5.0, packed(VIP), b"\x02\x99\x00\x00\x00\x01"))
    assert of(ev.ConflictSeen, actions)
    assert of(ev.Announce, actions)
    again = core.handle(ev.ForeignClaim(5.5, packed(VIP), b"\x02\x99\x00\x00\x00\x01"))
    assert not of(ev.Announce, again)  # defended once a second at most


def test_a_foreign_claim_gets_a_last_answer_one_detection_time_after_its_latest() -> None:
    # The "host" may be a speaker not heard yet (restarted during a partition) that vanishes
    # next: clients must not be left with its word (simulation seeds 14593, 29709).
    core = make_core()
    configured(core, announcement())
    joined(core)
    core.handle(ev.TimerFired(0.3))
    core.handle(ev.TimerFired(4.0))  # the takeover's burst is over
    stranger = b"\x02\x99\x00\x00\x00\x01"
    core.handle(ev.ForeignClaim(5.0, packed(VIP), stranger))
    core.handle(ev.ForeignClaim(5.5, packed(VIP), stranger))  # within the second: not at once
    assert core.wake_at(5.5) == pytest.approx(5.5 + DETECT_S)
    assert of(ev.Announce, core.handle(ev.TimerFired(5.5 + DETECT_S)))


def test_a_rival_withdrawing_one_of_our_ips_but_keeping_another_wins_clients_back() -> None:
    # node02 announced VIP (its claiming heartbeats were lost) and 198.51.100.232 (rightly its
    # own); its next heartbeat claims only the latter: clients that followed it for VIP must
    # hear us now (simulation seeds 84950, 88171, 90037).
    core = make_core()
    peer = Peer("node02")
    other = "198.51.100.232"
    configured(core, announcement())
    core.handle(ev.Tick(0.05, (peer.says(0.05),)))
    joined(core)
    core.handle(ev.Tick(0.2, (peer.says(0.2),)))
    core.handle(ev.TimerFired(0.3))  # the probe's time is up: announcing
    assert core.lives[VIP].state is IPState.ANNOUNCING
    core.handle(ev.ForeignClaim(0.32, packed(VIP), mac("node02")))
    core.handle(ev.ForeignClaim(0.32, packed(other), mac("node02")))
    actions = core.handle(ev.Tick(0.35, (peer.says(0.35, [other]),)))
    assert [a.ip for a in of(ev.Announce, actions)] == [packed(VIP)]  # type: ignore[attr-defined]


def test_another_speakers_gratuitous_arp_is_not_a_conflict() -> None:
    core = make_core()
    peer = Peer("node02")
    configured(core, announcement())
    core.handle(ev.Tick(0.05, (peer.says(0.05),)))
    assert not core.handle(ev.ForeignClaim(0.1, packed(VIP), mac("node02")))


def test_a_quiet_tick_only_sends_the_same_heartbeat() -> None:
    core = make_core()
    configured(core, announcement())
    joined(core)
    core.handle(ev.TimerFired(0.3))
    first = core.handle(ev.Tick(1.0))
    second = core.handle(ev.Tick(1.06))
    assert [type(a) for a in first] == [ev.SendHeartbeat] == [type(a) for a in second]
    assert isinstance(first[0], ev.SendHeartbeat)
    assert isinstance(second[0], ev.SendHeartbeat)
    assert first[0].heartbeat is second[0].heartbeat  # not rebuilt: the wiring signs it again
    assert first[0] is second[0]  # nor the action: an idle speaker builds nothing per tick


def test_a_quiet_tick_still_hears_peers_and_a_peer_one_interval_silent_is_checked() -> None:
    core = make_core()
    peer = Peer("node02")
    joined(core, 0.2)
    core.handle(ev.Tick(0.5, (peer.says(0.5),)))
    core.handle(ev.Tick(0.55, (peer.says(0.55),)))
    assert core.view.peers["node02"].last_heard_s == 0.55
    # A peer with a detection time of one interval dies on the first tick after it, although
    # the other peer spoke on time.
    single = Heartbeat("node03", 1, 1, 60, 1, mac("node03"), ("eth0",), frozenset())
    core.handle(ev.Tick(0.56, (ev.Received(single, "198.51.100.23", 0.56),)))
    core.handle(ev.Tick(0.61, (peer.says(0.61),)))
    assert "node03" in core.view.peers
    actions = core.handle(ev.Tick(0.63, (peer.says(0.63),)))
    assert "node03" not in core.view.peers
    assert any(isinstance(a, ev.Note) and "node03 is dead" in a.text for a in actions)


def test_a_peer_that_missed_a_heartbeat_gets_a_wake_up_at_its_deadline() -> None:
    core = make_core()
    peer = Peer("node02")
    joined(core, 0.5)
    core.handle(ev.Tick(1.0, (peer.says(1.0),)))
    core.handle(ev.Tick(1.05))
    assert core.wake_at(1.05) > 2.0  # heard 50 ms ago: not late, nothing to wake for
    asked = core.handle(ev.Tick(1.1))
    assert of(ev.ProbePeer, asked) == [ev.ProbePeer("198.51.100.22", ("eth0",), 2)]
    core.handle(ev.PeerAnswered(1.101, "198.51.100.22"))  # its link is there: just late
    assert core.wake_at(1.101) == pytest.approx(1.0 + DETECT_S)
    assert not of(ev.ProbePeer, core.handle(ev.Tick(1.12)))  # answered 19 ms ago
    assert of(ev.ProbePeer, core.handle(ev.Tick(1.16)))  # still silent: asked again
    actions = core.handle(ev.TimerFired(1.0 + DETECT_S))
    assert not core.view.peers
    assert any(isinstance(a, ev.Note) and "node02 is dead" in a.text for a in actions)


def test_a_late_peer_whose_link_does_not_answer_is_dead_at_once() -> None:
    core = make_core()
    peer = Peer("node02")
    configured(core, announcement())
    core.handle(ev.Tick(0.05, (peer.says(0.05, [VIP]),)))
    joined(core, 0.2)
    core.handle(ev.Tick(0.6, (peer.says(0.6, [VIP]),)))
    assert not of(ev.ProbePeer, core.handle(ev.Tick(0.65)))  # 50 ms: on time
    asked = core.handle(ev.Tick(0.67))  # 70 ms: later than 1.1 intervals
    assert of(ev.ProbePeer, asked) == [ev.ProbePeer("198.51.100.22", ("eth0",), 2)]
    assert core.wake_at(0.67) == pytest.approx(0.685)
    actions = core.handle(ev.TimerFired(0.685))
    assert not core.view.peers
    assert any(isinstance(a, ev.Note) and "link does not answer" in a.text for a in actions)
    assert of(ev.Claim, actions)  # 85 ms after its last heartbeat, not 180


def test_a_late_heartbeat_settles_the_question() -> None:
    core = make_core()
    peer = Peer("node02")
    joined(core, 0.2)
    core.handle(ev.Tick(0.6, (peer.says(0.6),)))
    assert of(ev.ProbePeer, core.handle(ev.Tick(0.67)))
    core.handle(ev.TimerFired(0.685, (peer.says(0.68),)))  # arrived before the answer
    assert "node02" in core.view.peers
    assert not core.liveness.pending


def test_no_question_without_a_link_or_when_turned_off() -> None:
    core = make_core()
    peer = Peer("node02")
    joined(core, 0.2)
    core.handle(ev.Tick(0.6, (peer.says(0.6),)))
    core.handle(ev.LinkChanged(0.61, "eth0", False))
    assert not of(ev.ProbePeer, core.handle(ev.Tick(0.67)))
    settings = CoreSettings("node01", KEY, startup_grace_s=0.0, confirm_s=0.0)
    off = SpeakerCore(settings, 1, mac("node01"), {"eth0": True}, 0.0, random.Random(0))
    off.handle(ev.TimerFired(0.2))
    off.handle(ev.Tick(0.6, (peer.says(0.6),)))
    assert not of(ev.ProbePeer, off.handle(ev.Tick(0.67)))


def test_the_claims_in_heartbeats_follow_the_held_targets() -> None:
    core = make_core()
    configured(core, announcement(), announcement("198.51.100.232"))
    joined(core)
    core.handle(ev.TimerFired(0.3))
    assert claims(core, 0.3) == {packed(VIP), packed("198.51.100.232")}
    configured(core, announcement("198.51.100.232"), now=0.4)
    assert claims(core, 0.4) == {packed("198.51.100.232")}


def test_a_leaving_node_with_no_successor_keeps_answering_until_it_stops() -> None:
    core = make_core()
    configured(core, announcement())
    joined(core)
    core.handle(ev.TimerFired(0.3))
    actions = core.handle(ev.Leave(1.0))  # nobody to hand over to (make-before-break)
    assert not of(ev.Release, actions)
    assert core.lives[VIP].state is IPState.HANDING_OVER
    assert core.lives[VIP].deadline == float("inf")  # no handover deadline: it waits for Stop
    actions = core.handle(ev.Stop(2.0))
    assert of(ev.Release, actions) == [ev.Release(packed(VIP))]
    gave = of(ev.Gave, actions)
    assert isinstance(gave[0], ev.Gave)
    assert gave[0].reason == "leaving"
    assert core.released_all


def test_the_end_of_joining_is_told_at_once_so_two_survivors_never_both_take_over() -> None:
    """node03 owns the VIP and dies; node01 (which ranks first) restarted shortly before, and
    its joining ends between two of its ticks, just before node03's death is noticed. Had
    node02 last heard node01 say JOINING, both would take the VIP at the same instant (the
    simulation's seed 117583, docs/decisions/0109): node01 ends its joining with a heartbeat."""
    ann = announcement()
    node02 = make_core("node02")
    configured(node02, ann)
    joined(node02)
    node03 = Peer("node03")
    node02.handle(ev.Tick(0.9, (node03.says(0.9, [VIP]),)))
    assert not claims(node02, 0.9)
    node01 = make_core("node01", now=1.0)
    said = configured(node01, ann, now=1.0)
    seq = 0

    def told(actions: list[ev.Action], now: float) -> tuple[ev.Received, ...]:
        nonlocal seq
        sent = []
        for action in of(ev.SendHeartbeat, actions):
            assert isinstance(action, ev.SendHeartbeat)
            seq += 1
            sent.append(ev.Received(action.heartbeat, "198.51.100.21", now, seq))
        return tuple(sent)

    last = node03.says(1.02, [VIP])  # node03's last heartbeat: dead from 1.2 on
    said += node01.handle(ev.Tick(1.02, (last,)))
    node02.handle(ev.Tick(1.02, (last, *told(said, 1.02))))
    said = node01.handle(ev.Tick(1.075, ()))  # still joining
    node02.handle(ev.Tick(1.08, told(said, 1.075)))
    assert node02.view.peers["node01"].heartbeat.joining
    said = node01.handle(ev.TimerFired(DETECT_S + 1.0, ()))  # its joining ends
    heard = told(said, 1.181)
    # node03's death, seen by both at the same instant (before node01's next tick).
    took01 = of(ev.Claim, node01.handle(ev.TimerFired(1.205, ())))
    took02 = of(ev.Claim, node02.handle(ev.TimerFired(1.205, heard)))
    assert (len(took01), len(took02)) == (1, 0)
    assert not node02.view.peers["node01"].heartbeat.joining
