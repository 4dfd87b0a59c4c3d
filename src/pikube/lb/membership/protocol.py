"""Speaker membership: the heartbeat codec and the view of live peers. Pure: no sockets, no clock.

Theory of operation
-------------------
Every speaker broadcasts a heartbeat every `interval_ms` on each announcing interface (so a
dead NIC is a dead announcer). A heartbeat carries the sender's node name, its MAC, an epoch
(its incarnation, strictly increasing across restarts), a sequence number (strictly increasing
within an epoch), its timers, the interfaces it has up, the LEAVING and JOINING flags, and the
IPs it currently announces (its *claims*). It ends with an HMAC-SHA256 (truncated to 16 bytes) over
everything before it, keyed by the cluster's shared key.

A receiver drops (and counts) a heartbeat that is malformed, fails authentication, or is not
newer than the last one accepted from that node ((epoch, seq) compared as a pair): a LAN host
without the key cannot forge one, and a captured one cannot be replayed. A peer is live until
`interval_ms x multiplier` (its own timers, as in BFD) after its last accepted heartbeat.

Times are passed in as seconds on a monotonic clock; callers own the clock.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

MAGIC = b"PKHB"
VERSION = 1
MAC_LEN = 16  # bytes of HMAC-SHA256 kept
MIN_KEY_LEN = 16
DEFAULT_PORT = 7950

FLAG_LEAVING = 0x01
FLAG_JOINING = 0x02

# magic, version, flags, interval_ms, multiplier, epoch, seq, mac
_FIXED = struct.Struct("!4sBBHBQQ6s")
_SEQ_AT, _SEQ_END = 17, 25  # where the sequence number sits in the body
_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")


class HeartbeatError(ValueError):
    """Why a datagram was not accepted as a heartbeat."""


class Malformed(HeartbeatError):
    pass


class Unauthenticated(HeartbeatError):
    pass


@dataclass(frozen=True, slots=True)
class Heartbeat:
    node: str
    epoch: int
    seq: int
    interval_ms: int
    multiplier: int
    mac: bytes
    interfaces: tuple[str, ...]
    claims: frozenset[bytes]  # packed addresses: 4 bytes IPv4, 16 bytes IPv6
    leaving: bool = False
    joining: bool = False  # listening before taking part: not a candidate yet

    @property
    def detect_s(self) -> float:
        return self.interval_ms * self.multiplier / 1000.0


class _Mac(Protocol):
    def copy(self) -> _Mac: ...
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> _Mac:
    """The keyed HMAC-SHA256 state, made once per key. Its C object when the standard library
    has one (`hmac.HMAC` wraps OpenSSL's; each of its methods is a Python call in front of a C
    call, a third of a heartbeat's authentication cost)."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    inner: _Mac | None = getattr(mac, "_hmac", None)
    return inner if inner is not None else mac


def _tag(key: bytes, body: bytes) -> bytes:
    """HMAC-SHA256 of `body`, truncated. The keyed state is made once per key and copied per
    message: `hmac.digest` looks SHA-256 up by name in OpenSSL 3 on every call, half its cost."""
    mac = _keyed(key).copy()
    mac.update(body)
    return mac.digest()[:MAC_LEN]


def _short_text(value: str, what: str) -> bytes:
    raw = value.encode()
    if not raw or len(raw) > 255:
        raise ValueError(f"{what} must be 1-255 bytes: {value!r}")
    return _U8.pack(len(raw)) + raw


def encode(heartbeat: Heartbeat, key: bytes) -> bytes:
    """Serialise and sign a heartbeat."""
    body = _body(heartbeat)
    return body + _tag(key, body)


@dataclass
class Encoder:
    """Encodes one node's heartbeats, serialising again only when more than the sequence number
    changed (a speaker sends dozens a second, nearly all alike)."""

    key: bytes
    _template: Heartbeat | None = None
    _body: bytes = b""

    def set_template(self, heartbeat: Heartbeat) -> None:
        """What the next heartbeats say (their sequence numbers come with `sign`)."""
        template = replace(heartbeat, seq=0)
        if template != self._template:
            self._template = template
            self._body = _body(template)

    def sign(self, seq: int) -> bytes:
        body = self._body[:_SEQ_AT] + seq.to_bytes(8, "big") + self._body[_SEQ_END:]
        return body + _tag(self.key, body)

    def encode(self, heartbeat: Heartbeat) -> bytes:
        self.set_template(heartbeat)
        return self.sign(heartbeat.seq)


def _body(heartbeat: Heartbeat) -> bytes:
    v4 = sorted(c for c in heartbeat.claims if len(c) == 4)
    v6 = sorted(c for c in heartbeat.claims if len(c) == 16)
    if len(v4) + len(v6) != len(heartbeat.claims):
        raise ValueError("claims must be packed IPv4 or IPv6 addresses")
    parts = [
        _FIXED.pack(
            MAGIC,
            VERSION,
            (FLAG_LEAVING if heartbeat.leaving else 0) | (FLAG_JOINING if heartbeat.joining else 0),
            heartbeat.interval_ms,
            heartbeat.multiplier,
            heartbeat.epoch,
            heartbeat.seq,
            heartbeat.mac,
        ),
        _short_text(heartbeat.node, "node name"),
        _U8.pack(len(heartbeat.interfaces)),
        *(_short_text(name, "interface name") for name in heartbeat.interfaces),
        _U16.pack(len(v4)),
        *v4,
        _U16.pack(len(v6)),
        *v6,
    ]
    return b"".join(parts)


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def take(self, n: int) -> bytes:
        end = self.offset + n
        if end > len(self.data):
            raise Malformed("truncated heartbeat")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = _U16.unpack(self.take(2))[0]
        return value

    def text(self) -> str:
        raw = self.take(self.u8())
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise Malformed("name is not UTF-8") from exc


def decode(data: bytes, key: bytes) -> Heartbeat:
    """Verify and parse a heartbeat; raise Malformed or Unauthenticated."""
    if len(data) < _FIXED.size + MAC_LEN:
        raise Malformed(f"{len(data)} bytes is too short for a heartbeat")
    body, tag = data[:-MAC_LEN], data[-MAC_LEN:]
    if body[:4] != MAGIC:
        raise Malformed("bad magic")
    if not hmac.compare_digest(_tag(key, body), tag):
        raise Unauthenticated("HMAC does not match the cluster key")
    _magic, version, flags, interval_ms, multiplier, epoch, seq, mac = _FIXED.unpack_from(body)
    if version != VERSION:
        raise Malformed(f"unsupported version {version}")
    if interval_ms == 0 or multiplier == 0:
        raise Malformed("zero interval or multiplier")
    reader = _Reader(body, _FIXED.size)
    node = reader.text()
    if not node:
        raise Malformed("empty node name")
    interfaces = tuple(reader.text() for _ in range(reader.u8()))
    claims = [reader.take(4) for _ in range(reader.u16())]
    claims += [reader.take(16) for _ in range(reader.u16())]
    if reader.offset != len(body):
        raise Malformed("trailing bytes")
    return Heartbeat(
        node=node,
        epoch=epoch,
        seq=seq,
        interval_ms=interval_ms,
        multiplier=multiplier,
        mac=mac,
        interfaces=interfaces,
        claims=frozenset(claims),
        leaving=bool(flags & FLAG_LEAVING),
        joining=bool(flags & FLAG_JOINING),
    )


class Change(enum.Enum):
    """What a received heartbeat changed in the view."""

    NONE = "none"  # liveness refreshed, nothing else
    JOINED = "joined"  # a node not live before (new, or a new epoch)
    UPDATED = "updated"  # claims, interfaces or the LEAVING flag changed
    STALE = "stale"  # replayed or older than what we have: dropped


@dataclass(slots=True)
class Peer:
    heartbeat: Heartbeat  # the last one that changed something (its seq may be behind)
    last_heard_s: float
    interval_s: float = field(init=False)  # its heartbeat interval, read on every tick

    def __post_init__(self) -> None:
        self.interval_s = self.heartbeat.interval_ms / 1000.0

    @property
    def deadline_s(self) -> float:
        return self.last_heard_s + self.heartbeat.detect_s


@dataclass
class Counters:
    accepted: int = 0
    malformed: int = 0
    unauthenticated: int = 0
    replayed: int = 0
    expired: int = 0


Datagram = tuple[bytes, str, float]  # as received: the bytes, the sender's address, arrival


@dataclass
class View:
    """The live peers as this speaker sees them (itself excluded)."""

    self_node: str
    peers: dict[str, Peer] = field(default_factory=dict)
    # The newest (epoch, seq) accepted per node, kept after a peer expires so that its old
    # heartbeats cannot be replayed to bring it back.
    newest: dict[str, tuple[int, int]] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    # Fast path: each node's last accepted heartbeat without its sequence number and MAC.
    _templates: dict[bytes, tuple[str, int]] = field(default_factory=dict)
    _template_of: dict[str, bytes] = field(default_factory=dict)

    def receive_datagram(self, data: bytes, key: bytes, now_s: float) -> tuple[Change, str]:
        """Authenticate and apply a datagram: (what changed, the sender). Raises
        HeartbeatError for one that is malformed or not authentic.

        Almost every heartbeat repeats the sender's previous one but for its sequence number;
        those are authenticated and checked for replay without being decoded again (the
        speaker receives dozens per second and must stay under 1 % of a core).
        """
        if len(data) < _FIXED.size + MAC_LEN:
            raise Malformed(f"{len(data)} bytes is too short for a heartbeat")
        body = data[:-MAC_LEN]
        template = body[:_SEQ_AT] + body[_SEQ_END:]
        known = self._templates.get(template)
        if known is not None:
            node, epoch = known
            if node == self.self_node:
                return Change.NONE, node  # our own broadcast, looped back
            if not hmac.compare_digest(_tag(key, body), data[-MAC_LEN:]):
                raise Unauthenticated("HMAC does not match the cluster key")
            peer = self.peers.get(node)
            if peer is not None and peer.heartbeat.epoch == epoch:
                stamp = (epoch, int.from_bytes(body[_SEQ_AT:_SEQ_END], "big"))
                if stamp <= self.newest[node]:
                    self.counters.replayed += 1
                    return Change.STALE, node
                self.newest[node] = stamp
                self.counters.accepted += 1
                peer.last_heard_s = now_s
                return Change.NONE, node
        heartbeat = decode(data, key)
        change = self.receive(heartbeat, now_s)
        if change is not Change.STALE:
            old = self._template_of.pop(heartbeat.node, None)
            if old is not None:
                self._templates.pop(old, None)
            self._templates[template] = (heartbeat.node, heartbeat.epoch)
            self._template_of[heartbeat.node] = template
        return change, heartbeat.node

    def repeated(self, datagrams: Sequence[Datagram], key: bytes, now_s: float) -> bool:
        """An idle speaker's batch in one pass. If every datagram repeats its sender's last
        heartbeat with a newer sequence number (what `receive_datagram` answers `Change.NONE`
        for, or is our own looped back) and with them every peer spoke within its last interval
        (`all_on_time`), apply them as `receive_datagram` would and say True. Otherwise change
        nothing and say False: the caller takes the batch the long way."""
        newest, peers, templates, me = self.newest, self.peers, self._templates, self.self_node
        fresh: dict[str, tuple[tuple[int, int], float]] = {}  # node: newest stamp, its arrival
        accepted = 0
        for data, _source, arrived in datagrams:
            body = data[:-MAC_LEN]
            known = templates.get(body[:_SEQ_AT] + body[_SEQ_END:])
            if known is None or len(data) < _FIXED.size + MAC_LEN:
                return False
            node, epoch = known
            if node == me:
                continue
            peer = peers.get(node)
            if peer is None or peer.heartbeat.epoch != epoch:
                return False
            stamp = (epoch, int.from_bytes(body[_SEQ_AT:_SEQ_END], "big"))
            seen = fresh.get(node)
            if stamp <= (newest[node] if seen is None else seen[0]):
                return False  # a replay: counted the long way
            if not hmac.compare_digest(_tag(key, body), data[-MAC_LEN:]):
                return False
            fresh[node] = (stamp, arrived)
            accepted += 1
        for node, peer in peers.items():
            seen = fresh.get(node)
            if (peer.last_heard_s if seen is None else seen[1]) + peer.interval_s <= now_s:
                return False
        for node, (stamp, arrived) in fresh.items():
            newest[node] = stamp
            peers[node].last_heard_s = arrived
        self.counters.accepted += accepted
        return True

    def receive(self, heartbeat: Heartbeat, now_s: float, seq: int = 0) -> Change:
        """`seq`, when not 0, numbers a heartbeat whose own `seq` is 0 (the simulation shares
        one value among its sends instead of copying it for each)."""
        if heartbeat.node == self.self_node:
            return Change.NONE  # our own broadcast, looped back
        stamp = (heartbeat.epoch, seq or heartbeat.seq)
        last = self.newest.get(heartbeat.node)
        if last is not None and stamp <= last:
            self.counters.replayed += 1
            return Change.STALE
        self.newest[heartbeat.node] = stamp
        self.counters.accepted += 1
        previous = self.peers.get(heartbeat.node)
        if previous is None or previous.heartbeat.epoch != heartbeat.epoch:
            self.peers[heartbeat.node] = Peer(heartbeat, now_s)
            return Change.JOINED
        # The same incarnation: its entry is brought up to date rather than made anew (a
        # speaker hears every peer every interval).
        old = previous.heartbeat
        previous.last_heard_s = now_s
        if old is heartbeat:  # the simulation shares one value among a sender's heartbeats
            return Change.NONE
        previous.heartbeat = heartbeat
        previous.interval_s = heartbeat.interval_ms / 1000.0
        if (old.claims, old.interfaces, old.leaving, old.joining) != (
            heartbeat.claims,
            heartbeat.interfaces,
            heartbeat.leaving,
            heartbeat.joining,
        ):
            return Change.UPDATED
        return Change.NONE

    def reject(self, error: HeartbeatError) -> None:
        if isinstance(error, Unauthenticated):
            self.counters.unauthenticated += 1
        else:
            self.counters.malformed += 1

    def expire(self, now_s: float) -> list[str]:
        """Drop peers whose detection time has passed; return their names."""
        gone = [name for name, peer in self.peers.items() if peer.deadline_s <= now_s]
        for name in gone:
            del self.peers[name]
        self.counters.expired += len(gone)
        return gone

    def drop(self, node: str) -> None:
        """Declare a peer dead before its detection time (its link was found gone)."""
        if self.peers.pop(node, None) is not None:
            self.counters.expired += 1

    def all_on_time(self, now_s: float) -> bool:
        """Every peer spoke within its last interval: then none is late (that takes more than
        an interval) and none expired (`multiplier` intervals: the same sum as `deadline_s`
        when it is 1), which nearly every tick of a speaker finds."""
        for peer in self.peers.values():  # noqa: SIM110 (a loop: no generator on each tick)
            if peer.last_heard_s + peer.interval_s <= now_s:
                return False
        return True

    def next_deadline_s(self) -> float | None:
        return min((p.deadline_s for p in self.peers.values()), default=None)


def load_key(raw: bytes) -> bytes:
    """The cluster key from a key file's contents (surrounding whitespace ignored)."""
    key = raw.strip()
    if len(key) < MIN_KEY_LEN:
        raise ValueError(f"the key is {len(key)} bytes; at least {MIN_KEY_LEN} are required")
    return hashlib.sha256(b"pikube-membership-v1" + key).digest()
