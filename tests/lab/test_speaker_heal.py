"""After a partition heals, every client's ARP cache names the owner again at once (issue 10).

Heartbeats between the speakers are dropped on the LAN switch (nftables in the bridge's
namespace), one way or both, so that another node takes the IP over while the owner keeps it
(a split brain). ARP still flows, as it does when only the speakers' UDP is lost. After the
heal, the client sends nothing: only gratuitous ARP can change its cache, and it must name the
owner within a few detection times (before issue 10 it could name the loser for up to ~30 s;
with this test's timing the old speaker took 0.19-0.78 s, racing, and the new one 37-92 ms).

A host the owner does not know as a speaker (a conflicting host, or a speaker that restarted
on the other side of a partition and was never heard) that claims the IP twice within a
second must not have the last word either (simulation seeds 14593, 29709).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pikube.lab.lab import Lab
from pikube.lab.network.topology import BRIDGE
from pikube.lab.services.seed_service import manifests
from pikube.lab.services.speakers import SEED_VIP, SpeakerFleet, lab_dir
from pikube.lb.l2 import arp
from pikube.lb.membership import protocol
from tests.helpers import wait_until

pytestmark = pytest.mark.lab

TABLE = "heal"


def neighbour_mac(lab: Lab, ip: str) -> str | None:
    out = lab.run("client", ["ip", "neigh", "show", ip]).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def nft(lab: Lab, script: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", lab.topology.lan_namespace, "nft", "-f", "-"],
        input=script, text=True, check=True,
    )  # fmt: skip


def drop_heartbeats(lab: Lab, mac: str, both_ways: bool) -> None:
    """Drop heartbeats sent by `mac` (and, both ways, those sent to it) on the LAN bridge."""
    port = protocol.DEFAULT_PORT
    rules = [f"ether saddr {mac} udp dport {port} drop"]
    if both_ways:
        # Heartbeats are broadcasts: what reaches `mac` leaves through its bridge port.
        rules.append(f"ether saddr != {mac} udp dport {port} oifname v-{mac_host(lab, mac)} drop")
    body = "\n".join(f"    {rule}" for rule in rules)
    nft(
        lab,
        f"table bridge {TABLE} {{\n  chain forward {{\n"
        f"    type filter hook forward priority 0;\n{body}\n  }}\n}}\n",
    )


def mac_host(lab: Lab, mac: str) -> str:
    return next(h.name for h in lab.topology.hosts if h.mac == mac)


@pytest.mark.parametrize("both_ways", [False, True], ids=["one-way", "symmetric"])
def test_after_a_partition_heals_the_client_names_the_owner_at_once(
    lab: Lab, both_ways: bool
) -> None:
    fleet = SpeakerFleet(lab, lab_dir(lab, "speakers"))
    fleet.prepare(manifests(lab.topology))
    fleet.start_all()
    wait_until(lambda: len(fleet.owners()) == 1, 10, "one owner")
    wait_until(fleet.settled, 5, "every speaker to hear the others")
    owner = fleet.owners()[0]
    owner_mac = lab.topology.host(owner).mac
    lab.run("client", ["ping", "-c", "1", "-W", "0.2", SEED_VIP])
    assert neighbour_mac(lab, SEED_VIP) == owner_mac

    # The others stop hearing the owner: one of them takes the IP over (the owner, first in
    # the election's order, keeps it: a split brain). Its gratuitous ARP moves the client.
    drop_heartbeats(lab, owner_mac, both_ways)
    wait_until(
        lambda: next((n for n in fleet.owners() if n != owner), None), 5, "a rival to take over"
    )
    # Heal just after the rival's burst frame at 250 ms: before issue 10 the owner had answered
    # only once (when it first heard the rival's claim), so that frame was the client's last.
    time.sleep(0.3)
    subprocess.run(
        ["ip", "netns", "exec", lab.topology.lan_namespace, "nft", "delete", "table", "bridge",
         TABLE],
        check=True,
    )  # fmt: skip
    healed = time.monotonic()
    # The bound is a few detection times (180 ms each): far from the neighbour cache's 30 s.
    wait_until(
        lambda: neighbour_mac(lab, SEED_VIP) == owner_mac, 0.5, "the client to name the owner"
    )
    took_ms = (time.monotonic() - healed) * 1000
    print(f"client named the owner {took_ms:.0f} ms after the heal")  # seen with pytest -s
    wait_until(lambda: fleet.owners() == [owner], 2, "the rival to withdraw")
    # And it stays so: the rival's remaining burst (1 s, 2 s after its takeover) is cancelled.
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        assert neighbour_mac(lab, SEED_VIP) == owner_mac
        time.sleep(0.05)


STRANGER = "02:99:00:00:00:01"


def send_from_stranger(lab: Lab, frame: bytes, gaps_s: list[float]) -> None:
    """Send a raw frame now and again after each gap, from a host on the LAN that is not a
    speaker (a veth on the bridge). One process, so that the gaps hold on a loaded machine."""
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        "s.bind(('st0', 0))\n"
        "s.send(bytes.fromhex(sys.argv[1]))\n"
        "for gap in sys.argv[2:]:\n"
        "    time.sleep(float(gap))\n"
        "    s.send(bytes.fromhex(sys.argv[1]))\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", lab.topology.lan_namespace, sys.executable, "-c", code,
         frame.hex(), *map(str, gaps_s)],
        check=True,
    )  # fmt: skip


def test_a_stranger_claiming_the_ip_twice_in_a_second_does_not_keep_the_client(lab: Lab) -> None:
    fleet = SpeakerFleet(lab, lab_dir(lab, "speakers"))
    fleet.prepare(manifests(lab.topology))
    fleet.start_all()
    wait_until(lambda: len(fleet.owners()) == 1, 10, "one owner")
    owner_mac = lab.topology.host(fleet.owners()[0]).mac
    lab.run("client", ["ping", "-c", "1", "-W", "0.2", SEED_VIP])
    assert neighbour_mac(lab, SEED_VIP) == owner_mac
    lan = ["ip", "-n", lab.topology.lan_namespace, "link"]
    subprocess.run([*lan, "add", "st0", "type", "veth", "peer", "name", "st1"], check=True)
    subprocess.run([*lan, "set", "st1", "master", BRIDGE, "up"], check=True)
    subprocess.run([*lan, "set", "st0", "up"], check=True)
    claim = arp.gratuitous_frames(arp.mac_bytes(STRANGER), arp.ip4(SEED_VIP))[0]
    # The owner defends at once at most once a second (RFC 5227): whether it answered the
    # first claim depends on what it answered just before, but it answers the second, 1.2 s
    # later, at once; the third, 0.5 s after that, falls within the second. Before issue 10's
    # fix nothing answered it, and the client named the stranger until the owner's 30 s
    # refresh; now the owner answers again a detection time (180 ms) after the latest claim.
    send_from_stranger(lab, claim, [1.2, 0.5])
    sent = time.monotonic()
    wait_until(lambda: neighbour_mac(lab, SEED_VIP) == owner_mac, 0.6, "the owner's last answer")
    print(f"client named the owner {(time.monotonic() - sent) * 1000:.0f} ms after the claim")
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        assert neighbour_mac(lab, SEED_VIP) == owner_mac
        time.sleep(0.05)
