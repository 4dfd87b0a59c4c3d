"""The speaker's layer-2 costs: ARP reply latency under load, memory, and idle CPU (issue 3).

    .venv/bin/python bench/speaker_l2.py [--ips 50] [--rate 1000] [--seconds 10] [--idle-s 30]
                                         [--json PATH]

In one lab: three speakers announcing `--ips` service IPs. From the client, a raw socket sends
ARP requests at `--rate` per second, cycling over the service IPs, and times each reply; the same
is done for the nodes' own addresses, which the kernel answers (the peer in the same run).
Then the speakers sit idle for `--idle-s` seconds while their CPU time and RSS are read from
/proc. Prints medians, p99 and maxima; never fails on time.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import statistics
import sys
import time
from pathlib import Path

from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.services.seed_service import manifests
from pikube.lab.services.speakers import SpeakerFleet, lab_dir
from pikube.lb.l2 import arp

CLIENT_MAC = arp.mac_bytes("02:00:00:00:00:10")
CLIENT_IP = arp.ip4("198.51.100.10")


def services(count: int) -> list[dict[str, object]]:
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "bench", "namespace": "metallb-system"},
            "spec": {"addresses": ["198.51.100.100-198.51.100.199"]},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": "bench", "namespace": "metallb-system"},
        },
    ]
    for i in range(count):
        name = f"svc{i:03d}"
        docs.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bench",
                         "annotations": {"metallb.io/loadBalancerIPs": f"198.51.100.{100 + i}"}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        })  # fmt: skip
        docs.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.244.1.{i}"], "nodeName": "node01"}],
        })  # fmt: skip
    return docs


def announced(fleet: SpeakerFleet, node: str) -> int:
    announcing = fleet.status(node)["announcing"]
    assert isinstance(announcing, list)
    return len(announcing)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def arp_latencies(lab: Lab, targets: list[str], rate: int, seconds: float) -> list[float]:
    """Send ARP requests from the client; return reply latencies in ms (lost ones excluded)."""
    with netns.entered(lab.namespace("client")):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(arp.ETH_P_ARP))
    sock.bind(("eth0", arp.ETH_P_ARP))
    sock.setblocking(False)
    packed = [arp.ip4(t) for t in targets]
    frames = {
        ip: arp.build_frame(
            eth_dst=arp.BROADCAST_MAC, eth_src=CLIENT_MAC, op=arp.ArpOp.REQUEST,
            sender_mac=CLIENT_MAC, sender_ip=CLIENT_IP, target_mac=arp.ZERO_MAC, target_ip=ip,
        )
        for ip in packed
    }  # fmt: skip
    pending: dict[bytes, float] = {}
    latencies: list[float] = []
    interval = 1.0 / rate
    start = time.perf_counter()
    next_send = start
    sent = 0
    end = start + seconds
    while True:
        now = time.perf_counter()
        if now >= next_send and now < end:
            ip = packed[sent % len(packed)]
            sock.send(frames[ip])
            pending[ip] = time.perf_counter()
            sent += 1
            next_send += interval
        if now >= end + 0.2:
            break
        timeout = max(0.0, min(next_send, end + 0.2) - time.perf_counter())
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            continue
        while True:
            try:
                data, address = sock.recvfrom(2048)
            except BlockingIOError:
                break
            received = time.perf_counter()
            if address[2] == 4:  # our own outgoing frame
                continue
            try:
                frame = arp.parse_frame(data)
            except arp.MalformedPacket:
                continue
            if frame.op == arp.ArpOp.REPLY and frame.target_ip == CLIENT_IP:
                sent_at = pending.pop(frame.sender_ip, None)
                if sent_at is not None:
                    latencies.append((received - sent_at) * 1000)
    sock.close()
    return latencies


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / 100.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ips", type=int, default=50)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument(
        "--interval-ms", type=int, default=None, help="heartbeat interval (default: the speaker's)"
    )
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--name", default="benchl2", help="the lab's name (default: benchl2)")
    args = parser.parse_args()
    lab = Lab(args.name)
    if lab.exists():  # another run's: sharing it would mix both runs' speakers and figures
        sys.exit(f"speaker_l2: a lab named {args.name} is up (another run?); pass --name")
    lab.up()
    try:
        fleet = SpeakerFleet(lab, lab_dir(lab, "speakers"))
        if args.interval_ms is not None:
            fleet.interval_ms = args.interval_ms
        docs = services(args.ips)
        docs += [d for d in manifests(lab.topology) if d["kind"] == "Node"]
        fleet.prepare(docs)
        fleet.start_all()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            owned = sum(announced(fleet, n) for n in fleet.nodes)
            if owned == args.ips and fleet.settled():
                break
            time.sleep(0.1)
        spread = {n: announced(fleet, n) for n in fleet.nodes}
        targets = [f"198.51.100.{100 + i}" for i in range(args.ips)]
        speaker_ms = arp_latencies(lab, targets, args.rate, args.seconds)
        kernel_ms = arp_latencies(lab, ["198.51.100.21", "198.51.100.22", "198.51.100.23"],
                                  args.rate, args.seconds)  # fmt: skip
        pids = {n: r.pid for n, r in fleet.records.items()}
        before = {n: cpu_seconds(p) for n, p in pids.items()}
        time.sleep(args.idle_s)
        idle = {n: (cpu_seconds(p) - before[n]) / args.idle_s * 100 for n, p in pids.items()}
        rss = {n: rss_mb(p) for n, p in pids.items()}
    finally:
        lab.down()
    expected = int(args.rate * args.seconds)

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "replies": len(values),
            "p50_ms": statistics.median(values),
            "p99_ms": percentile(values, 0.99),
            "max_ms": max(values),
        }

    result = {
        "ips": args.ips,
        "rate_per_s": args.rate,
        "requests": expected,
        "ips_per_node": spread,
        "arp_speaker": summary(speaker_ms),
        "arp_kernel_peer": summary(kernel_ms),
        "idle_cpu_percent": idle,
        "rss_mb": rss,
    }
    s, k = result["arp_speaker"], result["arp_kernel_peer"]
    assert isinstance(s, dict)
    assert isinstance(k, dict)
    print(f"{args.ips} IPs spread over the nodes: {spread}")
    print(f"ARP replies at {args.rate}/s for {args.seconds:g} s ({expected} requests):")
    for label, figures in (("pikube speaker", s), ("kernel (peer)", k)):
        print(f"  {label:<15} replies {figures['replies']:>6}  p50 {figures['p50_ms']:.3f} ms"
              f"  p99 {figures['p99_ms']:.3f} ms  max {figures['max_ms']:.3f} ms")  # fmt: skip
    print(f"  p99 ratio speaker/kernel: {s['p99_ms'] / k['p99_ms']:.2f}")
    print(f"idle CPU over {args.idle_s:g} s (% of one core): "
          + ", ".join(f"{n} {v:.2f}" for n, v in idle.items()))  # fmt: skip
    print("RSS (MB): " + ", ".join(f"{n} {v:.1f}" for n, v in rss.items()))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
