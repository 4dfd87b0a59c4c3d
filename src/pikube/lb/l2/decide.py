"""One evaluation of the speaker's core (election, verdicts, transitions, steps), and what a
foreign ARP/NDP claim means. Pure.

Split out of `core` only to keep each module small; it works on a `SpeakerCore`'s fields and
is called by it alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pikube.lb import election
from pikube.lb.announcements import Announcement
from pikube.lb.l2 import events as ev
from pikube.lb.l2.bridge import BridgeEntry
from pikube.lb.l2.lifecycle import (
    RELEASE_REASONS,
    IPState,
    Step,
    TargetLife,
    Verdict,
    mac_text,
    packed,
    text_ip,
    transition,
    verdict,
)
from pikube.lb.l2.plan import plan

if TYPE_CHECKING:
    from pikube.lb.l2.core import SpeakerCore

_Targets = dict[str, tuple[Announcement, election.Target, bool]]  # key: (ann, narrowed, held)
_NO_RIVALS: frozenset[str] = frozenset()
# Enum members looked up once (a member's lookup costs several times a global's).
_STANDBY, _CONFLICT, _ANNOUNCING = IPState.STANDBY, IPState.CONFLICT, IPState.ANNOUNCING
_RETRY, _ANNOUNCE = Verdict.RETRY, Step.ANNOUNCE
_GONE, _LINK_DOWN, _NOBODY = Verdict.GONE, Verdict.LINK_DOWN, Verdict.NOBODY
_NO_SUCCESSOR, _WAIT, _MINE, _MINE_FRESH = (
    Verdict.NO_SUCCESSOR,
    Verdict.WAIT,
    Verdict.MINE,
    Verdict.MINE_FRESH,
)
_TAKEN, _ELSEWHERE = Verdict.TAKEN, Verdict.ELSEWHERE


def evaluate(core: SpeakerCore, now: float, out: list[ev.Action]) -> bool:
    """Move every target on; True if what this node claims changed (peers must hear it)."""
    joining = now < core.joining_until
    chosen = plan(core, joining)
    targets: _Targets = {
        ann.target.key: (ann, narrowed, held)
        for ann, (narrowed, held) in zip(core.desired.announcements, chosen.narrowed, strict=True)
    }
    owners, claims = chosen.owners, chosen.claims

    changed = False
    rejoined, core.rejoined = core.rejoined, False
    contested = core.contested
    if contested:
        core.contested = set()
    lives = core.lives
    keys = targets.keys() if lives.keys() == targets.keys() else targets.keys() | lives.keys()
    for key in sorted(keys):
        life = lives.get(key)
        if life is None:
            life = lives[key] = TargetLife(targets[key][0])
        elif key in targets and life.announcement is not targets[key][0]:
            changed |= _update(core, life, targets[key][0], out)
        owner = owners.get(key)
        elected = _elected(core, key, targets, owner, claims, now, joining)
        if life.state is _CONFLICT and (
            life.conflict_mac in core.speaker_macs or (key in targets and targets[key][2])
        ):
            # The "host" that answered turned out to be a speaker, or speakers hold the IP:
            # between speakers the election decides, not a probe.
            life.deadline = now
        if now < life.deadline:  # the usual case: the election's verdict stands
            final = elected
        else:
            answered = bool(core.probe_answers) and any(
                packed(ip) in core.probe_answers for ip in life.announcement.target.ips
            )
            final = verdict(life, elected, now, answered)
        state, steps = transition(life.state, final)
        if steps:
            changed |= _steps(core, life, steps, final, owner, now, out)
        life.state = state
        if final is _RETRY:  # the conflict's time is up: decide afresh, now
            life.deadline = float("inf")
            state, steps = transition(state, elected)
            changed |= _steps(core, life, steps, elected, owner, now, out)
            life.state = state
        if state is _ANNOUNCING:
            rivals = chosen.rivals.get(key, _NO_RIVALS)
            if not rivals and contested and any(packed(ip) in contested for ip in ann_ips(life)):
                life.rivals = frozenset({"?"})  # claimed and withdrawn unseen: burst below
            if rivals or life.rivals:
                _heal(core, life, rivals, now, out)
            else:
                life.rivals = rivals  # what _heal does when nobody claims it, nor did
            if rejoined and _ANNOUNCE not in steps:
                # A peer came (back) into view: perhaps from the other side of a partition,
                # whose clients may have followed a node that is about to withdraw.
                _burst(core, life, now, out)
        if state is _STANDBY and key not in targets:
            del lives[key]
    return changed


def ann_ips(life: TargetLife) -> tuple[str, ...]:
    return life.announcement.target.ips


def _elected(
    core: SpeakerCore,
    key: str,
    targets: _Targets,
    owner: str | None,
    claims: Mapping[str, frozenset[str]],
    now: float,
    joining: bool,
) -> Verdict:
    """The election's verdict for one target, from this node's point of view."""
    if key not in targets:
        return _GONE
    announcement, _, held = targets[key]
    if not core.usable(announcement):
        return _LINK_DOWN
    if owner is None:
        return _NO_SUCCESSOR if core.leaving else _NOBODY
    if owner == core.settings.node:
        if held:
            return _WAIT if joining else _MINE
        in_grace = now < core.started_at + core.settings.startup_grace_s
        return _WAIT if joining or in_grace else _MINE_FRESH
    return _TAKEN if key in claims.get(owner, ()) else _ELSEWHERE


def _steps(
    core: SpeakerCore,
    life: TargetLife,
    steps: tuple[Step, ...],
    final: Verdict,
    owner: str | None,
    now: float,
    out: list[ev.Action],
) -> bool:
    """Carry out a transition's steps; True if the claims changed."""
    announcement = life.announcement
    ips = [packed(ip) for ip in announcement.target.ips]
    usable = core.usable(announcement)
    changed = False
    for step in steps:
        if step is Step.PROBE:
            for ip in ips:
                core.probe_answers.pop(ip, None)
                core.watched.add(ip)
                out.append(ev.Probe(ip, usable))
            life.deadline = now + core.settings.probe_wait_s
        elif step is Step.END_PROBE:
            core.watched.difference_update(ips)
            out.append(ev.EndProbe(tuple(ips)))
            life.deadline = float("inf")
        elif step is Step.REPORT_CONFLICT:
            ip, mac = next((ip, core.probe_answers[ip]) for ip in ips if ip in core.probe_answers)
            for each in ips:
                core.probe_answers.pop(each, None)
            life.conflict_mac = mac
            life.conflict = (
                f"{text_ip(ip)} is already in use by a host that is not a speaker "
                f"(MAC {mac_text(mac)}); not announcing {', '.join(announcement.services)}"
            )
            life.deadline = now + core.settings.conflict_retry_s
            out.append(ev.ConflictSeen(text_ip(ip)))
            out.append(ev.Note(logging.ERROR, f"IP conflict: {life.conflict}"))
        elif step is Step.CLAIM:
            _bridge_from_holders(core, announcement, usable, now, out)
            life.conflict = ""
            life.deadline = float("inf")
            life.rivals = frozenset()
            core.speaker_ips.update(ips)
            core._heartbeat = None
            out.extend(ev.Claim(ip, usable) for ip in ips)
            out.append(ev.Took(announcement))
            changed = True
        elif step is Step.ANNOUNCE:
            _burst(core, life, now, out)
        elif step is Step.ARM_HANDOVER:
            life.deadline = now + core.settings.detect_s
            life.bursts.clear()  # announcing now would pull clients back from the new owner
        elif step is Step.RELEASE:
            reason = RELEASE_REASONS[final]
            if final is Verdict.TAKEN:
                reason += f": to {owner}"
            elif final is Verdict.HANDOVER_TIMEOUT:
                reason += f": {owner} did not claim it"
            core._release(life, reason, out)
            changed = True
    return changed


def _burst(core: SpeakerCore, life: TargetLife, now: float, out: list[ev.Action]) -> None:
    """Announce now and again after each of the burst's delays."""
    usable = core.usable(life.announcement)
    out.extend(ev.Announce(packed(ip), usable) for ip in life.announcement.target.ips)
    life.bursts = [now + delay for delay in core.settings.burst_s[1:]]


def _heal(
    core: SpeakerCore, life: TargetLife, rivals: frozenset[str], now: float, out: list[ev.Action]
) -> None:
    """A target we keep while other nodes claim it too (a split brain): win clients back.

    While rivals claim it, announce once per detection time (they announce too). When the last
    rival withdraws (it heard us again and lost the election), announce in a full burst: the
    rival's last gratuitous ARP or reply may be the last thing clients heard, and nothing else
    would send them back before their neighbour cache expires (about 30 s).
    """
    if rivals and now - life.defended_at > core.settings.detect_s:
        life.defended_at = now
        core._announce(life, out)
    elif life.rivals and not rivals:
        _burst(core, life, now, out)
    life.rivals = rivals


def _update(
    core: SpeakerCore, life: TargetLife, announcement: Announcement, out: list[ev.Action]
) -> bool:
    """A held target whose IPs or interfaces changed in the configuration."""
    held = life.announcement
    if held is announcement:
        return False
    life.announcement = announcement
    if not life.holding or (
        held.target.ips == announcement.target.ips and held.interfaces == announcement.interfaces
    ):
        return False
    out.extend(ev.Release(packed(ip)) for ip in set(held.target.ips) - set(announcement.target.ips))
    usable = core.usable(announcement)
    out.extend(ev.Claim(packed(ip), usable) for ip in announcement.target.ips)
    core.speaker_ips.update(packed(ip) for ip in announcement.target.ips)
    core._heartbeat = None
    return True


def _bridge_from_holders(
    core: SpeakerCore,
    announcement: Announcement,
    usable: tuple[str, ...],
    now: float,
    out: list[ev.Action],
) -> None:
    """A live peer still holds what we take (a planned handover): bridge its connections."""
    if core.settings.bridge_s <= 0:
        return
    ips = {packed(ip) for ip in announcement.target.ips}
    added = False
    for node, peer in core.view.peers.items():
        address = core.peer_addresses.get(node)
        if address is None or not ips & peer.heartbeat.claims:
            continue
        for interface in usable:
            for ip in announcement.target.ips:
                if ":" not in ip:
                    core.bridges[BridgeEntry(ip, address, interface)] = now + core.settings.bridge_s
                    added = True
    if added:
        out.append(ev.ApplyBridges(tuple(core.bridges)))


def foreign_claim(
    core: SpeakerCore, now: float, ip: bytes, mac: bytes, out: list[ev.Action]
) -> None:
    """Another MAC said it has `ip`: a probe's answer, a rival speaker, or a conflict."""
    if mac in core.speaker_macs:
        # Another speaker (perhaps one we cannot hear right now: a partition): not a
        # conflict, the election settles it once heartbeats flow again. But clients follow
        # whoever spoke last, so while we hold it, we answer: at once (at most once per
        # detection time) and again one detection time after its latest frame.
        _answer_rival(core, now, text_ip(ip), out)
        rival = core.mac_nodes.get(mac)
        if rival is not None:  # its heartbeats may all have been lost: watch for them
            core.arp_rivals.setdefault(rival, set()).add(ip)
        return
    if ip in core.watched:
        core.probe_answers.setdefault(ip, mac)
        return
    out.append(ev.ConflictSeen(text_ip(ip)))
    if now - core._conflict_noted.get(ip, -1e9) > core.settings.conflict_retry_s:
        core._conflict_noted[ip] = now
        out.append(
            ev.Note(
                logging.ERROR,
                f"IP conflict: host {mac_text(mac)}, which is not a speaker, claims "
                f"{text_ip(ip)}, which this node announces; find that host and remove the "
                "address from it",
            )
        )
    text = text_ip(ip)
    for life in core.held():
        if text not in life.announcement.target.ips:
            continue
        if now - life.defended_at > 1.0:
            life.defended_at = now  # defend once a second at most (RFC 5227 section 2.4)
            core._announce(life, out)
        # The last word must be ours, as with a rival speaker: the "host" may be a speaker
        # we have not heard yet (it restarted during a partition), and may vanish next.
        life.defend_at = now + core.settings.detect_s


def _answer_rival(core: SpeakerCore, now: float, ip: str, out: list[ev.Action]) -> None:
    limit = core.settings.detect_s
    for life in core.lives.values():
        if life.state is not IPState.ANNOUNCING or ip not in life.announcement.target.ips:
            continue
        if now >= life.defended_at + limit:
            life.defended_at = now
            core._announce(life, out)
        # And once more, a detection time after the rival's latest frame: ours may cross
        # its last one on the wire, and the last word must be ours.
        life.defend_at = now + limit
