"""One BGP session (RFC 4271 section 8), as a pure state machine: events in, actions out.

Theory of operation. The adapter (session.py) owns the TCP connection and the clock; this
module owns every decision. It is fed `Event`s (start, stop, TCP connected or failed, bytes
received, a timer fired, new desired routes, BFD down) and answers with `Action`s (connect,
send these bytes, close, start or stop a timer, the session went up or down). Timers are
actions too: `StartTimer(HOLD, 9.0)` asks the adapter to feed `TimerFired(HOLD)` in 9 s unless
it is restarted or stopped first. Nothing here reads a clock, a socket or a file, so every
path, including a peer that sends garbage, is unit-tested and fuzzed without root.

What pikube's speaker needs from a session, and so what this machine does:
- it connects (active) or is handed an accepted connection (passive), sends OPEN with its
  capabilities, checks the peer's OPEN (AS, router ID, hold time), and negotiates the
  families, the hold time (the smaller of the two) and 4-octet AS numbers;
- once Established it keeps the peer's copy of our routes (Adj-RIB-Out) equal to the desired
  routes it is given, with as few UPDATEs as fit, then End-of-RIB per family (RFC 4724);
- a ROUTE-REFRESH makes it send the family's routes again;
- routes the peer sends are decoded and validated (RFC 7606), counted, never installed;
- anything wrong ends the session with the right NOTIFICATION, and it tries again after a
  connect-retry time that doubles up to a bound (reset once a session is Established);
- a stop withdraws and says Cease/administrative shutdown; a graceful stop (RFC 4724) just
  closes, so a router that negotiated graceful restart keeps our routes until we return.
Connection collisions (RFC 4271 6.8) cannot happen: a session is either active or passive.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from pikube.lb.bgp import adj_out, codec
from pikube.lb.bgp.codec import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    ErrorCode,
    Family,
    IPAddress,
    IPNetwork,
    MessageError,
    Notification,
)
from pikube.lb.bgp.fsm_events import (
    Action,
    BfdDown,
    Close,
    Connect,
    Event,
    Received,
    RouteAttributes,
    RoutesReceived,
    Send,
    SetRoutes,
    Start,
    StartTimer,
    State,
    StateChanged,
    Stop,
    StopGraceful,
    StopTimer,
    TcpConnected,
    TcpFailed,
    Timer,
    TimerFired,
)

__all__ = [
    "Action",
    "BfdDown",
    "Close",
    "Connect",
    "Event",
    "Negotiated",
    "PeerSettings",
    "Received",
    "RouteAttributes",
    "RoutesReceived",
    "Send",
    "Session",
    "SetRoutes",
    "Start",
    "StartTimer",
    "State",
    "StateChanged",
    "Stop",
    "StopGraceful",
    "StopTimer",
    "TcpConnected",
    "TcpFailed",
    "Timer",
    "TimerFired",
    "routes_of",
]


LARGE_HOLD_TIME_S = 240.0  # RFC 4271 8: the hold timer while waiting for the peer's OPEN
CEASE_BFD_DOWN = 10  # RFC 9384


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerSettings:
    """What the session needs from a BGPPeer, in the session's own terms."""

    local_asn: int
    router_id: ipaddress.IPv4Address | None = None  # None: the session's local IPv4 address
    peer_asn: int | None = None  # None: any AS that `internal` allows
    internal: bool | None = None  # dynamic ASN: True must equal ours, False must differ
    hold_time_s: int = 90
    keepalive_s: float | None = None  # None: a third of the negotiated hold time
    families: tuple[Family, ...] = (IPV4_UNICAST, IPV6_UNICAST)
    graceful_restart: bool = False
    restart_time_s: int = 120
    restarting: bool = False  # we come back from a graceful stop (the R bit)
    passive: bool = False
    connect_retry_s: float = 1.0
    connect_retry_max_s: float = 30.0

    def open_message(self, router_id: ipaddress.IPv4Address) -> codec.Open:
        caps: list[codec.Capability] = [codec.Multiprotocol(f) for f in self.families]
        caps += [codec.RouteRefreshCapability(), codec.FourOctetAS(self.local_asn)]
        if self.graceful_restart:
            caps.append(
                codec.GracefulRestart(
                    restart_time_s=self.restart_time_s,
                    restarting=self.restarting,
                    families=tuple((f, True) for f in self.families),
                )
            )
        return codec.Open(
            asn=self.local_asn,
            hold_time_s=self.hold_time_s,
            router_id=router_id,
            capabilities=tuple(caps),
        )


@dataclass(frozen=True)
class Negotiated:
    peer: codec.Open
    hold_time_s: int
    keepalive_s: float
    families: frozenset[Family]
    four_octet_as: bool
    internal: bool


def _send(message: codec.Message, four_octet: bool = True) -> Send:
    return Send(codec.encode(message, four_octet), codec.MessageType[_kind(message)])


def _kind(message: codec.Message) -> str:
    return {
        codec.Open: "OPEN",
        codec.Update: "UPDATE",
        codec.Notification: "NOTIFICATION",
        codec.Keepalive: "KEEPALIVE",
        codec.RouteRefresh: "ROUTE_REFRESH",
    }[type(message)]


# --- the machine ------------------------------------------------------------------------------


@dataclass
class Session:
    settings: PeerSettings
    state: State = State.IDLE
    negotiated: Negotiated | None = None
    local_address: IPAddress | None = None
    router_id: ipaddress.IPv4Address | None = None
    desired: dict[IPNetwork, RouteAttributes] = field(default_factory=dict)
    advertised: dict[IPNetwork, RouteAttributes] = field(default_factory=dict)
    next_hop_v6: ipaddress.IPv6Address | None = None
    received: set[IPNetwork] = field(default_factory=set)
    retries: int = 0
    stopped: bool = True
    last_error: str = ""
    _reader: codec.Reader = field(default_factory=codec.Reader)

    @property
    def is_idle(self) -> bool:
        return self.state is State.IDLE

    # -- entry point -----------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        if isinstance(event, Start):
            return self._start()
        if isinstance(event, Stop):
            return self._stop(event.subcode)
        if isinstance(event, StopGraceful):
            self.stopped = True
            return self._down("graceful stop", None, retry=False)
        if isinstance(event, SetRoutes):
            self.desired = dict(event.routes)
            self.next_hop_v6 = event.next_hop_v6
            return self._sync_routes() if self.state is State.ESTABLISHED else []
        if isinstance(event, TcpConnected):
            return self._connected(event.local_address)
        if isinstance(event, TcpFailed):
            if self.state is State.IDLE:
                return []
            return self._down(event.reason, None)
        if isinstance(event, TimerFired):
            return self._timer(event.timer)
        if isinstance(event, BfdDown):
            if self.state is State.IDLE:
                return []
            return self._down("BFD session down", Notification(ErrorCode.CEASE, CEASE_BFD_DOWN))
        return self._received(event.data)

    # -- transitions -----------------------------------------------------------------------

    def _to(self, new: State, reason: str) -> list[Action]:
        if new is self.state:
            return []
        old, self.state = self.state, new
        return [StateChanged(old, new, reason)]

    def _start(self) -> list[Action]:
        if not self.stopped:
            return []
        self.stopped = False
        if self.settings.passive:
            return self._to(State.ACTIVE, "waiting for the peer to connect")
        return [*self._to(State.CONNECT, "connecting"), Connect()]

    def _stop(self, subcode: int) -> list[Action]:
        self.stopped = True
        if self.state is State.IDLE:
            return [StopTimer(Timer.CONNECT_RETRY)]
        actions: list[Action] = []
        if self.state is State.ESTABLISHED:
            actions += self._withdraw_all()
        if self.state in (State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED):
            return actions + self._down(
                "stopped", Notification(ErrorCode.CEASE, subcode), retry=False
            )
        return actions + self._down("stopped", None, retry=False)

    def _connected(self, local: IPAddress) -> list[Action]:
        if self.state not in (State.CONNECT, State.ACTIVE):
            return [Close("a connection arrived while the session is " + self.state.value)]
        self.local_address = local
        self._reader = codec.Reader()
        router_id = self.settings.router_id
        if router_id is None:
            if not isinstance(local, ipaddress.IPv4Address):
                self.stopped = True
                return self._down(
                    "no router ID: give the BGPPeer a routerID (the session is IPv6)",
                    None,
                    retry=False,
                )
            router_id = local
        self.router_id = router_id
        return [
            StopTimer(Timer.CONNECT_RETRY),
            _send(self.settings.open_message(router_id)),
            StartTimer(Timer.HOLD, LARGE_HOLD_TIME_S),
            *self._to(State.OPEN_SENT, "connected, OPEN sent"),
        ]

    def _down(
        self, reason: str, notification: Notification | None, *, retry: bool = True
    ) -> list[Action]:
        actions: list[Action] = []
        if notification is not None:
            actions.append(_send(notification))
        self.last_error = reason
        actions += [
            Close(reason),
            StopTimer(Timer.HOLD),
            StopTimer(Timer.KEEPALIVE),
            *self._to(State.IDLE, reason),
        ]
        self.negotiated = None
        self.advertised.clear()
        self.received.clear()
        if retry and not self.stopped:
            delay = min(
                self.settings.connect_retry_s * 2 ** min(self.retries, 16),
                self.settings.connect_retry_max_s,
            )
            self.retries += 1
            actions.append(StartTimer(Timer.CONNECT_RETRY, delay))
        else:
            actions.append(StopTimer(Timer.CONNECT_RETRY))
        return actions

    def _timer(self, timer: Timer) -> list[Action]:
        if timer is Timer.CONNECT_RETRY:
            if self.stopped or self.state is not State.IDLE:
                return []
            if self.settings.passive:
                return self._to(State.ACTIVE, "waiting for the peer to connect")
            return [*self._to(State.CONNECT, "connecting again"), Connect()]
        if timer is Timer.HOLD:
            if self.state in (State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED):
                return self._down(
                    "hold timer expired", Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0)
                )
            return []
        if self.state in (State.OPEN_CONFIRM, State.ESTABLISHED) and self.negotiated:
            return [
                _send(codec.Keepalive()),
                StartTimer(Timer.KEEPALIVE, self.negotiated.keepalive_s),
            ]
        return []

    # -- messages --------------------------------------------------------------------------

    def _received(self, data: bytes) -> list[Action]:
        if self.state in (State.IDLE, State.CONNECT, State.ACTIVE):
            return []
        actions: list[Action] = []
        try:
            frames = self._reader.feed(data)
        except MessageError as exc:
            return self._down(f"from the peer: {exc.reason}", exc.notification)
        for frame in frames:
            four = self.negotiated.four_octet_as if self.negotiated else True
            try:
                message = codec.decode(frame, four)
                actions += self._message(message)
            except MessageError as exc:
                actions += self._down(f"from the peer: {exc.reason}", exc.notification)
            if self.is_idle:
                break  # the session went down: the rest of the stream is not ours to read
        return actions

    def _message(self, message: codec.Message) -> list[Action]:
        if isinstance(message, Notification):
            return self._down(f"the peer sent NOTIFICATION {message.describe()}", None)
        if self.state is State.OPEN_SENT:
            if not isinstance(message, codec.Open):
                raise MessageError(ErrorCode.FSM, 1, f"expected OPEN, got {_kind(message)}")
            return self._open(message)
        if self.state is State.OPEN_CONFIRM:
            if not isinstance(message, codec.Keepalive):
                raise MessageError(ErrorCode.FSM, 2, f"expected KEEPALIVE, got {_kind(message)}")
            assert self.negotiated is not None
            self.retries = 0
            actions: list[Action] = [*self._restart_hold()]
            actions += self._to(State.ESTABLISHED, "session established")
            actions += self._sync_routes(initial=True)
            return actions
        # Established
        assert self.negotiated is not None
        if isinstance(message, codec.Open):
            raise MessageError(ErrorCode.FSM, 3, "OPEN in an established session")
        hold = self._restart_hold()
        if isinstance(message, codec.Keepalive):
            return hold
        if isinstance(message, codec.RouteRefresh):
            if message.family not in self.negotiated.families:
                return hold
            return hold + self._refresh(message.family)
        assert isinstance(message, codec.Update)
        return hold + self._update(message)

    def _restart_hold(self) -> list[Action]:
        assert self.negotiated is not None
        if self.negotiated.hold_time_s == 0:
            return []
        return [StartTimer(Timer.HOLD, float(self.negotiated.hold_time_s))]

    def _open(self, peer: codec.Open) -> list[Action]:
        s = self.settings
        if s.peer_asn is not None and peer.asn != s.peer_asn:
            raise MessageError(
                ErrorCode.OPEN_MESSAGE,
                codec.OpenError.BAD_PEER_AS,
                f"the peer says AS {peer.asn}, configured AS {s.peer_asn}",
            )
        if (
            s.peer_asn is None
            and s.internal is not None
            and (peer.asn == s.local_asn) != s.internal
        ):
            kind = "internal (our AS)" if s.internal else "external (another AS)"
            raise MessageError(
                ErrorCode.OPEN_MESSAGE,
                codec.OpenError.BAD_PEER_AS,
                f"the peer's AS {peer.asn} is not {kind}",
            )
        if peer.router_id == self.router_id:
            raise MessageError(
                ErrorCode.OPEN_MESSAGE,
                codec.OpenError.BAD_BGP_IDENTIFIER,
                f"the peer uses our router ID {peer.router_id}",
            )
        hold = min(s.hold_time_s, peer.hold_time_s)
        keepalive = hold / 3 if s.keepalive_s is None else min(s.keepalive_s, hold / 3)
        self.negotiated = Negotiated(
            peer=peer,
            hold_time_s=hold,
            keepalive_s=keepalive,
            families=frozenset(s.families) & peer.families,
            four_octet_as=peer.four_octet_as,
            internal=peer.asn == s.local_asn,
        )
        actions: list[Action] = [_send(codec.Keepalive())]
        if hold:
            actions += [
                StartTimer(Timer.HOLD, float(hold)),
                StartTimer(Timer.KEEPALIVE, keepalive),
            ]
        else:
            actions += [StopTimer(Timer.HOLD), StopTimer(Timer.KEEPALIVE)]
        return actions + self._to(State.OPEN_CONFIRM, f"OPEN from AS {peer.asn}")

    def _update(self, update: codec.Update) -> list[Action]:
        announced = update.announced()
        withdrawn = update.withdrawn_all()
        self.received.difference_update(withdrawn)
        self.received.update(announced)
        if not (announced or withdrawn or update.treat_as_withdraw or update.problems):
            return []
        return [
            RoutesReceived(
                len(announced), len(withdrawn), update.treat_as_withdraw, update.problems
            )
        ]

    # -- our routes (the arithmetic is in adj_out) -----------------------------------------

    def _speaking(self) -> adj_out.Speaking:
        n = self.negotiated
        assert n is not None
        assert self.local_address is not None
        return adj_out.Speaking(
            self.settings.local_asn,
            n.internal,
            n.four_octet_as,
            n.families,
            self.local_address,
            self.next_hop_v6,
        )

    def _sync_routes(self, initial: bool = False) -> list[Action]:
        actions, self.advertised = adj_out.sync(
            self._speaking(), self.advertised, self.desired, initial
        )
        return actions

    def _refresh(self, family: Family) -> list[Action]:
        return adj_out.refresh(self._speaking(), self.advertised, family)

    def _withdraw_all(self) -> list[Action]:
        actions = adj_out.withdraw_all(self._speaking(), self.advertised)
        self.advertised.clear()
        return actions


def routes_of(actions: Iterable[Action], four_octet_as: bool = True) -> list[codec.Update]:
    """The UPDATEs among `actions`, decoded (for tests and logs)."""
    out = []
    for action in actions:
        if isinstance(action, Send) and action.kind is codec.MessageType.UPDATE:
            message = codec.decode(action.data, four_octet_as)
            assert isinstance(message, codec.Update)
            out.append(message)
    return out
