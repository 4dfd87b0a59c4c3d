"""The BGP session state machine, driven by a scripted peer: events in, actions out."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from pikube.lb.bgp import codec, fsm
from pikube.lb.bgp.codec import IPV4_UNICAST, IPV6_UNICAST
from pikube.lb.bgp.fsm import (
    Close,
    Connect,
    PeerSettings,
    Received,
    RouteAttributes,
    Send,
    Session,
    SetRoutes,
    StartTimer,
    State,
    Timer,
    TimerFired,
)
from pikube.lb.model import LargeCommunity, StandardCommunity

NODE = ipaddress.IPv4Address("198.51.100.21")
NODE6 = ipaddress.IPv6Address("2001:db8:68::21")
ROUTER = ipaddress.IPv4Address("198.51.100.1")
VIP = ipaddress.IPv4Network("203.0.113.5/32")
VIP2 = ipaddress.IPv4Network("203.0.113.6/32")
VIP6 = ipaddress.ip_network("2001:db8:68::230/128")
EBGP = PeerSettings(local_asn=64497, router_id=NODE, peer_asn=64496, hold_time_s=9)
IBGP = PeerSettings(local_asn=64497, router_id=NODE, peer_asn=64497, hold_time_s=9)


def peer_open(
    asn: int = 64496,
    hold: int = 9,
    families: tuple[codec.Family, ...] = (IPV4_UNICAST, IPV6_UNICAST),
) -> bytes:
    caps: tuple[codec.Capability, ...] = (
        *(codec.Multiprotocol(f) for f in families),
        codec.FourOctetAS(asn),
        codec.RouteRefreshCapability(),
    )
    return codec.encode(codec.Open(asn, hold, ROUTER, caps))


KEEPALIVE = codec.encode(codec.Keepalive())


def sent(actions: list[fsm.Action]) -> list[codec.Message]:
    return [codec.decode(a.data) for a in actions if isinstance(a, Send)]


def state_of(session: Session) -> State:
    return session.state  # (a call, so mypy does not narrow the state between events)


def established(
    settings: PeerSettings = EBGP, **open_kw: object
) -> tuple[Session, list[fsm.Action]]:
    session = Session(settings)
    assert session.handle(fsm.Start()) == [
        fsm.StateChanged(State.IDLE, State.CONNECT, "connecting"),
        Connect(),
    ]
    actions = session.handle(fsm.TcpConnected(NODE))
    assert state_of(session) is State.OPEN_SENT
    (opened,) = sent(actions)
    assert isinstance(opened, codec.Open)
    assert StartTimer(Timer.HOLD, fsm.LARGE_HOLD_TIME_S) in actions
    actions = session.handle(Received(peer_open(**open_kw)))  # type: ignore[arg-type]
    assert sent(actions) == [codec.Keepalive()]
    assert state_of(session) is State.OPEN_CONFIRM
    actions = session.handle(Received(KEEPALIVE))
    assert state_of(session) is State.ESTABLISHED
    return session, actions


def test_open_carries_our_capabilities_and_graceful_restart_when_configured() -> None:
    session = Session(PeerSettings(64497, NODE, 64496, graceful_restart=True, restart_time_s=60))
    session.handle(fsm.Start())
    (opened,) = sent(session.handle(fsm.TcpConnected(NODE)))
    assert isinstance(opened, codec.Open)
    assert opened.families == {IPV4_UNICAST, IPV6_UNICAST}
    assert opened.four_octet_as
    assert opened.graceful_restart == codec.GracefulRestart(
        60, False, False, ((IPV4_UNICAST, True), (IPV6_UNICAST, True))
    )
    plain = Session(EBGP)
    plain.handle(fsm.Start())
    (opened,) = sent(plain.handle(fsm.TcpConnected(NODE)))
    assert isinstance(opened, codec.Open)
    assert opened.graceful_restart is None


def test_establishes_and_sends_the_routes_then_end_of_rib() -> None:
    session = Session(EBGP)
    session.handle(SetRoutes({VIP: RouteAttributes()}))
    session.handle(fsm.Start())
    session.handle(fsm.TcpConnected(NODE))
    session.handle(Received(peer_open()))
    actions = session.handle(Received(KEEPALIVE))
    updates = fsm.routes_of(actions)
    assert updates[0].nlri == (VIP,)
    assert updates[0].next_hop == NODE
    assert updates[0].as_path == (codec.AsPathSegment(codec.SegmentType.AS_SEQUENCE, (64497,)),)
    assert updates[0].local_pref is None  # eBGP
    assert [u.end_of_rib for u in updates[1:]] == [IPV4_UNICAST, IPV6_UNICAST]


def test_hold_time_is_the_smaller_and_keepalive_a_third() -> None:
    session = Session(EBGP)
    session.handle(fsm.Start())
    session.handle(fsm.TcpConnected(NODE))
    actions = session.handle(Received(peer_open(hold=6)))
    assert StartTimer(Timer.HOLD, 6.0) in actions
    assert StartTimer(Timer.KEEPALIVE, 2.0) in actions
    assert session.handle(TimerFired(Timer.KEEPALIVE)) == [
        Send(KEEPALIVE, codec.MessageType.KEEPALIVE),
        StartTimer(Timer.KEEPALIVE, 2.0),
    ]


def test_hold_time_zero_means_no_timers() -> None:
    session, _ = established(hold=0)
    assert session.negotiated is not None
    assert session.negotiated.hold_time_s == 0
    assert session.handle(Received(KEEPALIVE)) == []


def test_wrong_peer_as_is_refused_with_bad_peer_as_and_retried() -> None:
    session = Session(EBGP)
    session.handle(fsm.Start())
    session.handle(fsm.TcpConnected(NODE))
    actions = session.handle(Received(peer_open(asn=64499)))
    assert sent(actions) == [codec.Notification(2, 2)]
    assert session.state is State.IDLE
    assert any(isinstance(a, Close) for a in actions)
    assert StartTimer(Timer.CONNECT_RETRY, 1.0) in actions
    assert session.handle(TimerFired(Timer.CONNECT_RETRY))[-1] == Connect()


def test_dynamic_asn_internal_and_external() -> None:
    internal = PeerSettings(64497, NODE, internal=True)
    session, _ = established(internal, asn=64497)
    assert session.negotiated is not None
    assert session.negotiated.internal
    external = Session(PeerSettings(64497, NODE, internal=False))
    external.handle(fsm.Start())
    external.handle(fsm.TcpConnected(NODE))
    assert sent(external.handle(Received(peer_open(asn=64497)))) == [codec.Notification(2, 2)]


def test_connect_retry_backs_off_and_resets_once_established() -> None:
    session = Session(EBGP)
    session.handle(fsm.Start())
    delays = []
    for _ in range(8):
        actions = session.handle(fsm.TcpFailed("refused"))
        delays += [a.seconds for a in actions if isinstance(a, StartTimer)]
        session.handle(TimerFired(Timer.CONNECT_RETRY))
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    session.handle(fsm.TcpConnected(NODE))
    session.handle(Received(peer_open()))
    session.handle(Received(KEEPALIVE))
    actions = session.handle(fsm.TcpFailed("reset"))
    assert StartTimer(Timer.CONNECT_RETRY, 1.0) in actions


def test_route_changes_send_only_the_difference() -> None:
    session, _ = established()
    first = fsm.routes_of(
        session.handle(SetRoutes({VIP: RouteAttributes(), VIP2: RouteAttributes()}))
    )
    assert [u.nlri for u in first] == [(VIP, VIP2)]
    assert session.handle(SetRoutes({VIP: RouteAttributes(), VIP2: RouteAttributes()})) == []
    second = fsm.routes_of(session.handle(SetRoutes({VIP2: RouteAttributes()})))
    assert [(u.withdrawn, u.nlri) for u in second] == [((VIP,), ())]
    tagged = RouteAttributes(communities=(StandardCommunity(64497, 1),))
    third = fsm.routes_of(session.handle(SetRoutes({VIP2: tagged})))
    assert [(u.nlri, u.communities) for u in third] == [((VIP2,), (StandardCommunity(64497, 1),))]


def test_ibgp_sends_local_pref_and_an_empty_as_path() -> None:
    session, _ = established(IBGP, asn=64497)
    attrs = RouteAttributes(local_pref=250, large_communities=(LargeCommunity(64497, 1, 2),))
    updates = fsm.routes_of(session.handle(SetRoutes({VIP: attrs, VIP2: RouteAttributes()})))
    by_prefix = {u.nlri: u for u in updates}
    assert by_prefix[(VIP,)].local_pref == 250
    assert by_prefix[(VIP,)].as_path == ()
    assert by_prefix[(VIP,)].large_communities == (LargeCommunity(64497, 1, 2),)
    assert by_prefix[(VIP2,)].local_pref == 100  # the default an iBGP route must carry


def test_ipv6_routes_go_in_mp_reach_with_the_ipv6_next_hop() -> None:
    session, _ = established()
    assert fsm.routes_of(session.handle(SetRoutes({VIP6: RouteAttributes()}))) == []  # no v6 hop
    (update,) = fsm.routes_of(session.handle(SetRoutes({VIP6: RouteAttributes()}, NODE6)))
    assert update.mp_reach == codec.MpReach(IPV6_UNICAST, (NODE6,), (VIP6,))
    (gone,) = fsm.routes_of(session.handle(SetRoutes({}, NODE6)))
    assert gone.withdrawn_all() == (VIP6,)


def test_families_the_peer_lacks_are_not_sent() -> None:
    session, _ = established(families=(IPV4_UNICAST,))
    updates = fsm.routes_of(
        session.handle(SetRoutes({VIP: RouteAttributes(), VIP6: RouteAttributes()}, NODE6))
    )
    assert [u.announced() for u in updates] == [(VIP,)]


def test_route_refresh_sends_the_family_again() -> None:
    session, _ = established()
    session.handle(SetRoutes({VIP: RouteAttributes(), VIP6: RouteAttributes()}, NODE6))
    actions = session.handle(Received(codec.encode(codec.RouteRefresh(IPV4_UNICAST))))
    assert [u.announced() for u in fsm.routes_of(actions)] == [(VIP,)]


def test_hold_timer_expiry_sends_the_notification() -> None:
    session, _ = established()
    actions = session.handle(TimerFired(Timer.HOLD))
    assert sent(actions) == [codec.Notification(4, 0)]
    assert session.state is State.IDLE


def test_stop_withdraws_and_says_administrative_shutdown() -> None:
    session, _ = established()
    session.handle(SetRoutes({VIP: RouteAttributes()}))
    actions = session.handle(fsm.Stop())
    messages = sent(actions)
    assert isinstance(messages[0], codec.Update)
    assert messages[0].withdrawn == (VIP,)
    assert messages[-1] == codec.Notification(6, 2)
    assert not any(isinstance(a, StartTimer) for a in actions)
    assert session.handle(TimerFired(Timer.CONNECT_RETRY)) == []


def test_graceful_stop_closes_without_a_word() -> None:
    session, _ = established(PeerSettings(64497, NODE, 64496, graceful_restart=True))
    session.handle(SetRoutes({VIP: RouteAttributes()}))
    actions = session.handle(fsm.StopGraceful())
    assert sent(actions) == []
    assert any(isinstance(a, Close) for a in actions)


def test_bfd_down_ends_the_session_with_cease_bfd_down() -> None:
    session, _ = established()
    actions = session.handle(fsm.BfdDown())
    assert sent(actions) == [codec.Notification(6, fsm.CEASE_BFD_DOWN)]
    assert session.state is State.IDLE
    assert session.handle(fsm.BfdDown()) == []


def test_unexpected_messages_are_fsm_errors() -> None:
    session = Session(EBGP)
    session.handle(fsm.Start())
    session.handle(fsm.TcpConnected(NODE))
    assert sent(session.handle(Received(KEEPALIVE))) == [codec.Notification(5, 1)]
    session2, _ = established()
    assert sent(session2.handle(Received(peer_open()))) == [codec.Notification(5, 3)]


def test_a_notification_from_the_peer_ends_the_session_quietly() -> None:
    session, _ = established()
    actions = session.handle(Received(codec.encode(codec.Notification(6, 4))))
    assert sent(actions) == []
    assert session.state is State.IDLE
    assert "cease: administrative reset" in session.last_error


def test_treat_as_withdraw_keeps_the_session_up() -> None:
    session, _ = established()
    good = codec.Update(
        nlri=(VIP,),
        origin=codec.Origin.IGP,
        as_path=(),
        next_hop=ROUTER,
    )
    session.handle(Received(codec.encode(good)))
    assert session.received == {VIP}
    bad = codec.encode(good)
    # Turn ORIGIN's value into 9: treat-as-withdraw.
    index = bad.index(bytes([0x40, 1, 1, 0]))
    broken = bad[: index + 3] + b"\x09" + bad[index + 4 :]
    actions = session.handle(Received(broken))
    assert session.state is State.ESTABLISHED
    assert session.received == set()
    (report,) = [a for a in actions if isinstance(a, fsm.RoutesReceived)]
    assert report.treat_as_withdraw is not None


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=60), max_size=6))
def test_garbage_from_the_peer_never_raises(chunks: list[bytes]) -> None:
    session, _ = established()
    for chunk in chunks:
        session.handle(Received(codec.MARKER + chunk))
    assert session.state in (State.ESTABLISHED, State.IDLE)


@settings(max_examples=200)
@given(
    st.lists(
        st.sampled_from(
            [
                fsm.Start(),
                fsm.Stop(),
                fsm.StopGraceful(),
                fsm.TcpConnected(NODE),
                fsm.TcpFailed("x"),
                Received(peer_open()),
                Received(KEEPALIVE),
                TimerFired(Timer.HOLD),
                TimerFired(Timer.KEEPALIVE),
                TimerFired(Timer.CONNECT_RETRY),
                SetRoutes({VIP: RouteAttributes()}),
                SetRoutes({}),
                fsm.BfdDown(),
            ]
        ),
        max_size=30,
    )
)
def test_any_event_sequence_is_handled(events: list[fsm.Event]) -> None:
    session = Session(EBGP)
    for event in events:
        session.handle(event)
        if session.state is not State.ESTABLISHED:
            assert session.advertised == {}
