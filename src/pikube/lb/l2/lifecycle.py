"""The life of one service IP on one speaker, as a state machine. Pure: no sockets, no clock.

Rules of this module: everything that decides whether this node answers for a target lives
here (and in `election`, which says who should); the speaker only carries events in and
actions out. Nothing here reads the time: every event carries `now`.

Theory of operation
-------------------
Each target (one or more IPs that live on one node) has an `IPState`:

    STANDBY       not ours: another node owns it, nobody may, or we wait (joining, cold start)
    PROBING       elected for an IP no speaker ever held: we asked the LAN who has it and wait
                  `probe_wait_s` for an answer (RFC 5227 style)
    CONFLICT      a host that is not a speaker answered the probe: not announced; retried
                  after `conflict_retry_s`
    ANNOUNCING    we answer ARP/NDP for it and announce it (gratuitous ARP, unsolicited NA)
    HANDING_OVER  another node was elected; we keep answering (make-before-break) until its
                  heartbeat claims the target or one detection time passes

On every evaluation the node computes a `Verdict` per target from the election (and the
target's own deadline), and `TRANSITIONS[state, verdict]` gives the next state and the
`Step`s to take; a pair missing from the table means "stay, do nothing". The node
(`pikube.lb.l2.node`) turns steps into concrete actions for the wiring.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass, field

from pikube.lb.announcements import Announcement


class IPState(enum.Enum):
    STANDBY = "standby"
    PROBING = "probing"
    CONFLICT = "conflict"
    ANNOUNCING = "announcing"
    HANDING_OVER = "handing-over"

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is slow


class Verdict(enum.Enum):
    """What the election and the clock say about one target, from this node's point of view."""

    MINE = "mine"  # elected; some speaker held it before: take it now
    MINE_FRESH = "mine-fresh"  # elected; no speaker ever held it: make sure the LAN agrees
    WAIT = "wait"  # elected, but not yet (joining, or the cold-start grace)
    ELSEWHERE = "elsewhere"  # another node elected; it does not claim it yet
    TAKEN = "taken"  # another node elected, and it claims it
    NOBODY = "nobody"  # no node may announce it
    NO_SUCCESSOR = "no-successor"  # we are leaving and no node can take it yet: keep it
    GONE = "gone"  # no longer in the configuration
    LINK_DOWN = "link-down"  # we may not: none of its interfaces is up here
    PROBE_CLEAN = "probe-clean"  # the probe's time is up and nobody answered
    PROBE_ANSWERED = "probe-answered"  # a host that is not a speaker answered the probe
    RETRY = "retry"  # a conflict's retry time has come
    HANDOVER_TIMEOUT = "handover-timeout"  # the elected node never claimed it

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is slow


class Step(enum.Enum):
    """What a transition does; the node turns these into actions."""

    PROBE = "probe"  # ask the LAN who has these IPs; arm the probe deadline
    END_PROBE = "end-probe"  # stop watching for answers
    CLAIM = "claim"  # answer for the IPs, bridge a planned handover, tell the peers
    ANNOUNCE = "announce"  # gratuitous ARP / unsolicited NA now and in a short burst
    REPORT_CONFLICT = "report-conflict"  # say who answered; arm the retry
    ARM_HANDOVER = "arm-handover"  # the elected node has one detection time to claim it
    RELEASE = "release"  # stop answering, tell the peers

    __hash__ = object.__hash__  # members are singletons; Enum's own hash is slow


S, V, P = IPState, Verdict, Step
_TAKE = (P.CLAIM, P.ANNOUNCE)
_DROP = (P.RELEASE,)

TRANSITIONS: dict[tuple[IPState, Verdict], tuple[IPState, tuple[Step, ...]]] = {
    (S.STANDBY, V.MINE): (S.ANNOUNCING, _TAKE),
    (S.STANDBY, V.MINE_FRESH): (S.PROBING, (P.PROBE,)),
    (S.PROBING, V.MINE): (S.ANNOUNCING, (P.END_PROBE, *_TAKE)),
    (S.PROBING, V.PROBE_CLEAN): (S.ANNOUNCING, (P.END_PROBE, *_TAKE)),
    (S.PROBING, V.PROBE_ANSWERED): (S.CONFLICT, (P.END_PROBE, P.REPORT_CONFLICT)),
    (S.PROBING, V.ELSEWHERE): (S.STANDBY, (P.END_PROBE,)),
    (S.PROBING, V.TAKEN): (S.STANDBY, (P.END_PROBE,)),
    (S.PROBING, V.NOBODY): (S.STANDBY, (P.END_PROBE,)),
    (S.PROBING, V.GONE): (S.STANDBY, (P.END_PROBE,)),
    (S.PROBING, V.LINK_DOWN): (S.STANDBY, (P.END_PROBE,)),
    (S.CONFLICT, V.RETRY): (S.STANDBY, ()),
    (S.CONFLICT, V.GONE): (S.STANDBY, ()),
    (S.ANNOUNCING, V.ELSEWHERE): (S.HANDING_OVER, (P.ARM_HANDOVER,)),
    (S.ANNOUNCING, V.NO_SUCCESSOR): (S.HANDING_OVER, ()),  # no deadline: until Stop
    (S.ANNOUNCING, V.TAKEN): (S.STANDBY, _DROP),
    (S.ANNOUNCING, V.NOBODY): (S.STANDBY, _DROP),
    (S.ANNOUNCING, V.GONE): (S.STANDBY, _DROP),
    (S.ANNOUNCING, V.LINK_DOWN): (S.STANDBY, _DROP),
    (S.HANDING_OVER, V.MINE): (S.ANNOUNCING, ()),
    (S.HANDING_OVER, V.MINE_FRESH): (S.ANNOUNCING, ()),
    (S.HANDING_OVER, V.WAIT): (S.ANNOUNCING, ()),
    (S.HANDING_OVER, V.TAKEN): (S.STANDBY, _DROP),
    (S.HANDING_OVER, V.NOBODY): (S.STANDBY, _DROP),
    (S.HANDING_OVER, V.GONE): (S.STANDBY, _DROP),
    (S.HANDING_OVER, V.LINK_DOWN): (S.STANDBY, _DROP),
    (S.HANDING_OVER, V.HANDOVER_TIMEOUT): (S.STANDBY, _DROP),
}

# Why a target was released, by the verdict that released it (metrics label and log).
RELEASE_REASONS: dict[Verdict, str] = {
    V.TAKEN: "handed-over",
    V.NOBODY: "no-candidate",
    V.GONE: "removed",
    V.LINK_DOWN: "link-down",
    V.HANDOVER_TIMEOUT: "handover-timeout",
}

HOLDING = frozenset({S.ANNOUNCING, S.HANDING_OVER})  # states in which we answer for the IPs


def transition(state: IPState, verdict: Verdict) -> tuple[IPState, tuple[Step, ...]]:
    """The next state and the steps to get there (unknown pairs: stay, do nothing)."""
    return TRANSITIONS.get((state, verdict), (state, ()))


@dataclass(slots=True)
class TargetLife:
    """One target's state on this node."""

    announcement: Announcement
    state: IPState = IPState.STANDBY
    deadline: float = float("inf")  # PROBING, CONFLICT, HANDING_OVER: when the verdict changes
    conflict: str = ""  # why it is not announced, while a conflict stands
    conflict_mac: bytes = b""  # who answered the probe
    bursts: list[float] = field(default_factory=list)  # when the next announcements are due
    defended_at: float = -1e9  # last announcement made to win clients back
    defend_at: float = float("inf")  # a deferred one (another speaker announced it)
    rivals: frozenset[str] = frozenset()  # other nodes claiming it too (a split brain)

    @property
    def key(self) -> str:
        return self.announcement.target.key

    @property
    def holding(self) -> bool:
        return self.state in HOLDING


def verdict(life: TargetLife, elected: Verdict, now: float, probe_answered: bool) -> Verdict:
    """The verdict for a target: the election's, unless the target's own deadline has passed
    and the election leaves it where the deadline matters."""
    if now < life.deadline:
        return elected
    state = life.state
    if state is IPState.PROBING and elected in (Verdict.MINE_FRESH, Verdict.WAIT):
        return Verdict.PROBE_ANSWERED if probe_answered else Verdict.PROBE_CLEAN
    if state is IPState.CONFLICT and elected is not Verdict.GONE:
        return Verdict.RETRY
    if state is IPState.HANDING_OVER and elected is Verdict.ELSEWHERE:
        return Verdict.HANDOVER_TIMEOUT
    return elected


@functools.lru_cache(maxsize=65536)
def packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


@functools.lru_cache(maxsize=65536)
def text_ip(ip: bytes) -> str:
    return str(ipaddress.ip_address(ip))


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)
