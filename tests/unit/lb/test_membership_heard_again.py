"""`View.heard_again`, the idle tick's flat loop over repeated heartbeats: taking a prefix with
it and the rest one by one with `receive_datagram` leaves the view exactly as taking every
datagram with `receive_datagram` does, whatever arrives (repeats, replays, forgeries, changes,
newcomers, our own)."""

from __future__ import annotations

import copy
import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from pikube.lb.l2 import events as ev
from pikube.lb.membership import protocol as p

KEY = p.load_key(b"correct horse battery staple\n")


def _hb(node: str, seq: int, epoch: int = 7, claims: int = 1) -> p.Heartbeat:
    return p.Heartbeat(
        node=node,
        epoch=epoch,
        seq=seq,
        interval_ms=60,
        multiplier=3,
        mac=bytes([2, 0, 0, 0, 0, len(node)]),
        interfaces=("eth0",),
        claims=frozenset({bytes([198, 51, 100, 100 + c]) for c in range(claims)}),
    )


def _one_by_one(view: p.View, items: list[ev.Received]) -> None:
    for item in items:
        assert isinstance(item.heartbeat, bytes)
        try:
            view.receive_datagram(item.heartbeat, KEY, item.arrived_s)
        except p.HeartbeatError as exc:
            view.reject(exc)


def _state(view: p.View) -> object:
    peers = {n: (peer.heartbeat, peer.last_heard_s) for n, peer in view.peers.items()}
    return peers, dict(view.newest), dataclasses.asdict(view.counters)


def _view_hearing_two_peers() -> p.View:
    view = p.View("node01")
    for node in ("node02", "node03"):
        view.receive_datagram(p.encode(_hb(node, 10), KEY), KEY, 0.0)
    return view


def test_repeats_are_applied_in_one_loop_and_the_rest_left() -> None:
    view = _view_hearing_two_peers()
    items = [
        ev.Received(p.encode(_hb("node02", 11), KEY), "198.51.100.22", 1.0),
        ev.Received(p.encode(_hb("node03", 11), KEY), "198.51.100.23", 1.1),
        ev.Received(p.encode(_hb("node02", 12, claims=2), KEY), "198.51.100.22", 1.2),
    ]
    assert view.heard_again(items, KEY) == 2
    assert view.peers["node02"].last_heard_s == 1.0
    assert view.peers["node03"].last_heard_s == 1.1
    assert view.newest["node03"] == (7, 11)
    assert view.counters.accepted == 4


def test_a_forged_or_replayed_repeat_stops_the_loop_and_is_left_for_the_full_path() -> None:
    view = _view_hearing_two_peers()
    forged = bytearray(p.encode(_hb("node02", 11), KEY))
    forged[20] ^= 1
    assert view.heard_again([ev.Received(bytes(forged), "x", 1.0)], KEY) == 0
    replay = p.encode(_hb("node02", 10), KEY)
    assert view.heard_again([ev.Received(replay, "x", 1.0)], KEY) == 0
    assert view.peers["node02"].last_heard_s == 0.0


# What a LAN can deliver: peers' next heartbeats, replays, changed contents, new epochs,
# newcomers, forgeries, garbage and our own broadcasts.
_datagram = st.one_of(
    st.builds(
        lambda node, seq, epoch, claims: p.encode(_hb(node, seq, epoch, claims), KEY),
        st.sampled_from(["node01", "node02", "node03", "node04"]),
        st.integers(8, 14),
        st.sampled_from([6, 7, 8]),
        st.integers(0, 2),
    ),
    st.builds(
        lambda seq, bit: bytes(
            b ^ (1 << (bit % 8)) if i == bit // 8 % 60 else b
            for i, b in enumerate(p.encode(_hb("node02", seq), KEY))
        ),
        st.integers(8, 14),
        st.integers(0, 479),
    ),
    st.binary(max_size=80),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_datagram, max_size=12))
def test_a_prefix_by_heard_again_and_the_rest_one_by_one_equals_all_one_by_one(
    datagrams: list[bytes],
) -> None:
    items = [ev.Received(d, "198.51.100.99", 1.0 + i / 100) for i, d in enumerate(datagrams)]
    fast = _view_hearing_two_peers()
    slow = copy.deepcopy(fast)
    done = fast.heard_again(items, KEY)
    _one_by_one(fast, items[done:])
    _one_by_one(slow, items)
    assert _state(fast) == _state(slow)
