"""The speaker's desired state from the API's objects: full vs incremental, N Services.

Run: .venv/bin/python bench/speaker_kube_state.py [--services 1000] [--changes 200]

N LoadBalancer Services, each with one EndpointSlice, in one pool; then CHANGES EndpointSlice
updates one at a time (as a busy cluster sends them). Prints the time per change of the full
recomputation (the peer) and of pikube.lb.kube.desired's incremental builder, their ratio, and
the CPU share a speaker would spend at 100 EndpointSlice updates per second. Never fails on
time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pikube.lb.kube.api import ENDPOINT_SLICES, IP_ADDRESS_POOLS, L2_ADVERTISEMENTS, SERVICES, Kind
from pikube.lb.kube.desired import DesiredStateBuilder, full_desired_state


def world(n: int) -> dict[Kind, list[dict[str, Any]]]:
    services = [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": f"s{i}", "namespace": "default", "uid": f"u{i}",
                      "resourceVersion": "5"},
         "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
         "status": {"loadBalancer": {"ingress": [{"ip": f"10.200.{i // 256}.{i % 256}"}]}}}
        for i in range(n)
    ]  # fmt: skip
    slices = [
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"s{i}-x", "namespace": "default", "uid": f"e{i}",
                      "resourceVersion": "5", "labels": {"kubernetes.io/service-name": f"s{i}"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": ["10.244.0.1"], "nodeName": "node01",
                        "conditions": {"ready": True}}]}
        for i in range(n)
    ]  # fmt: skip
    pool = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "big", "namespace": "m", "uid": "p", "resourceVersion": "1"},
            "spec": {"addresses": ["10.200.0.0/16"]}}  # fmt: skip
    l2 = {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
          "metadata": {"name": "l2", "namespace": "m", "uid": "l",
                       "resourceVersion": "1"}}  # fmt: skip
    return {SERVICES: services, ENDPOINT_SLICES: slices, IP_ADDRESS_POOLS: [pool],
            L2_ADVERTISEMENTS: [l2]}  # fmt: skip


def touch(objects: dict[Kind, list[dict[str, Any]]], i: int, rv: int) -> None:
    slices = objects[ENDPOINT_SLICES]
    k = i % len(slices)
    slices[k] = {**slices[k], "metadata": {**slices[k]["metadata"], "resourceVersion": str(rv)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    objects = world(args.services)
    builder = DesiredStateBuilder()
    builder.build(objects)
    incremental = []
    for i in range(args.changes):
        touch(objects, i * 7, 100 + i)
        started = time.process_time()
        builder.build(objects)
        incremental.append(time.process_time() - started)
    full = []
    for i in range(max(3, args.changes // 20)):
        touch(objects, i * 11, 10_000 + i)
        started = time.process_time()
        full_desired_state(objects, None)
        full.append(time.process_time() - started)
    inc_ms = statistics.median(incremental) * 1000
    full_ms = statistics.median(full) * 1000
    print(
        f"{args.services} services, one EndpointSlice change at a time (CPU time, median): "
        f"full {full_ms:.1f} ms, incremental {inc_ms:.2f} ms ({full_ms / inc_ms:.0f}x less); "
        f"at 100 changes/s the incremental builder alone takes {inc_ms * 10:.0f}% of a core"
    )


if __name__ == "__main__":
    main()
