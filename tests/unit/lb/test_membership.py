"""Heartbeats: authenticated, replay-proof, and a view of live peers with BFD-style timers."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pikube.lb.membership import protocol as p

KEY = p.load_key(b"correct horse battery staple\n")
V4 = bytes([198, 51, 100, 230])
V6 = bytes.fromhex("20010db8006800000000000000000230")


def _hb(**changes: object) -> p.Heartbeat:
    base = p.Heartbeat(
        node="node01",
        epoch=1000,
        seq=1,
        interval_ms=40,
        multiplier=3,
        mac=bytes.fromhex("020000000021"),
        interfaces=("eth0",),
        claims=frozenset({V4, V6}),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_round_trip() -> None:
    hb = _hb(leaving=True)
    assert p.decode(p.encode(hb, KEY), KEY) == hb
    assert hb.detect_s == pytest.approx(0.12)


def test_a_host_without_the_key_cannot_forge_or_alter_a_heartbeat() -> None:
    data = p.encode(_hb(), KEY)
    with pytest.raises(p.Unauthenticated):
        p.decode(data, p.load_key(b"some other key, 16+ bytes"))
    tampered = bytearray(data)
    tampered[-20] ^= 0x01  # flip a bit in the claims
    with pytest.raises(p.Unauthenticated):
        p.decode(bytes(tampered), KEY)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        p.load_key(b"short\n")


@pytest.mark.parametrize("cut", [1, 10, 30])
def test_truncated_heartbeats_are_malformed(cut: int) -> None:
    data = p.encode(_hb(), KEY)
    with pytest.raises(p.HeartbeatError):
        p.decode(data[:-cut], KEY)


@settings(max_examples=3000)
@given(st.binary(max_size=200))
def test_arbitrary_datagrams_are_rejected_not_crashing(data: bytes) -> None:
    with pytest.raises(p.HeartbeatError):
        p.decode(data, KEY)


def test_replayed_and_old_heartbeats_are_dropped_and_counted() -> None:
    view = p.View("node02")
    assert view.receive(_hb(seq=5), 0.0) is p.Change.JOINED
    assert view.receive(_hb(seq=5), 0.01) is p.Change.STALE
    assert view.receive(_hb(seq=4), 0.02) is p.Change.STALE
    assert view.receive(_hb(epoch=999, seq=50), 0.03) is p.Change.STALE
    assert view.counters.replayed == 3
    assert view.receive(_hb(seq=6), 0.04) is p.Change.NONE
    assert view.receive(_hb(seq=7, claims=frozenset()), 0.05) is p.Change.UPDATED
    assert view.receive(_hb(epoch=2000, seq=1), 0.06) is p.Change.JOINED  # restarted


def test_a_peer_expires_after_its_own_interval_times_multiplier() -> None:
    view = p.View("node02")
    view.receive(_hb(seq=1), 10.0)
    assert view.next_deadline_s() == pytest.approx(10.12)
    assert view.expire(10.119) == []
    assert view.expire(10.12) == ["node01"]
    assert view.peers == {}
    # Its old heartbeats cannot bring it back.
    assert view.receive(_hb(seq=1), 10.2) is p.Change.STALE


def test_own_heartbeats_are_ignored() -> None:
    view = p.View("node01")
    assert view.receive(_hb(), 0.0) is p.Change.NONE
    assert view.peers == {}


def test_datagrams_take_the_fast_path_but_keep_every_check() -> None:
    view = p.View("node02")
    first = p.encode(_hb(seq=1), KEY)
    assert view.receive_datagram(first, KEY, 0.0) == (p.Change.JOINED, "node01")
    second = p.encode(_hb(seq=2), KEY)
    assert view.receive_datagram(second, KEY, 1.0) == (p.Change.NONE, "node01")
    assert view.peers["node01"].last_heard_s == 1.0
    # A replay of either is caught on the fast path too.
    assert view.receive_datagram(second, KEY, 1.1) == (p.Change.STALE, "node01")
    assert view.receive_datagram(first, KEY, 1.2) == (p.Change.STALE, "node01")
    # A forged sequence number fails authentication.
    forged = bytearray(p.encode(_hb(seq=3), KEY))
    forged[24] ^= 0xFF
    with pytest.raises(p.Unauthenticated):
        view.receive_datagram(bytes(forged), KEY, 1.3)
    # Anything else that changes goes through the full decoder and is reported.
    changed = p.encode(_hb(seq=4, claims=frozenset()), KEY)
    assert view.receive_datagram(changed, KEY, 1.4) == (p.Change.UPDATED, "node01")
    assert view.counters.accepted == 3
    assert view.counters.replayed == 2


def test_an_expired_peer_returning_with_the_same_content_joins_again() -> None:
    view = p.View("node02")
    view.receive_datagram(p.encode(_hb(seq=1), KEY), KEY, 0.0)
    assert view.expire(1.0) == ["node01"]
    change, _ = view.receive_datagram(p.encode(_hb(seq=2), KEY), KEY, 1.1)
    assert change is p.Change.JOINED


def test_the_encoder_reuses_its_work_and_matches_encode() -> None:
    encoder = p.Encoder(KEY)
    for seq in (1, 2, 3):
        assert encoder.encode(_hb(seq=seq)) == p.encode(_hb(seq=seq), KEY)
    changed = _hb(seq=4, claims=frozenset({V4}), leaving=True)
    assert encoder.encode(changed) == p.encode(changed, KEY)
    assert p.decode(encoder.encode(changed), KEY) == changed


def test_the_cached_keyed_hmac_is_hmac_sha256() -> None:
    import hmac  # noqa: PLC0415

    key, body = b"k" * 32, b"pikube heartbeat body"
    expected = hmac.digest(key, body, "sha256")[: p.MAC_LEN]
    assert p._tag(key, body) == expected
    assert p._tag(key, body) == expected  # the cached state is copied, not consumed
    # OpenSSL's object itself, not the Python wrapper around it (a call less, each time).
    assert type(p._keyed(key)).__module__ == "_hashlib"
