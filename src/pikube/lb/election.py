"""Which node announces which service IPs. Pure: every speaker computes the same answer from the
same view, with no coordination beyond the heartbeats.

Rules, in order:
1. Candidates for a target are the live speakers it allows: the advertisement's node selectors
   and interfaces, and for externalTrafficPolicy Local only nodes with a ready local endpoint
   (the caller resolves those into `Target.eligible`). Leaving speakers are not candidates.
2. Stickiness: a target claimed by a candidate stays with it; no failback when a node returns
   (MetalLB #795). If several candidates claim it (split brain after a partition heals), the one
   ranked first by the hash keeps it and the others withdraw.
3. The rest are placed by rendezvous hashing with bounded load: candidates are tried in the
   order of sha256(node "#" key) and the first one below the load cap takes the target. The cap
   is floor(1.25 x targets / nodes) (never below the even share), so a fresh placement has a
   max/mean of at most 1.25, and a node leaving moves only its own targets.
Targets are processed in order of their key, so the answer does not depend on input order.

Candidacy (`candidates`) belongs here too: which speakers may take a target *now*, from what
their heartbeats say (leaving, joining, interfaces up). Every speaker narrows the targets the
same way before `elect`, so they agree on the owner.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

LOAD_BOUND = 1.25


@dataclass(frozen=True, slots=True)
class Target:
    """One announced unit: the IPs that must live on the same node (a service's families, or
    the services sharing an IP), keyed by the first IP, as MetalLB does."""

    key: str
    ips: tuple[str, ...]
    eligible: frozenset[str] | None = None  # None: any live speaker


@functools.lru_cache(maxsize=65536)
def rank(node: str, key: str) -> bytes:
    return hashlib.sha256(f"{node}#{key}".encode()).digest()


@functools.lru_cache(maxsize=65536)
def _ranked(pool: frozenset[str], key: str) -> tuple[str, ...]:
    """`pool` in the order of their rank for `key` (the same few pools come back every
    evaluation)."""
    return tuple(sorted(pool, key=lambda n: rank(n, key)))


def elect(
    targets: Iterable[Target],
    live: Iterable[str],
    claims: Mapping[str, Iterable[str]],
) -> dict[str, str | None]:
    """Owner per target key (None when no candidate exists).

    `live`: speakers that are up, not leaving, with the target's interface up.
    `claims`: for each node, the keys of the targets it currently announces.
    """
    live_nodes = frozenset(live)
    claimed_by: dict[str, list[str]] = {}
    for node, keys in claims.items():
        for key in keys:
            claimed_by.setdefault(key, []).append(node)

    ordered = sorted(targets, key=lambda t: t.key)
    candidates: dict[str, tuple[str, ...]] = {}
    for target in ordered:
        pool = live_nodes if target.eligible is None else live_nodes & target.eligible
        candidates[target.key] = _ranked(pool, target.key)
    placed_nodes = {n for c in candidates.values() for n in c}
    share = len(ordered) / len(placed_nodes) if placed_nodes else 0.0
    cap = max(math.ceil(share), math.floor(LOAD_BOUND * share))

    owners: dict[str, str | None] = {}
    load = dict.fromkeys(placed_nodes, 0)
    # Pass 1: keep what candidates already hold.
    for target in ordered:
        claimants = set(claimed_by.get(target.key, ()))
        holder = next((n for n in candidates[target.key] if n in claimants), None)
        if holder is not None:
            owners[target.key] = holder
            load[holder] += 1
    # Pass 2: place the rest, bounded.
    for target in ordered:
        if target.key in owners:
            continue
        ranked = candidates[target.key]
        if not ranked:
            owners[target.key] = None
            continue
        chosen = next((n for n in ranked if load[n] < cap), None)
        if chosen is None:
            chosen = min(ranked, key=lambda n: load[n])  # stable: keeps hash order on ties
        owners[target.key] = chosen
        load[chosen] += 1
    return owners


@dataclass(frozen=True, slots=True)
class Candidacy:
    """What a speaker's heartbeat says about its readiness to take targets."""

    leaving: bool
    joining: bool
    interfaces: frozenset[str]  # announcing interfaces that are up


def candidates(
    target: Target,
    interfaces: Iterable[str],
    speakers: Mapping[str, Candidacy],
    held_before: bool,
) -> Target:
    """`target` with its eligible set narrowed to the speakers that may take it now.

    A leaving speaker never may. A joining one (still listening after a start or a link coming
    back) may take only a target no speaker ever held (`held_before` False: a cold start, so a
    fleet started together spreads out); a target someone held fails over only to speakers
    ready now. With `interfaces` (the advertisement's), a speaker needs one of them up; without,
    any up interface will do.
    """
    wanted = frozenset(interfaces)
    able = frozenset(
        name
        for name, speaker in speakers.items()
        if not speaker.leaving
        and (not held_before or not speaker.joining)
        and (wanted & speaker.interfaces if wanted else speaker.interfaces)
    )
    eligible = able if target.eligible is None else able & target.eligible
    return Target(target.key, target.ips, eligible)
