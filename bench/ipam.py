"""The allocator's goals: 10,000 services over 20 pools in under 1 s; re-allocation after one
service changes in under 5 ms; memory independent of pool size (/8 vs /30 within 10 %).

Run: .venv/bin/python bench/ipam.py [--runs N] [--json PATH]
Prints medians (and p99 for single changes), and JSON when asked. Never fails on time.
Pure computation: the addresses below are never put on a network.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml

from pikube.lb.config import load_manifests
from pikube.lb.ipam import Allocator, allocate
from pikube.lb.model import (
    AddressRange,
    ClusterResources,
    IPAddressPool,
    IPFamily,
    IPFamilyPolicy,
    LabelSelector,
    Namespace,
    Protocol,
    Service,
    ServiceAllocation,
    ServicePort,
    ServiceType,
)

SERVICES = 10_000
POOLS = 20


def _range(first: str, last: str) -> AddressRange:
    return AddressRange(ipaddress.ip_address(first), ipaddress.ip_address(last))


def cluster(services: int = SERVICES, seed: int = 1) -> ClusterResources:
    """20 pools of 1,024 IPv4 addresses (half of them dual-stack with an IPv6 /64): 5 pinned
    to namespaces by priority, 5 to services by label, 10 general; 10,000 services across 20
    namespaces, with explicit IPs, address-pool requests, shared IPs and dual-stack ones."""
    rnd = random.Random(seed)
    pools = []
    for i in range(POOLS):
        ranges = [_range(f"10.{i}.0.0", f"10.{i}.3.255")]
        if i % 2:
            ranges.append(_range(f"fd00:{i}::", f"fd00:{i}::ffff:ffff:ffff:ffff"))
        allocation = None
        if i < 5:
            allocation = ServiceAllocation(priority=i % 3, namespaces=(f"ns{i}", f"ns{i + 5}"))
        elif i < 10:
            allocation = ServiceAllocation(service_selectors=(LabelSelector({"tier": f"t{i}"}),))
        pools.append(
            IPAddressPool(
                name=f"pool{i:02}",
                addresses=tuple(ranges),
                avoid_buggy_ips=i % 3 == 0,
                service_allocation=allocation,
            )
        )
    result = []
    for n in range(services):
        annotations: dict[str, str] = {}
        roll = rnd.random()
        lb_ip = None
        if roll < 0.05:
            lb_ip = f"10.{10 + n % 10}.3.{n % 250 + 1}"  # explicit, in a general pool
        elif roll < 0.07:
            annotations["metallb.io/address-pool"] = f"pool{rnd.randrange(10, 20):02}"
        elif roll < 0.17:
            annotations["metallb.io/allow-shared-ip"] = f"key{n % 50}"
        result.append(
            Service(
                namespace=f"ns{n % 20}",
                name=f"svc{n:05}",
                labels={"tier": f"t{rnd.randrange(0, 20)}"},
                annotations=annotations,
                type=ServiceType.LOAD_BALANCER,
                load_balancer_ip=lb_ip,
                ports=(ServicePort(8000 + n % 500, Protocol.TCP),),
                ip_family_policy=IPFamilyPolicy.PREFER_DUAL_STACK if roll > 0.9 else None,
            )
        )
    namespaces = tuple(Namespace(f"ns{i}", {"team": f"team{i % 4}"}) for i in range(20))
    return ClusterResources(pools=tuple(pools), services=tuple(result), namespaces=namespaces)


def timed(fn: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def bench_full(runs: int) -> dict[str, object]:
    resources = cluster()
    times = [timed(lambda: allocate(resources)) for _ in range(runs)]
    result = allocate(resources)
    return {
        "services": len(resources.services),
        "pools": len(resources.pools),
        "allocated": len(result.allocations),
        "waiting": len(result.errors),
        "median_s": statistics.median(times),
        "max_s": max(times),
    }


def scan_from_first(resources: ClusterResources) -> dict[str, int]:
    """The peer: MetalLB's way inside a pool (a cursor from the pool's first address, a set of
    used addresses), for plain IPv4 services over the general pools, in name order."""
    used: set[int] = set()
    result: dict[str, int] = {}
    pools = sorted(
        (p for p in resources.pools if p.service_allocation is None), key=lambda p: p.name
    )
    for service in sorted(resources.services, key=lambda s: (s.namespace, s.name)):
        for pool in pools:
            found = None
            for rng in pool.addresses:
                if rng.version != 4:
                    continue
                n = int(rng.first)
                while n <= int(rng.last):
                    buggy = pool.avoid_buggy_ips and n & 0xFF in (0, 0xFF)
                    if not buggy and n not in used:
                        found = n
                        break
                    n += 1
                if found is not None:
                    break
            if found is not None:
                used.add(found)
                result[service.key] = found
                break
    return result


def bench_peer(runs: int) -> dict[str, object]:
    base = cluster()
    plain = dataclasses.replace(
        base,
        services=tuple(
            dataclasses.replace(s, annotations={}, load_balancer_ip=None, ip_family_policy=None)
            for s in base.services
        ),
        pools=tuple(dataclasses.replace(p, service_allocation=None) for p in base.pools),
    )
    ours = [timed(allocate, plain) for _ in range(runs)]
    peer = [timed(scan_from_first, plain)]  # slow: once is enough
    expected = {k: a.ips[0] for k, a in allocate(plain).allocations.items()}
    assert {k: ipaddress.IPv4Address(v) for k, v in scan_from_first(plain).items()} == expected
    return {
        "services": len(plain.services),
        "pikube_median_s": statistics.median(ours),
        "scan_median_s": statistics.median(peer),
        "ratio": statistics.median(ours) / statistics.median(peer),
    }


def bench_one_change(changes: int) -> dict[str, object]:
    resources = cluster()
    allocator = Allocator(resources.pools, resources.namespaces)
    allocator.sync(resources.services)
    rnd = random.Random(2)
    kinds: dict[str, list[float]] = {"port": [], "delete+create": [], "explicit-ip": []}
    services = list(resources.services)
    for i in range(changes):
        service = services[rnd.randrange(len(services))]
        kind = list(kinds)[i % 3]
        if kind == "port":
            changed = dataclasses.replace(service, ports=(ServicePort(9999, Protocol.UDP),))
            kinds[kind].append(timed(allocator.upsert, changed))
            allocator.upsert(service)  # back, untimed
        elif kind == "delete+create":
            kinds[kind].append(timed(allocator.delete, service.key))
            kinds[kind][-1] += timed(allocator.upsert, service)
        else:
            changed = dataclasses.replace(service, load_balancer_ip=f"10.19.2.{i % 200 + 1}")
            kinds[kind].append(timed(allocator.upsert, changed))
            allocator.upsert(service)
    every = [t for times in kinds.values() for t in times]
    return {
        "changes": changes,
        "median_ms": statistics.median(every) * 1e3,
        "p99_ms": statistics.quantiles(every, n=100)[98] * 1e3,
        "max_ms": max(every) * 1e3,
        "by_kind_median_ms": {k: statistics.median(v) * 1e3 for k, v in kinds.items()},
    }


def allocator_bytes(pool: IPAddressPool, services: list[Service]) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        allocator = Allocator([pool])
        allocator.sync(services)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert len(allocator.result().allocations) == len(services)
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def bench_memory() -> dict[str, object]:
    four = [Service("default", f"s{i}", type=ServiceType.LOAD_BALANCER) for i in range(4)]
    v6 = [dataclasses.replace(s, ip_families=(IPFamily.IPV6,)) for s in four]
    slash30 = allocator_bytes(IPAddressPool("p", (_range("10.0.0.0", "10.0.0.3"),)), four)
    slash8 = allocator_bytes(IPAddressPool("p", (_range("10.0.0.0", "10.255.255.255"),)), four)
    slash126 = allocator_bytes(IPAddressPool("p", (_range("fd00::", "fd00::3"),)), v6)
    slash64 = allocator_bytes(
        IPAddressPool("p", (_range("fd00::", "fd00::ffff:ffff:ffff:ffff"),)), v6
    )
    return {
        "allocations": len(four),
        "slash30_bytes": slash30,
        "slash8_bytes": slash8,
        "ratio_8_vs_30": slash8 / slash30,
        "ipv6_slash126_bytes": slash126,
        "ipv6_slash64_bytes": slash64,
        "ratio_64_vs_126": slash64 / slash126,
    }


def manifests(resources: ClusterResources) -> str:
    """The cluster as the YAML a user would give `pikube lb allocate`."""
    docs = []
    for pool in resources.pools:
        spec: dict[str, object] = {"addresses": [str(r) for r in pool.addresses]}
        if pool.avoid_buggy_ips:
            spec["avoidBuggyIPs"] = True
        sa = pool.service_allocation
        if sa is not None:
            spec["serviceAllocation"] = {
                "priority": sa.priority,
                "namespaces": list(sa.namespaces),
                "serviceSelectors": [
                    {"matchLabels": dict(s.match_labels)} for s in sa.service_selectors
                ],
            }
        docs.append(
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": {"name": pool.name},
                "spec": spec,
            }
        )
    for svc in resources.services:
        svc_spec: dict[str, object] = {
            "type": "LoadBalancer",
            "ports": [{"port": p.port, "protocol": p.protocol.value} for p in svc.ports],
        }
        if svc.load_balancer_ip:
            svc_spec["loadBalancerIP"] = svc.load_balancer_ip
        if svc.ip_family_policy:
            svc_spec["ipFamilyPolicy"] = svc.ip_family_policy.value
        meta = {"name": svc.name, "namespace": svc.namespace, "labels": dict(svc.labels)}
        if svc.annotations:
            meta["annotations"] = dict(svc.annotations)
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": svc_spec})
    return yaml.safe_dump_all(docs)


def bench_cli(runs: int) -> dict[str, object]:
    resources = cluster()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cluster.yaml"
        path.write_text(manifests(resources))
        load = [timed(lambda: load_manifests([path])) for _ in range(runs)]
        parsed = load_manifests([path])
        assert allocate(parsed) == allocate(resources)
        command = [sys.executable, "-m", "pikube", "lb", "allocate", "-f", str(path), "-o", "json"]
        whole = [
            timed(lambda: subprocess.run(command, check=True, capture_output=True))
            for _ in range(runs)
        ]
        idle = [sys.executable, "-m", "pikube", "lb", "allocate", "--help"]
        start = [
            timed(lambda: subprocess.run(idle, check=True, capture_output=True))
            for _ in range(runs)
        ]
    return {
        "read_and_parse_median_s": statistics.median(load),
        "command_median_s": statistics.median(whole),
        "command_startup_median_s": statistics.median(start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="full allocations to time")
    parser.add_argument("--changes", type=int, default=600, help="single changes to time")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    result = {
        "full": bench_full(args.runs),
        "peer": bench_peer(args.runs),
        "one_change": bench_one_change(args.changes),
        "memory": bench_memory(),
        "cli": bench_cli(max(1, args.runs // 2)),
    }
    full, one, memory = result["full"], result["one_change"], result["memory"]
    print(
        f"full allocation: {full['services']} services over {full['pools']} pools "
        f"({full['allocated']} allocated, {full['waiting']} waiting): "
        f"median {full['median_s']:.3f} s, max {full['max_s']:.3f} s   (goal < 1 s)"
    )
    peer = result["peer"]
    print(
        f"  same run, {peer['services']} plain IPv4 services over the same pools: pikube "
        f"{peer['pikube_median_s']:.3f} s vs scanning from each pool's first address "
        f"(MetalLB's cursor) {peer['scan_median_s']:.3f} s: ratio {peer['ratio']:.2f}"
    )
    print(
        f"one service changes, {one['changes']} times (10,000 allocated): "
        f"median {one['median_ms']:.3f} ms, p99 {one['p99_ms']:.3f} ms, "
        f"max {one['max_ms']:.3f} ms   (goal < 5 ms)"
    )
    kinds = one["by_kind_median_ms"]
    assert isinstance(kinds, dict)
    print("  median by change: " + ", ".join(f"{k} {v:.3f} ms" for k, v in kinds.items()))
    print(
        f"memory with {memory['allocations']} allocations: /30 {memory['slash30_bytes']} B, "
        f"/8 {memory['slash8_bytes']} B, ratio {memory['ratio_8_vs_30']:.3f}; "
        f"IPv6 /126 {memory['ipv6_slash126_bytes']} B, /64 {memory['ipv6_slash64_bytes']} B, "
        f"ratio {memory['ratio_64_vs_126']:.3f}   (goal: within 10 %)"
    )
    cli = result["cli"]
    print(
        f"pikube lb allocate on the same 10,000 services as YAML: read+parse median "
        f"{cli['read_and_parse_median_s']:.3f} s; "
        f"whole command median {cli['command_median_s']:.3f} s, "
        f"of which command start-up (--help) {cli['command_startup_median_s']:.3f} s"
    )
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
