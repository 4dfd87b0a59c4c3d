"""BFD: the control packet codec (scapy as oracle) and the RFC 5880 session machine (pure)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.bfd import BFD

from pikube.lb.bfd import codec, fsm
from pikube.lb.bfd.codec import ControlPacket, Diagnostic, SessionState
from pikube.lb.bfd.fsm import BfdSession, BfdSettings, Received, StartTimer, Timer, TimerFired

FAST = BfdSettings(local_discriminator=7, desired_min_tx_ms=100, required_min_rx_ms=100)


def remote(state: SessionState, your: int = 7, **kw: object) -> Received:
    fields: dict[str, object] = {
        "state": state,
        "my_discriminator": 99,
        "your_discriminator": your,
        "desired_min_tx_us": 100_000,
        "required_min_rx_us": 100_000,
        "detect_mult": 3,
    }
    fields.update(kw)
    return Received(ControlPacket(**fields))  # type: ignore[arg-type]


def sent(actions: list[fsm.Action]) -> list[ControlPacket]:
    return [codec.decode(a.data) for a in actions if isinstance(a, fsm.Send)]


def state_of(session: BfdSession) -> SessionState:
    return session.state  # (a call, so mypy does not narrow the state between events)


def up_session(settings: BfdSettings = FAST) -> BfdSession:
    session = BfdSession(settings)
    session.handle(fsm.AdminUp())
    session.handle(remote(SessionState.DOWN, your=0))
    session.handle(remote(SessionState.UP))
    assert session.state is SessionState.UP
    return session


def test_codec_round_trip_and_scapy_reads_it() -> None:
    packet = ControlPacket(SessionState.UP, 1, 2, 100_000, 200_000, 3, poll=True)
    data = codec.encode(packet)
    assert codec.decode(data) == packet
    parsed = BFD(data)
    assert (parsed.sta, parsed.my_discriminator, parsed.your_discriminator) == (3, 1, 2)
    assert (parsed.min_tx_interval, parsed.min_rx_interval, parsed.detect_mult) == (
        100000,
        200000,
        3,
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: bytes([0x40]) + d[1:], "version"),
        (lambda d: d[:2] + b"\x00" + d[3:], "multiplier"),
        (lambda d: d[:1] + bytes([d[1] | 0x04]) + d[2:], "authenticated"),
        (lambda d: d[:4] + b"\0\0\0\0" + d[8:], "my discriminator"),
        (lambda d: d[:3] + b"\x30" + d[4:], "length"),
        (lambda d: d[:20], "bytes"),
    ],
)
def test_codec_refuses_what_rfc_5880_discards(mutate: object, reason: str) -> None:
    data = codec.encode(ControlPacket(SessionState.UP, 1, 2, 100_000, 100_000, 3))
    with pytest.raises(codec.MalformedPacket, match=reason):
        codec.decode(mutate(data))  # type: ignore[operator]


def test_ttl_check() -> None:
    assert codec.accept_ttl(255)
    assert not codec.accept_ttl(254)
    assert codec.accept_ttl(254, minimum_ttl=254)


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_decode_raises_only_malformed(data: bytes) -> None:
    with contextlib.suppress(codec.MalformedPacket):
        codec.decode(data)


def test_three_way_handshake_and_fast_rate_with_a_poll_sequence() -> None:
    session = BfdSession(FAST)
    actions = session.handle(fsm.AdminUp())
    (first,) = sent(actions)
    assert first.state is SessionState.DOWN
    assert first.desired_min_tx_us == 1_000_000  # slow while not Up (RFC 5880 6.8.3)
    assert StartTimer(Timer.TRANSMIT, 1.0, jitter=True) in actions
    actions = session.handle(remote(SessionState.DOWN, your=0))
    assert state_of(session) is SessionState.INIT
    assert sent(actions)[-1].state is SessionState.INIT
    assert StartTimer(Timer.DETECT, 0.3) in actions
    actions = session.handle(remote(SessionState.UP))
    assert state_of(session) is SessionState.UP
    announce = sent(actions)[-1]
    assert (announce.state, announce.poll, announce.desired_min_tx_us) == (
        SessionState.UP,
        True,
        100_000,
    )
    assert StartTimer(Timer.TRANSMIT, 0.1, jitter=True) in actions
    session.handle(remote(SessionState.UP, final=True))
    assert not sent(session.handle(TimerFired(Timer.TRANSMIT)))[0].poll


def test_poll_is_answered_with_final_at_once() -> None:
    session = up_session()
    (answer,) = [p for p in sent(session.handle(remote(SessionState.UP, poll=True))) if p.final]
    assert answer.state is SessionState.UP
    assert not answer.poll


def test_detection_time_expiry_takes_the_session_down() -> None:
    session = up_session()
    actions = session.handle(TimerFired(Timer.DETECT))
    assert (
        fsm.StateChanged(
            SessionState.UP, SessionState.DOWN, Diagnostic.CONTROL_DETECTION_TIME_EXPIRED
        )
        in actions
    )
    assert session.remote_discriminator == 0
    assert sent(session.handle(TimerFired(Timer.TRANSMIT)))[0].diagnostic == 1


def test_detection_time_uses_the_slower_of_our_rx_and_their_tx() -> None:
    session = BfdSession(FAST)
    session.handle(fsm.AdminUp())
    actions = session.handle(
        remote(SessionState.DOWN, your=0, desired_min_tx_us=250_000, detect_mult=4)
    )
    assert StartTimer(Timer.DETECT, 1.0) in actions


def test_remote_down_or_admin_down_takes_an_up_session_down() -> None:
    session = up_session()
    session.handle(remote(SessionState.DOWN))
    assert (session.state, session.diagnostic) == (
        SessionState.DOWN,
        Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN,
    )
    session = up_session()
    session.handle(remote(SessionState.ADMIN_DOWN))
    assert session.state is SessionState.DOWN


def test_packets_for_another_discriminator_are_ignored() -> None:
    session = up_session()
    assert session.handle(remote(SessionState.DOWN, your=12345)) == []
    assert session.state is SessionState.UP


def test_passive_mode_waits_for_the_remote() -> None:
    session = BfdSession(BfdSettings(7, 100, 100, 3, passive=True))
    assert sent(session.handle(fsm.AdminUp())) == []
    assert sent(session.handle(TimerFired(Timer.TRANSMIT))) == []
    actions = session.handle(remote(SessionState.DOWN, your=0))
    assert sent(actions)[-1].state is SessionState.INIT


def test_admin_down_says_so_and_stops() -> None:
    session = up_session()
    actions = session.handle(fsm.AdminDown())
    (last,) = sent(actions)
    assert (last.state, last.diagnostic) == (SessionState.ADMIN_DOWN, 7)
    assert session.handle(TimerFired(Timer.TRANSMIT)) == []
    assert session.handle(remote(SessionState.UP)) == []


def test_a_remote_that_wants_no_packets_gets_none() -> None:
    session = up_session()
    session.handle(remote(SessionState.UP, required_min_rx_us=0))
    actions = session.handle(TimerFired(Timer.TRANSMIT))
    assert sent(actions) == []
    assert any(isinstance(a, StartTimer) for a in actions)


def test_a_faster_remote_rate_applies_at_once() -> None:
    session = BfdSession(FAST)
    session.handle(fsm.AdminUp())
    session.handle(remote(SessionState.DOWN, your=0, required_min_rx_us=1_000_000))
    actions = session.handle(remote(SessionState.UP, required_min_rx_us=1_000_000))
    assert StartTimer(Timer.TRANSMIT, 1.0, jitter=True) in actions
    # The remote, Up too, asks for 100 ms: the next packet leaves now, then every 100 ms.
    actions = session.handle(remote(SessionState.UP, poll=True, required_min_rx_us=100_000))
    assert StartTimer(Timer.TRANSMIT, 0.1, jitter=True) in actions
    assert len(sent(actions)) == 2  # the Final, and the packet at the new rate
