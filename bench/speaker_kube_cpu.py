"""The speaker's Kubernetes source under EndpointSlice churn, on a real API server: CPU share.

Run: .venv/bin/python bench/speaker_kube_cpu.py [--services 1000] [--rate 100] [--seconds 10]

A real etcd + kube-apiserver (pikube.lab.kubernetes.apiserver) on 127.0.0.1 holds a pool,
an L2Advertisement, N LoadBalancer Services with IPs in their status and one EndpointSlice
each. A child process runs the speaker's source (`KubeSource`: the informers on every kind the
speaker watches, the desired-state builder, the ServiceL2Status reporting loop) and consumes
its states, as the speaker does. Then this process updates EndpointSlices at RATE per second
for SECONDS (a new Pod IP each time: the common update, which changes no announcement), and
the child's CPU time (utime + stime from /proc) is read over that window and over an idle
window of the same length. kube-apiserver's CPU over the busy window is the peer (the API
server doing the same updates). Goal: the speaker under 5 % of a core at 100 updates/s.
Prints figures, JSON with --json; never fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.kube_api import apply_crds

from pikube.lab.kubernetes.apiserver import control_plane
from pikube.lb.kube.api import (
    ENDPOINT_SLICES,
    IP_ADDRESS_POOLS,
    L2_ADVERTISEMENTS,
    NAMESPACES,
    SERVICES,
    KubeClient,
    connect,
)

NAMESPACE = "metallb-system"
APPS = "default"
WRITERS = 16


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slice_body(i: int, address: str) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"s{i}-x", "namespace": APPS,
                         "labels": {"kubernetes.io/service-name": f"s{i}"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "nodeName": "node01",
                           "conditions": {"ready": True}}],
            "ports": [{"port": 80, "protocol": "TCP"}]}  # fmt: skip


async def populate(api: KubeClient, count: int) -> None:
    await apply_crds(api)
    await api.request("POST", NAMESPACES.path(), body={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})  # fmt: skip
    await api.request("POST", IP_ADDRESS_POOLS.path(NAMESPACE), body={
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "big", "namespace": NAMESPACE},
        "spec": {"addresses": ["10.200.0.0/16"]}})  # fmt: skip
    await api.request("POST", L2_ADVERTISEMENTS.path(NAMESPACE), body={
        "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
        "metadata": {"name": "l2", "namespace": NAMESPACE}})  # fmt: skip
    semaphore = asyncio.Semaphore(WRITERS)

    async def one(i: int) -> None:
        async with semaphore:
            created = await api.request("POST", SERVICES.path(APPS), body={
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})  # fmt: skip
            created["status"] = {
                "loadBalancer": {"ingress": [{"ip": f"10.200.{i // 256}.{i % 256}"}]}
            }
            await api.request("PUT", SERVICES.path(APPS, f"s{i}", "status"), body=created)
            await api.request("POST", ENDPOINT_SLICES.path(APPS), body=slice_body(i, "10.244.0.1"))

    await asyncio.gather(*(one(i) for i in range(count)))


async def churn(api: KubeClient, count: int, rate: float, seconds: float) -> int:
    """EndpointSlice updates at `rate` per second for `seconds`; returns how many were done."""
    loop = asyncio.get_running_loop()
    semaphore = asyncio.Semaphore(WRITERS)
    done = 0

    async def update(n: int) -> None:
        nonlocal done
        i = n % count
        address = f"10.244.{1 + n // 250 % 250}.{1 + n % 250}"
        patch = {"endpoints": slice_body(i, address)["endpoints"]}
        async with semaphore:
            await api.request("PATCH", ENDPOINT_SLICES.path(APPS, f"s{i}-x"), body=patch,
                              content_type="application/merge-patch+json")  # fmt: skip
        done += 1

    started = loop.time()
    tasks = []
    n = 0
    while loop.time() - started < seconds:
        due = started + n / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        tasks.append(asyncio.create_task(update(n)))
        n += 1
    await asyncio.gather(*tasks)
    return done


def child(kubeconfig: Path) -> None:
    """The speaker's source, its states consumed; prints `ready` at its first state."""
    from tests.lab.test_lb_kube_source_api import FakeSpeakerMetrics  # noqa: PLC0415

    from pikube.lb.sources.kube import KubeSource  # noqa: PLC0415

    async def main() -> None:
        source = KubeSource(node="node01", kubeconfig=kubeconfig, namespace=NAMESPACE)
        source.bind(FakeSpeakerMetrics())
        said = False
        async for state in source.updates():
            if not said and len(state.announcements) > 0:
                print(f"ready {len(state.announcements)}", flush=True)
                said = True

    if os.environ.get("PIKUBE_BENCH_PROFILE"):
        import cProfile  # noqa: PLC0415
        import signal  # noqa: PLC0415

        profiler = cProfile.Profile()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        profiler.enable()
        try:
            asyncio.run(main())
        finally:
            profiler.disable()
            profiler.dump_stats(os.environ["PIKUBE_BENCH_PROFILE"])
        return
    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--child", dest="child_kubeconfig", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_kubeconfig:
        child(Path(args.child_kubeconfig))
        return
    with tempfile.TemporaryDirectory() as tmp, control_plane(Path(tmp)) as plane:

        async def setup() -> None:
            api = await connect(plane.kubeconfig)
            try:
                await populate(api, args.services)
            finally:
                await api.close()

        asyncio.run(setup())
        speaker = subprocess.Popen(
            [sys.executable, __file__, "--child", str(plane.kubeconfig)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert speaker.stdout is not None
            line = speaker.stdout.readline()
            if not line.startswith("ready"):
                raise SystemExit("the speaker's source did not start")
            time.sleep(2.0)  # past its start-up work
            idle_before = cpu_s(speaker.pid)
            time.sleep(args.seconds)
            idle_s = cpu_s(speaker.pid) - idle_before
            assert plane.apiserver is not None
            api_before = cpu_s(plane.apiserver.pid)
            busy_before = cpu_s(speaker.pid)
            wall = time.monotonic()

            async def busy() -> int:
                api = await connect(plane.kubeconfig)
                try:
                    return await churn(api, args.services, args.rate, args.seconds)
                finally:
                    await api.close()

            done = asyncio.run(busy())
            time.sleep(0.5)  # the last events reach the speaker
            wall = time.monotonic() - wall
            busy_s = cpu_s(speaker.pid) - busy_before
            api_s = cpu_s(plane.apiserver.pid) - api_before
        finally:
            speaker.terminate()
            speaker.wait(10)
    result = {
        "apiserver": "kube-apiserver v1.31.5 + etcd v3.5.15 on 127.0.0.1",
        "services": args.services,
        "updates": done,
        "updates_per_s": round(done / args.seconds, 1),
        "speaker_idle_cpu_pct": round(100 * idle_s / args.seconds, 2),
        "speaker_busy_cpu_pct": round(100 * busy_s / wall, 2),
        "apiserver_busy_cpu_pct": round(100 * api_s / wall, 1),
    }
    print(
        f"{result['services']} services, {done} EndpointSlice updates at "
        f"{result['updates_per_s']}/s on {result['apiserver']}: speaker source "
        f"{result['speaker_busy_cpu_pct']}% of a core (idle {result['speaker_idle_cpu_pct']}%); "
        f"kube-apiserver {result['apiserver_busy_cpu_pct']}% over the same window"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
