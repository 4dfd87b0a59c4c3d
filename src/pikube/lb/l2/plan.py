"""The election's part of an evaluation, memoized. Pure.

What an evaluation (`decide.evaluate`) asks of the election depends only on the configuration,
on what each speaker says (leaving, joining, interfaces up, claims), on this node's own state
of the same, and on which targets some speaker ever held. The same few of these come back
again and again: each evaluation after a peer's claims changed, every node of a cluster whose
view settles, every schedule of the simulation. So the answer (each target narrowed to its
candidates, the owners, who claims what, the rivals for each target) is kept by that key, in
a bounded table shared by every core of the process (docs/decisions/0106). A plan is never
changed once made: its users only read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pikube.lb import election
from pikube.lb.announcements import DesiredState
from pikube.lb.l2.lifecycle import HOLDING, packed

if TYPE_CHECKING:
    from pikube.lb.l2.core import SpeakerCore

# How much the table keeps, in targets summed over its plans (a plan costs some hundreds of
# bytes per target): dozens of plans for a daemon with a hundred IPs. The simulation, whose
# few IPs come in some ten thousand combinations of views, keeps more (`pikube.lb.l2.sim`).
# Full, the table starts afresh.
TARGETS_KEPT = 8192


@dataclass(frozen=True, slots=True)
class Plan:
    narrowed: tuple[tuple[election.Target, bool], ...]  # per announcement: (narrowed, held)
    owners: Mapping[str, str | None]  # target key: the elected node
    claims: Mapping[str, frozenset[str]]  # node (this one first): the target keys it claims
    rivals: Mapping[str, frozenset[str]]  # target key: the other nodes claiming it


class Plans:
    """The table: plans by key, and a token per configuration (so that a key is hashed
    without walking the configuration)."""

    def __init__(self, kept: int = TARGETS_KEPT) -> None:
        self.kept = kept  # targets, summed over the plans kept
        self.size = 0
        self.plans: dict[tuple[object, ...], Plan] = {}
        self.tokens: dict[DesiredState, int] = {}
        # The last configuration seen: its token, and each announcement's packed IPs.
        self.last: tuple[DesiredState | None, int, tuple[tuple[bytes, ...], ...]] = (None, 0, ())
        self.made = 0

    def clear(self) -> None:
        self.plans.clear()
        self.tokens.clear()
        self.last = (None, 0, ())
        self.size = 0

    def _configuration(self, desired: DesiredState) -> tuple[int, tuple[tuple[bytes, ...], ...]]:
        seen, token, ips = self.last
        if seen is not desired:
            if len(self.tokens) >= self.kept:
                self.clear()
            token = self.tokens.setdefault(desired, len(self.tokens))
            ips = tuple(tuple(packed(ip) for ip in a.target.ips) for a in desired.announcements)
            self.last = (desired, token, ips)
        return token, ips

    def plan(self, core: SpeakerCore, joining: bool) -> Plan:
        """The election's answer for `core` now (`joining`: this node is still listening)."""
        desired = core.desired
        seen, token, ips = self.last
        if seen is not desired:
            token, ips = self._configuration(desired)
        isdisjoint = core.speaker_ips.isdisjoint
        # (Lists made into tuples: cheaper than from generators, asked at every evaluation.)
        held = tuple([not isdisjoint(each) for each in ips])  # some speaker ever held one
        mine = frozenset([key for key, life in core.lives.items() if life.state in HOLDING])
        peers = tuple(
            [
                (name, (hb := peer.heartbeat).leaving, hb.joining, hb.interfaces, hb.claims)
                for name, peer in core.view.peers.items()
            ]
        )
        me = (core.settings.node, core.leaving, joining, core.up_interfaces(), mine)
        key = (token, me, held, peers)
        found = self.plans.get(key)
        if found is None:
            if self.size >= self.kept:
                self.clear()
                token, _ = self._configuration(desired)
                key = (token, me, held, peers)
            self.made += 1
            self.size += len(held) + 1
            found = self.plans[key] = _make(desired, me, held, peers)
        return found


PLANS = Plans()
plan = PLANS.plan


def _make(
    desired: DesiredState,
    me: tuple[str, bool, bool, tuple[str, ...], frozenset[str]],
    held: tuple[bool, ...],
    peers: tuple[tuple[str, bool, bool, tuple[str, ...], frozenset[bytes]], ...],
) -> Plan:
    name, leaving, joining, interfaces, mine = me
    speakers = {
        peer: election.Candidacy(p_leaving, p_joining, frozenset(p_interfaces))
        for peer, p_leaving, p_joining, p_interfaces, _ in peers
    }
    speakers[name] = election.Candidacy(leaving, joining, frozenset(interfaces))
    narrowed = tuple(
        (election.candidates(ann.target, ann.interfaces, speakers, was_held), was_held)
        for ann, was_held in zip(desired.announcements, held, strict=True)
    )
    targets = {
        ann.target.key: t for ann, (t, _) in zip(desired.announcements, narrowed, strict=True)
    }
    ip_to_key = {packed(ip): key for key, t in targets.items() for ip in t.ips}
    claims: dict[str, frozenset[str]] = {name: mine}
    for peer, _, _, _, peer_claims in peers:
        claims[peer] = frozenset(ip_to_key[ip] for ip in peer_claims if ip in ip_to_key)
    live = {n for t in targets.values() for n in (t.eligible or ())}
    owners = election.elect(targets.values(), live, claims)
    rivals = {
        key: frozenset(n for n, keys in claims.items() if n != name and key in keys)
        for key in targets
    }  # none for a key that is not a target: no peer's claim names it
    return Plan(narrowed, owners, claims, rivals)
