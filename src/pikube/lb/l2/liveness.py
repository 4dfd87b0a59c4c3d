"""Confirming a silent peer's death early: ask its kernel. Pure: no sockets, no clock.

A peer is dead `interval x multiplier` after its last heartbeat (`membership.protocol`). Most
of that wait is there to survive a lost heartbeat or two, not to notice the silence: a live
peer's next heartbeat is due one interval after its last. So when a peer is late (silent for
`SUSPECT` of its interval, seen at one of our ticks), the speaker asks the peer's *kernel*
whether its link is still there (an ARP probe for the address its heartbeats came from, sent
in the same wake-up; the kernel answers at once, without waking the peer's process). An
answer means the heartbeat was merely lost or late: the usual detection time applies. No
answer within `confirm_s` means the peer's link (or its whole host) is gone, which is how a
power cut, a crash that takes the NIC with it, or an unplugged cable look: the peer is dead
now, after about 1.1 to 2.1 intervals instead of 3.

A daemon that died while its host's kernel lives is still answered for, so it is found at
the usual detection time: the probe can only shorten the wait, never lengthen it. A false
early death needs a lost heartbeat and both probes (or their answers) lost too, about as
likely as three heartbeats lost in a row, which the usual detection accepts as well.

Nothing here runs while every peer is on time: it costs an idle speaker no wake-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pikube.lb.l2 import events as ev
from pikube.lb.membership.protocol import Peer, View

INF = float("inf")
SUSPECT = 1.1  # a peer silent this many of its own intervals is late
CONFIRM_S = 0.015  # how long its kernel has to answer
PROBES = 2  # frames per probe, sent together: one lost frame does not kill a live peer


@dataclass(slots=True)
class _Asked:
    address: str
    heard_s: float  # the peer's last heartbeat when we asked: a newer one settles it
    until_s: float  # no answer by then: dead
    answered: bool = False
    answered_s: float = 0.0


@dataclass
class Liveness:
    confirm_s: float = CONFIRM_S  # 0: never ask
    asked: dict[str, _Asked] = field(default_factory=dict)  # node: the open question

    def ask(
        self,
        now: float,
        peers: dict[str, Peer],
        addresses: dict[str, str],
        interfaces: tuple[str, ...],
        out: list[ev.Action],
    ) -> None:
        """Probe the kernels of late peers (in a wake-up the speaker has anyway)."""
        if not self.confirm_s or not peers or not interfaces:
            return
        for _node, address in self.late(now, peers, addresses):
            out.append(ev.ProbePeer(address, interfaces, PROBES))

    def confirm(self, now: float, view: View, out: list[ev.Action]) -> bool:
        """Drop late peers whose kernel did not answer in time (their link is gone): any?"""
        if not self.asked:  # the usual case: no question is open
            return False
        gone = self.dead(now, view.peers)
        for node in gone:
            view.drop(node)
            text = f"peer {node} is dead (late, and its link does not answer)"
            out.append(ev.Note(logging.WARNING, text))
        return bool(gone)

    def late(
        self, now: float, peers: dict[str, Peer], addresses: dict[str, str]
    ) -> list[tuple[str, str]]:
        """Peers to probe now, (node, address): late, with no question open for this silence."""
        found = []
        for node, peer in peers.items():
            heard = peer.last_heard_s
            if now - heard <= peer.heartbeat.interval_ms * SUSPECT / 1000.0:
                continue
            asked = self.asked.get(node)
            if asked is not None and asked.heard_s == heard:
                # Asked already about this silence: wait for the answer; once answered, ask
                # again half an interval later, i.e. at the next tick (the link may have gone
                # since: a peer late under load, then unplugged, must not wait for the rest).
                again = asked.answered_s + peer.heartbeat.interval_ms / 2000.0
                if not asked.answered or now < again:
                    continue
            address = addresses.get(node)
            if address is None:
                continue
            self.asked[node] = _Asked(address, heard, now + self.confirm_s)
            found.append((node, address))
        return found

    def answer(self, now: float, address: str) -> bool:
        """The kernel at `address` answered: True if a question was open for it."""
        hit = False
        for asked in self.asked.values():
            if asked.address == address and not asked.answered:
                asked.answered, asked.answered_s = True, now
                hit = True
        return hit

    def dead(self, now: float, peers: dict[str, Peer]) -> list[str]:
        """Peers still silent since we asked, whose kernel did not answer in time."""
        gone = []
        for node, asked in list(self.asked.items()):
            peer = peers.get(node)
            if peer is None or peer.last_heard_s != asked.heard_s:
                del self.asked[node]  # gone already, or spoke again: the question is moot
                continue
            if not asked.answered and asked.until_s <= now:
                del self.asked[node]
                gone.append(node)
        return gone

    def forget(self, nodes: list[str]) -> None:
        """These peers were found dead otherwise: their questions are moot."""
        for node in nodes:
            self.asked.pop(node, None)

    def next_at(self) -> float:
        """When an open question times out (inf: none is open). Asked after every event."""
        if not self.asked:
            return INF
        return min((a.until_s for a in self.asked.values() if not a.answered), default=INF)

    @property
    def pending(self) -> bool:
        return any(not a.answered for a in self.asked.values())
