"""The announcer's side of a liveness probe (`l2.liveness`): it sends the ARP probes for a
peer's address and reports the peer kernel's answer once. No root: a fake socket."""

from __future__ import annotations

from pikube.lb.l2 import arp
from pikube.lb.l2.announcer import InterfaceAnnouncer
from pikube.lb.l2.links import Link

OURS = bytes.fromhex("020000000001")
PEER = bytes.fromhex("020000000002")
PEER_IP = arp.ip4("198.51.100.22")


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.inbox: list[bytes] = []

    def send(self, frame: bytes) -> int:
        self.sent.append(frame)
        return len(frame)

    def recvfrom(self, _size: int) -> tuple[bytes, tuple[str, int, int, int, bytes]]:
        if not self.inbox:
            raise BlockingIOError
        return self.inbox.pop(0), ("eth0", arp.ETH_P_ARP, 0, 1, PEER)


class Stats:
    def request_received(self, ip: str) -> None: ...
    def response_sent(self, ip: str) -> None: ...
    def gratuitous_sent(self, ip: str) -> None: ...
    def malformed(self, protocol: str) -> None: ...


def reply_from(ip: bytes) -> bytes:
    """What Linux answers to an ARP probe (sender IP 0) for its address."""
    return arp.build_frame(
        eth_dst=OURS, eth_src=PEER, op=arp.ArpOp.REPLY, sender_mac=PEER, sender_ip=ip,
        target_mac=OURS, target_ip=arp.ZERO_IP,
    )  # fmt: skip


def test_a_probed_peer_kernels_answer_is_reported_once() -> None:
    answers: list[bytes] = []
    claims: list[tuple[bytes, bytes]] = []
    announcer = InterfaceAnnouncer(
        Link("eth0", 1, OURS),
        Stats(),
        lambda ip, mac: claims.append((ip, mac)),
        on_peer_answer=answers.append,
    )
    sock = FakeSocket()
    announcer._arp = sock  # type: ignore[assignment]
    announcer.probe_peer(PEER_IP, 2)
    assert sock.sent == [arp.probe_frame(OURS, PEER_IP)] * 2
    sock.inbox += [reply_from(arp.ip4("198.51.100.23")), reply_from(PEER_IP), reply_from(PEER_IP)]
    announcer._on_arp()
    assert answers == [PEER_IP]  # not the unasked address, not the second copy
    assert not claims  # a peer's own address is no foreign claim on a service IP
