"""The simulation's invariants, checked after every step, and the test for quiescence. Pure.

With W = one detection time + twice the largest delay (of the segment, or of the one before
it, whose frames may still be in flight):
- one owner: from W after the network became whole (and after its last fault), at most one
  node announces each IP;
- clients follow: every client names the owner by W after the heal, or (for an owner that took
  over later, perhaps racing another node that took over at the same instant) by W after;
- no flapping: while the network stays whole (after W), no IP goes back to a node it left;
- planned handover: after a node starts leaving, an IP that had an owner always has one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pikube.lb.l2.lifecycle import IPState, text_ip
from pikube.lb.l2.schedule import SETTINGS, Violation
from pikube.lb.membership.protocol import Heartbeat

if TYPE_CHECKING:
    from pikube.lb.l2.sim import Simulation

INF = float("inf")
_SETTLED = frozenset({IPState.STANDBY, IPState.ANNOUNCING})
_ANNOUNCING = IPState.ANNOUNCING  # (an enum member's lookup costs more than a global's)


def quiescent(sim: Simulation) -> bool:
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
    now = sim.now
    if sim._arps_pending or sim.whole_since is None:
        return False
    if now < sim.whole_since + sim.window_s:
        return False
    live = {n.name: n for n in sim.nodes.values() if n.core is not None and n.link_up}
    speaking: dict[str, Heartbeat] = {}
    for name, node in live.items():
        core = node.core
        assert core is not None
        if core.leaving or core.rejoined or core.contested or now < core.joining_until:
            return False
        if core.liveness.pending:
            return False
        if core._was_joining or core._last_evaluated < core.started_at + SETTINGS.startup_grace_s:
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
    for ip in sim._packed_ips:
        owners = announcing(sim, ip)
        if len(owners) > 1:
            return False
        others = [n.name for n in live.values() if ip in n.answering and n.name not in owners]
        if others:
            return False
        if not owners:
            continue
        for client in sim.clients:
            entries = client.entries.get(ip, ())
            if client.names(ip, now) != owners[0]:
                return False
            if any(node != owners[0] for arrival, node in entries if arrival > now):
                return False
    return True


def answering(sim: Simulation, ip: bytes) -> list[str]:
    return [n.name for n in sim.nodes.values() if n.core is not None and ip in n.answering]


def announcing(sim: Simulation, ip: bytes) -> list[str]:
    """Nodes announcing `ip` as its owner (not those handing it over)."""
    found = []
    key = sim._ip_keys[ip]
    for node in sim.nodes.values():
        core = node.core
        if core is None or ip not in node.answering:
            continue
        life = core.lives.get(key)
        if life is not None and life.state is _ANNOUNCING:
            found.append(node.name)
    return found


def check(sim: Simulation) -> Violation | None:
    now = sim.now
    if sim.leave_at is not None:
        for ip in sim.owned_at_leave:
            if not answering(sim, ip):
                return _violation(sim, f"{text_ip(ip)} unowned during a planned handover")
    whole_since = sim.whole_since
    if whole_since is None or now < whole_since + sim.window_s:
        return None
    nodes = sim.nodes.values()
    for ip in sim._packed_ips:
        key = sim._ip_keys[ip]
        owners = []  # announcing(sim, ip), without the call (asked after every step)
        for node in nodes:
            core = node.core
            if core is not None and ip in node.answering:
                life = core.lives.get(key)
                if life is not None and life.state is _ANNOUNCING:
                    owners.append(node.name)
        if not owners:
            continue
        if len(owners) > 1:
            return _violation(sim, f"{text_ip(ip)} has {len(owners)} owners: {owners}")
        owner = owners[0]
        previous = sim.owners.get(ip)
        if previous != owner:
            if owner in sim.left.setdefault(ip, set()):
                return _violation(sim, f"{text_ip(ip)} flapped back to {owner}")
            if previous is not None:
                sim.left[ip].add(previous)
            sim.owners[ip] = owner
        if now < sim.took_at.get((owner, ip), 0.0) + sim.window_s:  # not yet due
            continue  # (and W after the network became whole has passed: see above)
        for i, client in enumerate(sim.clients):
            named = client.names(ip, now)
            if named != owner:
                return _violation(
                    sim, f"client {i} names {named} for {text_ip(ip)}, owned by {owner}"
                )
    return None


def _violation(sim: Simulation, what: str) -> Violation:
    return Violation(sim.schedule, sim.now, what)
