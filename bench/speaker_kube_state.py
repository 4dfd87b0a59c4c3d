"""The speaker's desired state from the API's objects: full vs incremental, N Services.

Run: .venv/bin/python bench/speaker_kube_state.py [--services 1000] [--changes 200]

N LoadBalancer Services, each with one EndpointSlice, in one pool; then CHANGES EndpointSlice
updates one at a time (as a busy cluster sends them), each given to the builder as the
informer gives it (`apply`, then `state`): a Pod IP changing (no announcement changes: the
common case) and an endpoint moving node (its Service's group recomputed). Prints the time per
change of the full recomputation (the peer) and of pikube.lb.kube.desired's incremental
builder, their ratio, and the CPU share the builder would take at 100 EndpointSlice updates per
second (the speaker process as a whole: bench/speaker_kube_cpu.py). Never fails on time.
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


def touch(objects: dict[Kind, list[dict[str, Any]]], i: int, rv: int, node: str = "") -> Any:
    """A new version of slice i: a new Pod IP, and (with `node`) its endpoint on that node."""
    slices = objects[ENDPOINT_SLICES]
    k = i % len(slices)
    endpoint = {**slices[k]["endpoints"][0], "addresses": [f"10.244.{rv // 256 % 256}.{rv % 256}"]}
    if node:
        endpoint["nodeName"] = node
    slices[k] = {**slices[k], "metadata": {**slices[k]["metadata"], "resourceVersion": str(rv)},
                 "endpoints": [endpoint]}  # fmt: skip
    return slices[k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    objects = world(args.services)
    builder = DesiredStateBuilder()
    builder.build(objects)
    incremental: list[float] = []  # a Pod IP changed: no announcement changes
    moved: list[float] = []  # the endpoint moved node: its Service's announcement changes
    for i in range(args.changes):
        for node, times in (("", incremental), (f"node0{2 + i % 2}", moved)):
            changed = touch(objects, i * 7, 100 + 2 * i + (1 if node else 0), node)
            started = time.process_time()
            builder.apply(ENDPOINT_SLICES, f"default/{changed['metadata']['name']}", changed)
            builder.state()
            times.append(time.process_time() - started)
    full = []
    for i in range(max(3, args.changes // 20)):
        touch(objects, i * 11, 10_000 + i)
        started = time.process_time()
        full_desired_state(objects, None)
        full.append(time.process_time() - started)
    inc_ms = statistics.median(incremental) * 1000
    moved_ms = statistics.median(moved) * 1000
    full_ms = statistics.median(full) * 1000
    print(
        f"{args.services} services, one EndpointSlice change at a time (CPU time, median): "
        f"full recomputation {full_ms:.1f} ms; incremental: a Pod IP changed "
        f"{inc_ms:.3f} ms ({full_ms / inc_ms:.0f}x less), the endpoint moved node "
        f"{moved_ms:.2f} ms ({full_ms / moved_ms:.0f}x less); at 100 changes/s the builder "
        f"alone takes {inc_ms * 10:.1f}% / {moved_ms * 10:.1f}% of a core"
    )


if __name__ == "__main__":
    main()
