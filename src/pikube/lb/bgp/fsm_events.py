"""The BGP session machine's vocabulary (`fsm`): its states and timers, the events it is fed
and the actions it answers with. Plain values. Pure.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from pikube.lb.bgp import codec
from pikube.lb.bgp.codec import IPAddress, IPNetwork
from pikube.lb.model import LargeCommunity, StandardCommunity


@dataclass(frozen=True)
class RouteAttributes:
    """What a route of ours carries besides its prefix."""

    local_pref: int | None = None  # sent to iBGP peers only (100 when None)
    communities: tuple[StandardCommunity, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()


class State(enum.Enum):
    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


class Timer(enum.Enum):
    CONNECT_RETRY = "connect-retry"
    HOLD = "hold"
    KEEPALIVE = "keepalive"


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Stop:
    """Withdraw everything and close with Cease (administrative shutdown unless told)."""

    subcode: int = codec.Cease.ADMINISTRATIVE_SHUTDOWN


@dataclass(frozen=True)
class StopGraceful:
    """Close without a word, so a graceful-restart peer keeps our routes (RFC 4724)."""


@dataclass(frozen=True)
class TcpConnected:
    local_address: IPAddress


@dataclass(frozen=True)
class TcpFailed:
    reason: str


@dataclass(frozen=True)
class Received:
    data: bytes


@dataclass(frozen=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True)
class SetRoutes:
    routes: Mapping[IPNetwork, RouteAttributes]
    next_hop_v6: ipaddress.IPv6Address | None = None  # for IPv6 routes on an IPv4 session


@dataclass(frozen=True)
class BfdDown:
    pass


Event = (
    Start
    | Stop
    | StopGraceful
    | TcpConnected
    | TcpFailed
    | Received
    | TimerFired
    | SetRoutes
    | BfdDown
)


@dataclass(frozen=True)
class Connect:
    pass


@dataclass(frozen=True)
class Send:
    data: bytes
    kind: codec.MessageType


@dataclass(frozen=True)
class Close:
    reason: str


@dataclass(frozen=True)
class StartTimer:
    timer: Timer
    seconds: float


@dataclass(frozen=True)
class StopTimer:
    timer: Timer


@dataclass(frozen=True)
class StateChanged:
    old: State
    new: State
    reason: str


@dataclass(frozen=True)
class RoutesReceived:
    """What the peer told us, after validation (informational: nothing is installed)."""

    announced: int
    withdrawn: int
    treat_as_withdraw: str | None
    problems: tuple[str, ...]


Action = Connect | Send | Close | StartTimer | StopTimer | StateChanged | RoutesReceived
