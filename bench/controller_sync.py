"""The controller's initial sync with N LoadBalancer Services (goal: 1,000 under 2 s).

Run: .venv/bin/python bench/controller_sync.py [--services 1000] [--json PATH]

The API stand-in runs as its own process on 127.0.0.1 (TLS, client certificates), holding
one IPAddressPool (a /22 of private addresses, data only) and N Services without IPs. Then, in
this process, with the same client:
- list: one GET of every Service (the API's floor, the peer of the figures below), and the
  time the bench itself took to create them one by one (the stand-in's write floor);
- first start: a fresh controller, from start to every Service having its IP in its status
  (cache sync, allocation, N status writes);
- restart: a second controller over the same Services (all holding IPs): start to synced,
  which is re-adopting every IP and writing nothing.
Prints each time, and ratios to the list; never fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.kube_api import apply_crds
from tests.unit.kubeapi.support import write_pki

from pikube.lb.controller import Controller, ControllerSettings
from pikube.lb.kube.api import IP_ADDRESS_POOLS, NAMESPACES, SERVICES, KubeClient, connect

NAMESPACE = "metallb-system"


async def timed_controller(api: KubeClient, count: int) -> tuple[float, int]:
    controller = Controller(api, ControllerSettings(namespace=NAMESPACE, metrics_port=None,
                                                    create_memberlist_secret=False))  # fmt: skip
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(controller.run(stop))
    await asyncio.wait_for(controller.synced.wait(), 120)
    elapsed = time.perf_counter() - started
    writes = int(controller.metrics.updates.get())
    allocated = len(controller.allocator.result().allocations) if controller.allocator else 0
    stop.set()
    await asyncio.wait_for(task, 30)
    assert allocated == count, f"only {allocated} of {count} services got an IP"
    return elapsed, writes


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
        created = time.perf_counter()
        for i in range(count):
            await api.request("POST", SERVICES.path("default"), body={
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})  # fmt: skip
        create_s = time.perf_counter() - created
        started = time.perf_counter()
        listed = await api.request("GET", SERVICES.path())
        list_s = time.perf_counter() - started
        assert len(listed["items"]) >= count
        first_s, first_writes = await timed_controller(api, count)
        restart_s, restart_writes = await timed_controller(api, count)
        return {
            "services": count,
            "list_s": round(list_s, 4),
            "create_s": round(create_s, 3),
            "first_start_s": round(first_s, 3),
            "first_start_writes": first_writes,
            "restart_s": round(restart_s, 3),
            "restart_writes": restart_writes,
            "ratio_first_to_list": round(first_s / list_s, 1),
            "ratio_restart_to_list": round(restart_s / list_s, 1),
        }
    finally:
        await api.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = write_pki(Path(tmp) / "pki")
        port_file = Path(tmp) / "port"
        server = subprocess.Popen(
            [sys.executable, "-m", "pikube.lab.kubeapi", "--listen", "127.0.0.1:0",
             "--pki-dir", str(files.directory), "--port-file", str(port_file)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the API stand-in did not start")
                time.sleep(0.05)
            kubeconfig = files.kubeconfig(int(port_file.read_text()))
            result = asyncio.run(scenario(kubeconfig, args.services))
        finally:
            server.terminate()
            server.wait(10)
    print(
        f"{result['services']} services: list {result['list_s'] * 1000:.0f} ms, created one by "
        f"one in {result['create_s']:.2f} s; "
        f"first start {result['first_start_s']:.2f} s ({result['first_start_writes']} status "
        f"writes, {result['ratio_first_to_list']}x the list); restart "
        f"{result['restart_s']:.2f} s ({result['restart_writes']} writes, "
        f"{result['ratio_restart_to_list']}x the list)"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
