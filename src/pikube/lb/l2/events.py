"""What goes into the speaker's core (events) and what comes out (actions). Plain values.

Every event carries `now` (monotonic seconds): the core never reads a clock. Actions are
instructions for the wiring (`pikube.lb.speaker`) or the simulation (`pikube.lb.l2.sim`):
sockets to use, packets to send, things to log and count.

Values, never changed once built. The ones built on every tick (`Received`, `Tick`,
`TimerFired`, `SendHeartbeat`, `Announce`) are not `frozen`: a frozen dataclass takes about four
times as long to build (each field through `object.__setattr__`), and the simulation builds
hundreds per schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

from pikube.lb.announcements import Announcement, DesiredState
from pikube.lb.l2.bridge import BridgeEntry
from pikube.lb.membership.protocol import Heartbeat

# -- events ---------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: see the module's note
class Received:
    """A heartbeat from the network: raw bytes (authenticated by the core) or, in the
    simulation, an already decoded one."""

    heartbeat: bytes | Heartbeat
    source: str  # the sender's address (where a planned handover's bridge sends to)
    arrived_s: float
    seq: int = 0  # a decoded heartbeat's number, when the sender shares one unnumbered value


@dataclass(slots=True)  # not frozen: see the module's note
class Tick:
    """Once per heartbeat interval: what arrived since the last drain; send our heartbeat."""

    now: float
    received: tuple[Received, ...] = ()


@dataclass(slots=True)  # not frozen: see the module's note
class TimerFired:
    """The time the core asked for (`SpeakerCore.wake_at`) has come."""

    now: float
    received: tuple[Received, ...] = ()


@dataclass(frozen=True, slots=True)
class Configured:
    now: float
    desired: DesiredState


@dataclass(frozen=True, slots=True)
class LinkChanged:
    now: float
    interface: str
    up: bool  # admin up with a carrier; a removed interface is down


@dataclass(frozen=True, slots=True)
class ForeignClaim:
    """Another MAC said it has `ip` (a reply to our probe, a gratuitous ARP, an NA)."""

    now: float
    ip: bytes
    mac: bytes


@dataclass(frozen=True, slots=True)
class PeerAnswered:
    """The kernel at a peer's address answered our liveness probe (`ProbePeer`)."""

    now: float
    address: str


@dataclass(frozen=True, slots=True)
class Leave:
    """SIGTERM: hand everything over (make-before-break)."""

    now: float


@dataclass(frozen=True, slots=True)
class Stop:
    """The end of leaving: release whatever is still held."""

    now: float


Event = Tick | TimerFired | Configured | LinkChanged | ForeignClaim | PeerAnswered | Leave | Stop

# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """Answer ARP/NDP for `ip` on these interfaces."""

    ip: bytes
    interfaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Release:
    """Stop answering for `ip` everywhere."""

    ip: bytes


@dataclass(slots=True)  # not frozen: see the module's note
class Announce:
    """Send a gratuitous ARP (IPv4) or unsolicited NA (IPv6) for `ip` now."""

    ip: bytes
    interfaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask who has `ip`, without claiming it; report answers as ForeignClaim."""

    ip: bytes
    interfaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProbePeer:
    """Ask whether a late peer's link is there: ARP-probe its address (`probes` frames) on
    these interfaces and report its kernel's answer as PeerAnswered (`l2.liveness`)."""

    address: str
    interfaces: tuple[str, ...]
    probes: int = 1


@dataclass(frozen=True, slots=True)
class EndProbe:
    ips: tuple[bytes, ...]


@dataclass(slots=True)  # not frozen: see the module's note
class SendHeartbeat:
    """Broadcast this heartbeat on every interface that is up (the wiring numbers it)."""

    heartbeat: Heartbeat
    interfaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ApplyBridges:
    """The connection bridges that must exist now (all of them)."""

    entries: tuple[BridgeEntry, ...]


@dataclass(frozen=True, slots=True)
class Took:
    announcement: Announcement


@dataclass(frozen=True, slots=True)
class Gave:
    announcement: Announcement
    reason: str


@dataclass(frozen=True, slots=True)
class ConflictSeen:
    """A host that is not a speaker answered or announced a service IP."""

    ip: str


@dataclass(frozen=True, slots=True)
class Note:
    """Something to log: a `logging` level and the text."""

    level: int
    text: str


Action = (
    Claim
    | Release
    | Announce
    | Probe
    | ProbePeer
    | EndProbe
    | SendHeartbeat
    | ApplyBridges
    | Took
    | Gave
    | ConflictSeen
    | Note
)
