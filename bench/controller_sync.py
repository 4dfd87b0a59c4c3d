"""The controller's initial sync with N LoadBalancer Services (goal: 1,000 under 2 s).

Run: .venv/bin/python bench/controller_sync.py [--services 1000] [--runs 3] [--json PATH]

A real etcd and kube-apiserver (pikube.lab.kubernetes.apiserver) run on 127.0.0.1, holding
one IPAddressPool (a /22 of private addresses, data only) and N Services without IPs. Then, in
this process, with the same client:
- list: one GET of every Service (the peer of the restart), and the time the bench itself
  took to create them, 16 at a time (the API server's write throughput);
- status writes: the bench writes each Service's status once (a condition), WRITERS at a
  time, with the same client, then lists them: what the controller's writes (and the check
  that they are visible) cost the API alone: the API's floor, the peer of the first start;
- first start (the initial sync): a fresh controller with its own client (kubeconfig, TLS),
  from its start to every Service's IP written and visible via the API (a list by another
  client, after the controller says it has synced, is part of the time): cache sync,
  allocation, N status writes; its N Events follow (held while the statuses are written) and
  the time until they are all written is printed apart;
- restart: a second controller over the same Services (all holding IPs): start to synced,
  which is re-adopting every IP and writing nothing.
Prints each time and its ratio to its peer, per run and the medians (each run on a fresh
control plane); never fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.kube_api import apply_crds

from pikube.lab.kubernetes.apiserver import control_plane
from pikube.lb.controller import Controller, ControllerSettings
from pikube.lb.kube.api import IP_ADDRESS_POOLS, NAMESPACES, SERVICES, KubeClient, connect

NAMESPACE = "metallb-system"
WRITERS = 16  # concurrent creates, as the controller's concurrent status writes


async def timed_controller(kubeconfig: Path, lister: KubeClient, count: int) -> dict[str, Any]:
    """Initial sync, honestly: from the controller's start (its own client: kubeconfig, TLS
    connections) to every Service's IP written and visible through the API (a list by
    another client after the controller says it has synced: its time is counted too). Then
    how long the Events took after that (sent after the statuses, off the critical path)."""
    started = time.perf_counter()
    api = await connect(kubeconfig)
    controller = Controller(api, ControllerSettings(namespace=NAMESPACE, metrics_port=None,
                                                    create_memberlist_secret=False))  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        await asyncio.wait_for(controller.synced.wait(), 120)
        listed = await lister.request("GET", SERVICES.path("default"))
        elapsed = time.perf_counter() - started
        with_ip = sum(1 for item in listed["items"] if ((item.get("status") or {}).get(
            "loadBalancer") or {}).get("ingress"))  # fmt: skip
        recorder = controller.recorder
        while not recorder.idle:
            await asyncio.sleep(0.01)
        events_s = time.perf_counter() - started
        writes = int(controller.metrics.updates.get())
        stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        await api.close()
    assert with_ip == count, f"only {with_ip} of {count} services have an IP in their status"
    return {"s": elapsed, "writes": writes, "events_s": events_s,
            "events_written": recorder.written, "events_dropped": recorder.dropped}  # fmt: skip


async def scenario(kubeconfig: Path, count: int) -> dict[str, Any]:
    api = await connect(kubeconfig)
    try:
        await apply_crds(api)
        await api.request("POST", NAMESPACES.path(), body={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})  # fmt: skip
        await api.request("POST", IP_ADDRESS_POOLS.path(NAMESPACE), body={
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "big", "namespace": NAMESPACE},
            "spec": {"addresses": ["10.200.0.0/22"]}})  # fmt: skip
        semaphore = asyncio.Semaphore(WRITERS)

        async def create(i: int) -> None:
            async with semaphore:
                await api.request("POST", SERVICES.path("default"), body={
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})  # fmt: skip

        created = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(count)))
        create_s = time.perf_counter() - created
        started = time.perf_counter()
        listed = await api.request("GET", SERVICES.path())
        list_s = time.perf_counter() - started
        assert len(listed["items"]) >= count

        async def write_status(item: dict[str, Any]) -> None:
            # What the controller's write costs the API, without any deciding: one PUT of the
            # status subresource per Service (a condition the controller does not read).
            meta = item["metadata"]
            body = {**item, "apiVersion": "v1", "kind": "Service", "status": {"conditions": [
                {"type": "example.com/Bench", "status": "True", "reason": "Bench", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}  # fmt: skip
            async with semaphore:
                await api.request(
                    "PUT", SERVICES.path(meta["namespace"], meta["name"], "status"), body=body
                )

        mine = [i for i in listed["items"] if i["metadata"]["namespace"] == "default"
                and i["metadata"]["name"] != "kubernetes"]  # fmt: skip
        started = time.perf_counter()
        await asyncio.gather(*(write_status(item) for item in mine))
        await api.request("GET", SERVICES.path("default"))  # visible, as the controller's
        status_writes_s = time.perf_counter() - started
        first = await timed_controller(kubeconfig, api, count)
        restart = await timed_controller(kubeconfig, api, count)
        first_s, first_writes = first["s"], first["writes"]
        restart_s, restart_writes = restart["s"], restart["writes"]
        return {
            "services": count,
            "list_s": round(list_s, 4),
            "create_s": round(create_s, 3),
            "api_writes_per_s": round(count / create_s),
            "status_writes_s": round(status_writes_s, 3),
            "ratio_first_to_status_writes": round(first_s / status_writes_s, 2),
            "first_start_s": round(first_s, 3),
            "first_start_writes": first_writes,
            "first_start_events_done_s": round(first["events_s"], 3),
            "first_start_events": [first["events_written"], first["events_dropped"]],
            "restart_s": round(restart_s, 3),
            "restart_writes": restart_writes,
            "ratio_first_to_list": round(first_s / list_s, 1),
            "ratio_restart_to_list": round(restart_s / list_s, 1),
        }
    finally:
        await api.close()


def one_run(services: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, control_plane(Path(tmp)) as plane:
        startup = plane.startup_s
        result = asyncio.run(scenario(plane.kubeconfig, services))
        result["apiserver_start_s"] = round(sum(startup.values()), 2)
    result["load_average"] = round(os.getloadavg()[0], 2)
    print(
        f"{result['services']} services: list {result['list_s'] * 1000:.0f} ms, created "
        f"{WRITERS} at a time in {result['create_s']:.2f} s ({result['api_writes_per_s']} "
        "writes/s); the same number of status writes by the bench itself "
        f"{result['status_writes_s']:.2f} s (the peer); "
        f"first start {result['first_start_s']:.2f} s ({result['first_start_writes']} status "
        f"writes, {result['ratio_first_to_status_writes']}x the peer; its Events done at "
        f"{result['first_start_events_done_s']:.2f} s); restart "
        f"{result['restart_s']:.2f} s ({result['restart_writes']} writes, "
        f"{result['ratio_restart_to_list']}x the list); load average "
        f"{result['load_average']}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="each on a fresh control plane")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    runs = [one_run(args.services) for _ in range(args.runs)]
    median = {
        name: round(statistics.median(r[name] for r in runs), 3)
        for name in ("status_writes_s", "first_start_s", "ratio_first_to_status_writes",
                     "first_start_events_done_s", "restart_s", "list_s")
    }  # fmt: skip
    summary = {
        "apiserver": "kube-apiserver v1.31.5 + etcd v3.5.15 on 127.0.0.1",
        "services": args.services,
        "runs": runs,
        "median": median,
    }
    print(
        f"{summary['apiserver']}, median of {args.runs} runs: first start "
        f"{median['first_start_s']:.2f} s, the API's floor (the bench's own status writes) "
        f"{median['status_writes_s']:.2f} s, ratio {median['ratio_first_to_status_writes']}; "
        f"restart {median['restart_s']:.2f} s"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
