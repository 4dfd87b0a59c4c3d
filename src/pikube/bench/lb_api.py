"""`pikube bench lb-api`: how fast a Service created through the Kubernetes API gets its IP,
and serves the client, with pikube's controller and `--source kube` speakers in a lab.

Per run, from the lab's `client` host (kubectl's place in the seed): the bench opens a watch on
the Service's name, creates a `type: LoadBalancer` Service (its EndpointSlice, and kube-proxy's
rules for the IP, are already in place), and measures from the moment the create is sent (the
real API server's watch may show the Service before the create's answer arrives):
- api_ms: until its own watch shows the Service (the API's floor: the peer every figure is
  compared with, measured in the same run);
- ip_ms: until the watch shows 198.51.100.230 in status.loadBalancer.ingress (the controller);
- write_ms: then, apart, from the bench's own status write on the Service (a condition) to its
  watch showing it: the API's floor for the controller's step, so that `ip_floor_ms` =
  api_ms + write_ms is the API's own floor for ip_ms (what is left above it is pikube's);
- http_ms: until GET http://198.51.100.230/ answers 200 (the speakers: election, ARP), probing
  every 2 ms with fresh connections. The client's ARP entry for the IP is flushed before each
  run, so an old entry cannot answer for the new announcement.
Then the bench deletes the Service through the API and measures withdraw_ms: until no speaker
says it announces the IP (the fault "a Service deleted while announced is withdrawn within one
heartbeat interval": compare with the speakers' 60 ms interval).

The API is a real etcd v3.5.15 and kube-apiserver v1.31.5 (built here) running on master
(pikube.lab.kubernetes.apiserver.start_in_lab), without kubelets, kube-proxy or
kube-controller-manager: the lab registers the Nodes, publishes the EndpointSlice and installs
the Service's traffic rules for the IP itself (they exist from the start), so http_ms counts
the controller and the speakers, not kube-proxy's reaction.

Pure: `percentile`, `summarise`. The rest drives a lab.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pikube.errors import PikubeError
from pikube.helpers import wait_until
from pikube.lab import state
from pikube.lab.kubernetes import apiserver as control_plane
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.services import seed_service
from pikube.lab.services.lb_kube import KubeLoadBalancer, seed_configuration
from pikube.lb.kube.api import SERVICES, KubeClient, connect

VIP = "198.51.100.230"
API = "kube-apiserver v1.31.5 + etcd v3.5.15 on master (real; no kubelets)"
SERVICE = "bench"
NAMESPACE = "default"
BACKEND = "node02"


@dataclass(frozen=True)
class ApiRun:
    run: int
    api_ms: float
    ip_ms: float
    http_ms: float
    write_ms: float = 0.0  # the API's floor for the controller's step: a status write, watched
    withdraw_ms: float = 0.0  # the Service deleted -> no speaker announces its IP
    load: float = 0.0  # the machine's 1-minute load average after the run

    @property
    def ip_floor_ms(self) -> float:
        """The API's own floor for ip_ms: the create seen, then one status write seen."""
        return self.api_ms + self.write_ms


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 100 samples is the 99th smallest)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarise(runs: Sequence[ApiRun]) -> dict[str, Any]:
    """The bench's JSON: samples, p50, p99 and max per figure, and ratios to the API floor."""
    figures: dict[str, Any] = {}
    names = ("api_ms", "write_ms", "ip_floor_ms", "ip_ms", "http_ms", "withdraw_ms", "load")
    for name in names:
        samples = [round(getattr(r, name), 2) for r in runs]
        figures[name] = {
            "samples": samples,
            "p50": round(statistics.median(samples), 2),
            "p99": round(percentile(samples, 0.99), 2),
            "max": max(samples),
        }
    floor = figures["api_ms"]["p50"] or 1e-9
    ip_floor = figures["ip_floor_ms"]["p50"] or 1e-9
    return {
        "api": API,
        "runs": len(runs),
        "figures": figures,
        "ratio_p50_to_api": {
            name: round(figures[name]["p50"] / floor, 1) for name in ("ip_ms", "http_ms")
        },
        "ratio_p50_ip_to_ip_floor": round(figures["ip_ms"]["p50"] / ip_floor, 2),
    }


def service_body(selector: str = SERVICE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": selector},
            "ports": [{"name": "http", "port": 80, "targetPort": 80}],
        },
    }


async def _http_ok(timeout_s: float = 0.05) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(VIP, 80)
            try:
                writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                line = await reader.readline()
            finally:
                writer.close()
        return line.startswith(b"HTTP/1.1 200")
    except (OSError, TimeoutError):
        return False


async def measure_once(api: KubeClient, run: int, selector: str = SERVICE) -> ApiRun:
    """One run, from inside the client's namespace (the Service selects Pods labelled
    app=`selector`)."""
    loop = asyncio.get_running_loop()
    seen: dict[str, float] = {}
    listed = await api.request(
        "GET", SERVICES.path(NAMESPACE), query={"fieldSelector": f"metadata.name={SERVICE}"}
    )
    version = str((listed.get("metadata") or {}).get("resourceVersion", ""))

    latest: dict[str, Any] = {}

    async def watch() -> None:
        query = {"fieldSelector": f"metadata.name={SERVICE}", "resourceVersion": version}
        async for event in api.watch(SERVICES.path(NAMESPACE), query, idle_timeout_s=30):
            obj = event.get("object") or {}
            now = loop.time()
            seen.setdefault("api", now)
            ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if any(e.get("ip") == VIP for e in ingress):
                seen["ip"] = now
                latest.update(obj)
                return

    async def http() -> None:
        while not await _http_ok():
            await asyncio.sleep(0.002)
        seen["http"] = loop.time()

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.05)  # the watch is open before the create
    # From the moment the create is sent: the real API server's watch can deliver the new
    # Service before the create's own answer arrives.
    created = loop.time()
    await api.request("POST", SERVICES.path(NAMESPACE), body=service_body(selector))
    await asyncio.wait_for(asyncio.gather(watcher, http()), 30)
    write_ms = await asyncio.wait_for(watched_write(api, latest), 30)
    return ApiRun(
        run=run,
        api_ms=(seen["api"] - created) * 1000,
        ip_ms=(seen["ip"] - created) * 1000,
        http_ms=(seen["http"] - created) * 1000,
        write_ms=write_ms,
        load=os.getloadavg()[0],
    )


async def watched_write(api: KubeClient, obj: dict[str, Any]) -> float:
    """ms from sending one status write (a condition nobody reads) on the Service to the
    bench's watch showing it: what the controller's step (its write, seen by a watcher) costs
    the API alone, measured in the same run."""
    loop = asyncio.get_running_loop()
    meta = obj["metadata"]
    query = {
        "fieldSelector": f"metadata.name={SERVICE}",
        "resourceVersion": meta["resourceVersion"],
    }
    condition = {"type": "example.com/BenchWrite", "status": "True", "reason": "Bench",
                 "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip

    async def seen() -> float:
        async for event in api.watch(SERVICES.path(NAMESPACE), query, idle_timeout_s=30):
            conditions = ((event.get("object") or {}).get("status") or {}).get("conditions")
            if any(c.get("type") == condition["type"] for c in conditions or []):
                return loop.time()
        raise PikubeError("bench lb-api: the watch ended before the status write showed")

    watcher = asyncio.create_task(seen())
    await asyncio.sleep(0.05)  # the watch is open before the write
    status = {**(obj.get("status") or {}), "conditions": [condition]}
    sent = loop.time()
    await api.request(
        "PUT",
        SERVICES.path(NAMESPACE, SERVICE, "status"),
        body={**obj, "apiVersion": "v1", "kind": "Service", "status": status},
    )
    return (await watcher - sent) * 1000


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    wait_until(condition, timeout_s, what, error=lambda text: PikubeError(f"bench lb-api: {text}"))


def prepare(lab: Lab) -> KubeLoadBalancer:
    """A real etcd + kube-apiserver on master, pikube's CRDs and the seed's pool, the
    controller, the speakers, nginx behind the VIP, and the bench Service's EndpointSlice."""
    api = control_plane.start_in_lab(lab)
    balancer = KubeLoadBalancer(
        lab, api.kubeconfig, state.lab_dir(lab.name) / "bench-lb-api", stand_in=False
    )
    balancer.apply_crds()
    balancer.apply(seed_configuration())
    balancer.start_controller()
    balancer.start_speakers()
    seed_service.publish(lab, backend_host=BACKEND)
    balancer.publish_endpoints(SERVICE, NAMESPACE, BACKEND)
    return balancer


def run_bench(
    lab: Lab, runs: int, progress: Callable[[ApiRun], None] = lambda _r: None
) -> list[ApiRun]:
    """`runs` create-to-IP and create-to-HTTP-200 runs in an up lab."""
    balancer = prepare(lab)
    results: list[ApiRun] = []

    def withdrawn() -> bool:
        found = balancer.kubectl("get", "service", SERVICE, "-n", NAMESPACE, check=False)
        return found.returncode != 0 and not balancer.announcers(VIP)

    time.sleep(1.0)  # let the speakers finish joining (their start-up grace)
    for run in range(1, runs + 1):
        _wait(withdrawn, 15, "the previous run's IP to be withdrawn")
        with netns.entered(lab.namespace(seed_service.CLIENT)):
            subprocess.run(["ip", "neigh", "flush", "to", VIP], check=False)

            async def once(run: int = run) -> ApiRun:
                api = await connect(balancer.kubeconfig)
                try:
                    await api.request("GET", "/version")  # connected and warm
                    result = await measure_once(api, run)
                    return replace(result, withdraw_ms=await deleted(api, balancer))
                finally:
                    await api.close()

            result = asyncio.run(once())
        results.append(result)
        progress(result)
    return results


async def deleted(api: KubeClient, balancer: KubeLoadBalancer, timeout_s: float = 15.0) -> float:
    """ms from the Service's DELETE being sent to no speaker announcing its IP any more (their
    status pages polled back to back: an upper bound, within a few ms)."""
    loop = asyncio.get_running_loop()
    sent = loop.time()
    await api.request("DELETE", SERVICES.path(NAMESPACE, SERVICE))
    while balancer.announcers(VIP):  # blocking on purpose: nothing else runs meanwhile
        if loop.time() - sent > timeout_s:
            raise PikubeError(f"bench lb-api: {VIP} still announced {timeout_s:g} s after delete")
    return (loop.time() - sent) * 1000


def write_json(path: Path, summary: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(path)
