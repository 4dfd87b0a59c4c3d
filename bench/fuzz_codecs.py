"""Coverage-guided fuzzing (atheris/libFuzzer) of the speaker's packet codecs.

    .venv/bin/python bench/fuzz_codecs.py --codec arp --runs 1000000
    .venv/bin/python bench/fuzz_codecs.py --codec all --runs 1000000   # each codec in turn
    .venv/bin/python bench/fuzz_codecs.py --codec bgp --runs 1000000   # BGP codec + session
    .venv/bin/python bench/fuzz_codecs.py --codec bfd --runs 1000000   # BFD codec + session

A codec passes when no input makes it raise anything but its own "malformed" error, and the
responder's decision never fails on what the codec accepted. Prints executions and time.
The unit tests run a small hypothesis fuzz on every run; this is the million-input version.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from pikube.lb.bfd import codec as bfd_codec
    from pikube.lb.bfd import fsm as bfd_fsm
    from pikube.lb.bgp import codec as bgp_codec
    from pikube.lb.bgp import fsm as bgp_fsm
    from pikube.lb.l2 import arp, links, ndp
    from pikube.lb.membership import protocol

MAC = bytes.fromhex("020000000021")
VIP4 = bytes([198, 51, 100, 230])
VIP6 = bytes.fromhex("20010db8006800000000000000000230")
CLIENT6 = bytes.fromhex("20010db8006800000000000000000010")
KEY = protocol.load_key(b"fuzzing key, long enough to be accepted")


def fuzz_arp(data: bytes) -> None:
    try:
        frame = arp.parse_frame(data)
    except arp.MalformedPacket:
        return
    arp.reply_for(frame, {VIP4}, MAC)


def fuzz_ndp(data: bytes) -> None:
    try:
        ns = ndp.parse_solicitation(data, CLIENT6, 255)
    except arp.MalformedPacket:
        pass
    else:
        ndp.answer_for(ns, {VIP6}, MAC)
    with contextlib.suppress(arp.MalformedPacket):
        ndp.parse_advertisement(data)


def fuzz_heartbeat(data: bytes) -> None:
    # Half the inputs get a valid MAC, so the parser behind the authentication is reached.
    if data and data[0] & 1:
        body = data[1:]
        import hmac  # noqa: PLC0415

        data = body + hmac.digest(KEY, body, "sha256")[: protocol.MAC_LEN]
    view = protocol.View("node02")
    try:
        heartbeat = protocol.decode(data, KEY)
    except protocol.HeartbeatError:
        return
    view.receive(heartbeat, 0.0)


def fuzz_netlink(data: bytes) -> None:
    links.parse_link_events(data)


import ipaddress  # noqa: E402

BGP_NODE = ipaddress.IPv4Address("198.51.100.21")
BGP_ROUTER = ipaddress.IPv4Address("198.51.100.1")
BGP_VIP = ipaddress.IPv4Network("203.0.113.5/32")
BGP_PEER_OPEN = bgp_codec.Open(
    64496,
    9,
    BGP_ROUTER,
    (bgp_codec.Multiprotocol(bgp_codec.IPV4_UNICAST), bgp_codec.FourOctetAS(64496)),
)
_bgp_session: list[bgp_fsm.Session] = []


def _established_bgp_session() -> bgp_fsm.Session:
    settings = bgp_fsm.PeerSettings(64497, BGP_NODE, 64496, hold_time_s=9)
    session = bgp_fsm.Session(settings)
    session.handle(bgp_fsm.SetRoutes({BGP_VIP: bgp_fsm.RouteAttributes()}))
    session.handle(bgp_fsm.Start())
    session.handle(bgp_fsm.TcpConnected(BGP_NODE))
    session.handle(bgp_fsm.Received(bgp_codec.encode(BGP_PEER_OPEN)))
    session.handle(bgp_fsm.Received(bgp_codec.encode(bgp_codec.Keepalive())))
    return session


def fuzz_bgp(data: bytes) -> None:
    # The input is a message body; the first byte picks the type, so every decoder is reached.
    # The framed message goes to the codec and to an established session, which must answer
    # anything with actions (a NOTIFICATION at worst), never an exception.
    if not data:
        return
    body = data[1:]
    framed = bgp_codec.MARKER + (19 + len(body)).to_bytes(2, "big") + bytes([data[0] % 7]) + body
    with contextlib.suppress(bgp_codec.MessageError):
        bgp_codec.decode(framed)
    if not _bgp_session or _bgp_session[0].is_idle:
        _bgp_session[:] = [_established_bgp_session()]
    _bgp_session[0].handle(bgp_fsm.Received(framed))


_bfd_session: list[bfd_fsm.BfdSession] = []


def fuzz_bfd(data: bytes) -> None:
    # Whatever the codec accepts goes to one long-lived session, which must never fail.
    if not _bfd_session:
        _bfd_session.append(bfd_fsm.BfdSession(bfd_fsm.BfdSettings(7, 100, 100, 3)))
        _bfd_session[0].handle(bfd_fsm.AdminUp())
    try:
        packet = bfd_codec.decode(data)
    except bfd_codec.MalformedPacket:
        return
    _bfd_session[0].handle(bfd_fsm.Received(packet))
    if data[-1] & 1:
        _bfd_session[0].handle(bfd_fsm.TimerFired(bfd_fsm.Timer.DETECT))


CODECS: dict[str, Callable[[bytes], None]] = {
    "arp": fuzz_arp,
    "ndp": fuzz_ndp,
    "heartbeat": fuzz_heartbeat,
    "netlink": fuzz_netlink,
    "bgp": fuzz_bgp,
    "bfd": fuzz_bfd,
}


def seeds(codec: str) -> list[bytes]:
    if codec == "arp":
        return [*arp.gratuitous_frames(MAC, VIP4), arp.probe_frame(MAC, VIP4)]
    if codec == "ndp":
        return [ndp.build_solicitation(VIP6, MAC), ndp.unsolicited_advertisement(VIP6, MAC).message]
    if codec == "heartbeat":
        hb = protocol.Heartbeat("node01", 1, 1, 40, 3, MAC, ("eth0",), frozenset({VIP4, VIP6}))
        return [b"\x01" + protocol.encode(hb, KEY)[: -protocol.MAC_LEN]]
    if codec == "bfd":
        return [
            bfd_codec.encode(bfd_codec.ControlPacket(state, 99, 7, 100_000, 100_000, 3))
            for state in bfd_codec.SessionState
        ]
    if codec == "bgp":
        update = bgp_codec.Update(
            nlri=(BGP_VIP,),
            origin=bgp_codec.Origin.IGP,
            as_path=(bgp_codec.AsPathSegment(bgp_codec.SegmentType.AS_SEQUENCE, (64496,)),),
            next_hop=BGP_ROUTER,
            local_pref=100,
        )
        messages: list[bgp_codec.Message] = [
            BGP_PEER_OPEN,
            update,
            bgp_codec.Notification(6, 2, b"bye"),
        ]
        return [bgp_codec.encode(m)[18:] for m in messages]
    return [bytes(32)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--codec", choices=[*CODECS, "all"], default="all")
    parser.add_argument("--runs", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.codec == "all":
        for codec in CODECS:
            subprocess.run(
                [sys.executable, __file__, "--codec", codec, "--runs", str(args.runs)], check=True
            )
        return
    corpus = f"/tmp/pikube-fuzz-{args.codec}"
    os.makedirs(corpus, exist_ok=True)
    for i, seed in enumerate(seeds(args.codec)):
        with open(f"{corpus}/seed{i}", "wb") as fh:
            fh.write(seed)
    started = time.monotonic()
    target = CODECS[args.codec]
    atheris.Setup(
        [
            sys.argv[0],
            f"-runs={args.runs}",
            f"-max_len={1024 if args.codec == 'bgp' else 256}",
            "-print_final_stats=1",
            corpus,
        ],
        target,
    )
    try:
        atheris.Fuzz()
    finally:
        print(f"{args.codec}: {args.runs} runs in {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
