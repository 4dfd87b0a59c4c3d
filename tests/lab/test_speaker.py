"""The layer-2 speaker, for real: three speakers on node01-03 of a lab, probed from the client."""

from __future__ import annotations

import ipaddress
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pikube.lab.hosts.processes import log_tail
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.services import seed_service
from pikube.lab.services.seed_service import manifests
from pikube.lab.services.speakers import (
    SEED_VIP,
    SEED_VIP6,
    SpeakerFleet,
    answering_host,
    lab_dir,
    speaker_metrics,
)
from pikube.lb.membership import protocol
from tests.helpers import run_pikube, wait_until

pytestmark = pytest.mark.lab


@pytest.fixture
def fleet(lab: Lab) -> SpeakerFleet:
    speakers = SpeakerFleet(lab, lab_dir(lab, "speakers"))
    speakers.prepare(manifests(lab.topology, vip6=ipaddress.IPv6Address(SEED_VIP6)))
    speakers.start_all()
    return speakers  # the lab fixture stops them


def one_owner(fleet: SpeakerFleet, ip: str = SEED_VIP, timeout_s: float = 5.0) -> str:
    def found() -> str | None:
        owners = fleet.owners(ip)
        return owners[0] if len(owners) == 1 else None

    return wait_until(found, timeout_s, f"one owner of {ip}")


def another_owner(fleet: SpeakerFleet, old: str, timeout_s: float = 5.0) -> str:
    def found() -> str | None:
        owners = fleet.owners()
        return owners[0] if len(owners) == 1 and owners[0] != old else None

    return wait_until(found, timeout_s, f"an owner other than {old}")


def rejoined(fleet: SpeakerFleet, observer: str, node: str) -> bool:
    peers = fleet.status(observer)["peers"]
    assert isinstance(peers, dict)
    return node in peers and not peers[node]["joining"]


def neighbour_mac(lab: Lab, ip: str) -> str | None:
    out = lab.run("client", ["ip", "neigh", "show", ip]).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def test_exactly_one_node_answers_arp_and_ndp_for_both_families(fleet: SpeakerFleet) -> None:
    owner = one_owner(fleet)
    assert fleet.owners(SEED_VIP6) == [owner]  # a dual-stack service lives on one node
    lab = fleet.lab
    assert answering_host(lab, SEED_VIP) == owner
    assert answering_host(lab, SEED_VIP6) == owner
    replies = lab.run("client", ["arping", "-c", "3", "-w", "2", "-I", "eth0", SEED_VIP]).stdout
    macs = {line.split("[")[1].split("]")[0] for line in replies.splitlines() if "reply" in line}
    assert macs == {lab.topology.host(owner).mac}


def test_a_crashed_owner_is_replaced_and_clients_learn_it_by_gratuitous_arp(
    fleet: SpeakerFleet,
) -> None:
    lab = fleet.lab
    owner = one_owner(fleet)
    lab.run("client", ["ping", "-c", "1", "-W", "0.2", SEED_VIP])  # fill the client's cache
    assert neighbour_mac(lab, SEED_VIP) == lab.topology.host(owner).mac
    fleet.lab.supervisor.signal(fleet.records[owner], signal.SIGKILL)
    netns.set_link_state(lab.namespace(owner), "eth0", up=False)
    new_owner = another_owner(fleet, owner)
    # The client sent nothing: only the new owner's gratuitous ARP can have changed its cache.
    wait_until(
        lambda: neighbour_mac(lab, SEED_VIP) == lab.topology.host(new_owner).mac,
        2,
        "the client's ARP cache to follow the new owner",
    )


def test_link_down_stops_the_owner_at_once_and_its_return_moves_nothing(
    fleet: SpeakerFleet,
) -> None:
    lab = fleet.lab
    owner = one_owner(fleet)
    netns.set_link_state(lab.namespace(owner), "eth0", up=False)
    wait_until(lambda: fleet.status(owner)["announcing"] == [], 2, "the owner to stop claiming")
    new_owner = another_owner(fleet, owner)
    # Found dead by asking its link (l2/liveness), not after the full detection time.
    log = Path(fleet.records[new_owner].log_path).read_text()
    assert f"peer {owner} is dead (late, and its link does not answer)" in log
    netns.set_link_state(lab.namespace(owner), "eth0", up=True)
    wait_until(lambda: rejoined(fleet, new_owner, owner), 5, f"{owner} to rejoin")
    assert fleet.owners() == [new_owner]  # no failback
    assert answering_host(lab, SEED_VIP) == new_owner


def test_sigterm_hands_over_before_letting_go(fleet: SpeakerFleet) -> None:
    owner = one_owner(fleet)
    record = fleet.records[owner]
    status = fleet.lab.stop(record, timeout_s=5)
    assert status == 0
    new_owner = one_owner(fleet)
    assert new_owner != owner
    # It stopped answering only after it saw the new owner claim the IP (make-before-break).
    assert f"stopped announcing {SEED_VIP}, {SEED_VIP6} (handed-over: to {new_owner})" in (
        log_tail(record, 50)
    )


def test_a_returning_node_takes_nothing_back(fleet: SpeakerFleet) -> None:
    owner = one_owner(fleet)
    fleet.lab.supervisor.signal(fleet.records[owner], signal.SIGKILL)
    fleet.lab.supervisor.wait(fleet.records[owner], 5)
    new_owner = another_owner(fleet, owner)
    fleet.start(owner)
    wait_until(lambda: rejoined(fleet, new_owner, owner), 5, f"{owner} to finish joining")
    assert fleet.owners() == [new_owner]


def _capture_heartbeat(lab: Lab) -> bytes:
    with netns.entered(lab.namespace("client")):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", protocol.DEFAULT_PORT))
        sock.settimeout(2)
        return sock.recv(65535)


def _broadcast_from_client(lab: Lab, datagram: bytes) -> None:
    with netns.entered(lab.namespace("client")):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.sendto(datagram, ("198.51.100.255", protocol.DEFAULT_PORT))


def _heartbeat_counter(fleet: SpeakerFleet, node: str, result: str) -> float:
    for line in speaker_metrics(fleet.lab, node).splitlines():
        if line.startswith(f'pikube_membership_heartbeats_received_total{{result="{result}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_forged_and_replayed_heartbeats_are_dropped_and_counted(fleet: SpeakerFleet) -> None:
    lab = fleet.lab
    owner = one_owner(fleet)
    captured = _capture_heartbeat(lab)
    key = protocol.load_key(fleet.key_file.read_bytes())
    sender = protocol.decode(captured, key).node
    observer = next(n for n in fleet.nodes if n != sender)
    forged = protocol.encode(
        protocol.Heartbeat(
            node="node09", epoch=2**62, seq=1, interval_ms=40, multiplier=3,
            mac=bytes.fromhex("020000000010"), interfaces=("eth0",),
            claims=frozenset({socket.inet_aton(SEED_VIP)}),
        ),
        protocol.load_key(b"not the cluster key, but long enough"),
    )  # fmt: skip
    for _ in range(5):
        _broadcast_from_client(lab, forged)
        _broadcast_from_client(lab, captured)
    wait_until(lambda: _heartbeat_counter(fleet, observer, "unauthenticated") >= 5, 3, "drops")
    wait_until(lambda: _heartbeat_counter(fleet, observer, "replayed") >= 5, 3, "replay drops")
    assert "node09" not in fleet.status(observer)["peers"]  # type: ignore[operator]
    assert fleet.owners() == [owner]


def test_split_brain_after_a_partition_heals_leaves_one_owner(fleet: SpeakerFleet) -> None:
    lab = fleet.lab
    one_owner(fleet)
    wait_until(fleet.settled, 5, "every speaker to hear the others")
    partition = (
        "table bridge partition {\n  chain forward {\n"
        "    type filter hook forward priority 0;\n"
        f"    udp dport {protocol.DEFAULT_PORT} drop\n  }}\n}}\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", lab.topology.lan_namespace, "nft", "-f", "-"],
        input=partition, text=True, check=True,
    )  # fmt: skip
    wait_until(lambda: len(fleet.owners()) == 3, 5, "every partitioned node to claim the IP")
    subprocess.run(
        ["ip", "netns", "exec", lab.topology.lan_namespace, "nft", "delete", "table", "bridge",
         "partition"],
        check=True,
    )  # fmt: skip
    survivor = one_owner(fleet)
    wait_until(lambda: answering_host(lab, SEED_VIP) == survivor, 5, "ARP to follow the winner")


def test_an_ip_used_by_another_host_is_refused_and_reported(lab: Lab) -> None:
    # The router already uses .231 (configured on its interface, so its kernel answers ARP).
    lab.run("router", ["ip", "addr", "add", "198.51.100.231/32", "dev", "eth0"], check=True)
    fleet = SpeakerFleet(lab, lab_dir(lab, "speakers"))
    fleet.prepare(manifests(lab.topology, vip=ipaddress.IPv4Address("198.51.100.231")))
    fleet.start_all()

    def conflicts() -> list[str]:
        found: list[str] = []
        for node in fleet.nodes:
            found += fleet.status(node)["conflicts"]  # type: ignore[arg-type]
        return found

    reported = wait_until(conflicts, 5, "a reported conflict")
    assert "198.51.100.231 is already in use by a host that is not a speaker" in reported[0]
    assert "02:00:00:00:00:01" in reported[0]  # the router's MAC
    assert fleet.owners("198.51.100.231") == []
    assert answering_host(lab, "198.51.100.231") == "router"


def test_external_traffic_policy_local_announces_from_a_node_with_an_endpoint(lab: Lab) -> None:
    fleet = SpeakerFleet(lab, lab_dir(lab, "speakers"))
    fleet.prepare(
        manifests(lab.topology, endpoint_hosts=("node03",), external_traffic_policy="Local")
    )
    fleet.start_all()
    assert one_owner(fleet) == "node03"
    # The endpoint moves to node01: so does the announcement.
    fleet.write(
        manifests(lab.topology, endpoint_hosts=("node01",), external_traffic_policy="Local")
    )
    wait_until(lambda: fleet.owners() == ["node01"], 5, "the IP to follow the endpoint")


def test_bad_configuration_is_reported_and_the_rest_keeps_working(fleet: SpeakerFleet) -> None:
    owner = one_owner(fleet)
    outside = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "stray",
            "namespace": "default",
            "annotations": {"metallb.io/loadBalancerIPs": "203.0.113.7"},
        },
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }
    stray_endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "stray-1",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "stray"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.9"], "nodeName": "node01"}],
    }
    fleet.write(
        manifests(
            fleet.lab.topology,
            vip6=ipaddress.IPv6Address(SEED_VIP6),
            extra=[outside, stray_endpoints],
        )
    )
    wait_until(
        lambda: any(
            "service default/stray: requested IP 203.0.113.7 is not in any IPAddressPool" in p
            for p in fleet.status(owner)["problems"]  # type: ignore[attr-defined]
        ),
        5,
        "the stray service to be reported",
    )  # fmt: skip
    # A broken file: the last valid state stays in force, and the log names the file.
    broken = fleet.manifests / "broken.yaml"
    broken.write_text("kind: IPAddressPool\n  bad: [indent\n")
    wait_until(
        lambda: "broken.yaml" in log_tail(fleet.records[owner], 30), 5, "the file to be named"
    )
    assert fleet.owners() == [owner]
    assert answering_host(fleet.lab, SEED_VIP) == owner


def test_metrics_use_metallb_names(fleet: SpeakerFleet) -> None:
    owner = one_owner(fleet)
    answering_host(fleet.lab, SEED_VIP)
    text = speaker_metrics(fleet.lab, owner)
    assert f'metallb_layer2_requests_received{{ip="{SEED_VIP}"}}' in text
    assert f'metallb_layer2_responses_sent{{ip="{SEED_VIP}"}}' in text
    assert f'metallb_layer2_gratuitous_sent{{ip="{SEED_VIP}"}}' in text
    assert (
        f'metallb_speaker_announced{{service="default/nginx",protocol="layer2",node="{owner}",'
        f'ip="{SEED_VIP}"}} 1'
    ) in text
    assert "# TYPE metallb_layer2_requests_received counter" in text


def test_a_missing_interface_is_reported_and_the_others_are_served(lab: Lab) -> None:
    fleet = SpeakerFleet(lab, lab_dir(lab, "speakers"), nodes=("node01",),
                         extra_args=("--interface", "eth9"))  # fmt: skip
    fleet.prepare()
    fleet.start_all()
    assert one_owner(fleet) == "node01"
    assert "interface eth9 does not exist on node node01" in log_tail(fleet.records["node01"])


def test_a_missing_key_file_is_one_clear_line(tmp_path: object) -> None:
    result = run_pikube(
        "lb", "speaker", "--node", "node01", "--source", f"dir:{tmp_path}",
        "--key-file", f"{tmp_path}/nope.key",
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "key file" in lines[0]
    assert "nope.key" in lines[0]
    assert sys.executable  # the CLI ran with this interpreter


def _straddle_a_graceful_handover(lab: Lab, bridge_s: float) -> bytes:
    """Open a connection through the owner, hand over by SIGTERM, finish it through the new
    owner; return what the client got (b"" if the connection was reset)."""
    seed_service.publish(lab, backend_host="master")
    fleet = SpeakerFleet(lab, lab_dir(lab, "speakers"),
                         extra_args=("--handover-bridge-s", str(bridge_s)))  # fmt: skip
    fleet.prepare(manifests(lab.topology, backend_host="master"))
    fleet.start_all()
    owner = one_owner(fleet)
    wait_until(fleet.settled, 5, "the speakers to settle")
    with netns.entered(lab.namespace("client")):
        conn = socket.create_connection((SEED_VIP, 80), timeout=3)
    with conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\n")
        assert neighbour_mac(lab, SEED_VIP) == lab.topology.host(owner).mac
        fleet.lab.stop(fleet.records[owner])  # graceful: SIGTERM
        new_owner = another_owner(fleet, owner)
        wait_until(
            lambda: neighbour_mac(lab, SEED_VIP) == lab.topology.host(new_owner).mac,
            3,
            "the client to switch to the new owner",
        )
        conn.sendall(b"Connection: close\r\n\r\n")
        try:
            return conn.recv(200)
        except ConnectionResetError:
            return b""


def test_a_connection_open_during_a_planned_handover_survives(lab: Lab) -> None:
    assert _straddle_a_graceful_handover(lab, bridge_s=60).startswith(b"HTTP/1.1 200 OK")


def test_without_the_bridge_that_connection_is_reset(lab: Lab) -> None:
    assert _straddle_a_graceful_handover(lab, bridge_s=0) == b""
