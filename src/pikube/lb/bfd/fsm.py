"""One BFD session in asynchronous mode (RFC 5880 section 6), pure: events in, actions out.

Theory of operation. The adapter feeds `AdminUp`/`AdminDown`, each received (decoded)
control packet and timer expiries; the session answers with packets to send, timers to
start or stop and state changes. Two timers: TRANSMIT (the adapter adds RFC 5880's jitter,
75-100 % of the interval) and DETECT. What it implements of RFC 5880:
- the three-way handshake Down -> Init -> Up (6.2) and the state table of 6.8.6;
- the detection time: the remote's detect multiplier times the larger of our required
  receive interval and the remote's desired transmit interval (6.8.4); expiry takes an Init
  or Up session Down with diagnostic 1 and forgets the remote discriminator;
- transmit intervals: the larger of our desired transmit interval and the remote's required
  receive interval; at least one second while the session is not Up (6.8.3), and the switch
  to the fast rate once Up is announced with a Poll sequence (P until the remote answers F);
- a packet with P is answered at once with F (6.8.7);
- passive mode (a BFDProfile's passiveMode): nothing is sent until the remote has spoken;
- AdminDown sends AdminDown packets (diagnostic 7) and stops.
No echo function, no demand mode, no authentication (refused by the codec).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pikube.lb.bfd import codec
from pikube.lb.bfd.codec import ControlPacket, Diagnostic, SessionState

SLOW_TX_US = 1_000_000


class Timer(enum.Enum):
    TRANSMIT = "transmit"
    DETECT = "detect"


@dataclass(frozen=True)
class BfdSettings:
    local_discriminator: int
    desired_min_tx_ms: int = 300
    required_min_rx_ms: int = 300
    detect_mult: int = 3
    passive: bool = False


@dataclass(frozen=True)
class AdminUp:
    pass


@dataclass(frozen=True)
class AdminDown:
    pass


@dataclass(frozen=True)
class Received:
    packet: ControlPacket


@dataclass(frozen=True)
class TimerFired:
    timer: Timer


Event = AdminUp | AdminDown | Received | TimerFired


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class StartTimer:
    timer: Timer
    seconds: float
    jitter: bool = False  # the adapter sends at 75-100 % of `seconds` (RFC 5880 6.8.7)


@dataclass(frozen=True)
class StopTimer:
    timer: Timer


@dataclass(frozen=True)
class StateChanged:
    old: SessionState
    new: SessionState
    diagnostic: Diagnostic


Action = Send | StartTimer | StopTimer | StateChanged


class BfdSession:
    def __init__(self, settings: BfdSettings) -> None:
        if settings.local_discriminator == 0:
            raise ValueError("the local discriminator must not be 0")
        self.settings = settings
        self.state = SessionState.ADMIN_DOWN
        self.diagnostic = Diagnostic.ADMINISTRATIVELY_DOWN
        self.remote_discriminator = 0
        self.remote_state = SessionState.DOWN
        self.remote_min_rx_us = 1  # RFC 5880 6.8.1: initial value
        self.remote_desired_tx_us = 0
        self.remote_detect_mult = 0
        self.polling = False
        self.heard = False
        self.transmitting = False
        self.scheduled_interval_s = 0.0  # the TRANSMIT interval last asked for

    # -- intervals ---------------------------------------------------------------------------

    @property
    def local_tx_us(self) -> int:
        configured = self.settings.desired_min_tx_ms * 1000
        return configured if self.state is SessionState.UP else max(configured, SLOW_TX_US)

    @property
    def transmit_interval_s(self) -> float:
        return max(self.local_tx_us, self.remote_min_rx_us) / 1e6

    @property
    def detection_time_s(self) -> float:
        agreed = max(self.settings.required_min_rx_ms * 1000, self.remote_desired_tx_us)
        return self.remote_detect_mult * agreed / 1e6

    def packet(self, *, poll: bool = False, final: bool = False) -> ControlPacket:
        return ControlPacket(
            state=self.state,
            my_discriminator=self.settings.local_discriminator,
            your_discriminator=self.remote_discriminator,
            desired_min_tx_us=self.local_tx_us,
            required_min_rx_us=self.settings.required_min_rx_ms * 1000,
            detect_mult=self.settings.detect_mult,
            diagnostic=self.diagnostic,
            poll=poll and not final,
            final=final,
        )

    # -- events ------------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        if isinstance(event, AdminUp):
            if self.state is not SessionState.ADMIN_DOWN:
                return []
            actions = self._to(SessionState.DOWN, Diagnostic.NONE)
            if not self.settings.passive:
                actions += self._transmit()
            return actions
        if isinstance(event, AdminDown):
            if self.state is SessionState.ADMIN_DOWN:
                return []
            actions = self._to(SessionState.ADMIN_DOWN, Diagnostic.ADMINISTRATIVELY_DOWN)
            self.transmitting = False
            return [
                *actions,
                Send(codec.encode(self.packet())),
                StopTimer(Timer.TRANSMIT),
                StopTimer(Timer.DETECT),
            ]
        if isinstance(event, TimerFired):
            if event.timer is Timer.TRANSMIT:
                return self._transmit() if self.transmitting else []
            return self._detection_expired()
        return self._received(event.packet)

    def _to(self, new: SessionState, diagnostic: Diagnostic) -> list[Action]:
        old = self.state
        self.state = new
        self.diagnostic = diagnostic
        return [] if old is new else [StateChanged(old, new, diagnostic)]

    def _transmit(self) -> list[Action]:
        if self.state is SessionState.ADMIN_DOWN:
            return []
        if self.settings.passive and not self.heard:
            return []
        self.transmitting = True
        actions: list[Action] = []
        # A remote that asks for no packets (required min RX 0) gets none (6.8.7).
        if self.remote_min_rx_us != 0:
            actions.append(Send(codec.encode(self.packet(poll=self.polling))))
        self.scheduled_interval_s = self.transmit_interval_s
        actions.append(StartTimer(Timer.TRANSMIT, self.scheduled_interval_s, jitter=True))
        return actions

    def _detection_expired(self) -> list[Action]:
        actions: list[Action] = []
        if self.state in (SessionState.INIT, SessionState.UP):
            actions += self._to(SessionState.DOWN, Diagnostic.CONTROL_DETECTION_TIME_EXPIRED)
            self.polling = False
        self.remote_discriminator = 0
        self.remote_state = SessionState.DOWN
        return actions

    def _received(self, p: ControlPacket) -> list[Action]:
        s = self.settings
        if p.your_discriminator not in (0, s.local_discriminator):
            return []  # not for this session
        self.heard = True
        self.remote_discriminator = p.my_discriminator
        self.remote_state = p.state
        self.remote_desired_tx_us = p.desired_min_tx_us
        self.remote_min_rx_us = p.required_min_rx_us
        self.remote_detect_mult = p.detect_mult
        if p.final and self.polling:
            self.polling = False
        if self.state is SessionState.ADMIN_DOWN:
            return []
        actions: list[Action] = []
        if p.state is SessionState.ADMIN_DOWN:
            if self.state is not SessionState.DOWN:
                actions += self._to(SessionState.DOWN, Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN)
        elif self.state is SessionState.DOWN:
            if p.state is SessionState.DOWN:
                actions += self._to(SessionState.INIT, Diagnostic.NONE)
            elif p.state is SessionState.INIT:
                actions += self._to(SessionState.UP, Diagnostic.NONE)
        elif self.state is SessionState.INIT:
            if p.state in (SessionState.INIT, SessionState.UP):
                actions += self._to(SessionState.UP, Diagnostic.NONE)
        elif p.state is SessionState.DOWN:  # we are Up
            actions += self._to(SessionState.DOWN, Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN)
        went_up = any(isinstance(a, StateChanged) and a.new is SessionState.UP for a in actions)
        went_down = any(isinstance(a, StateChanged) and a.old is SessionState.UP for a in actions)
        if went_up:
            self.polling = True  # announce the fast rate (6.8.3)
        if went_down:
            self.polling = False
        if self.detection_time_s > 0:
            actions.append(StartTimer(Timer.DETECT, self.detection_time_s))
        if p.poll:
            actions.append(Send(codec.encode(self.packet(final=True))))
        changed = any(isinstance(a, StateChanged) for a in actions)
        # A faster rate (the remote lowered its required RX, or we came Up) applies now, not
        # after a timer armed for the old, slower rate: the remote's detection time is
        # already counting on it.
        faster = self.transmitting and self.transmit_interval_s < self.scheduled_interval_s
        if changed or faster or not self.transmitting:
            # Send the new state now and continue at the rate it implies.
            actions += self._transmit()
        return actions
