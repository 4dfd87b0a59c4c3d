"""The load balancer while the real kube-apiserver restarts: watches cut, the history gone
(etcd compacted, the API server's watch cache new), so resuming from the last resourceVersion
answers 410 Gone and only a relist brings the informers back.

Its own etcd + kube-apiserver on 127.0.0.1 for this module (the tests stop and start the API
server; the session's shared one is left alone). Skipped with PIKUBE_TEST_KUBECONFIG (a cluster
this test cannot restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from pikube.lab.kubernetes.apiserver import ControlPlane, control_plane
from pikube.lb.controller import Controller, ControllerSettings
from pikube.lb.kube.api import (
    ENDPOINT_SLICES,
    IP_ADDRESS_POOLS,
    L2_ADVERTISEMENTS,
    SERVICES,
    Kind,
    KubeClient,
    Obj,
    connect,
)
from pikube.lb.kube.informer import Backoff, Change, Informer, Watched
from pikube.lb.sources import DesiredState
from pikube.lb.sources.kube import KubeSource
from tests.kube_api import fresh_namespace, run, until
from tests.lab.test_lb_kube_source_api import FakeSpeakerMetrics, announced_ips, states

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("PIKUBE_TEST_KUBECONFIG")),
    reason="restarts its own kube-apiserver; PIKUBE_TEST_KUBECONFIG names a cluster it cannot",
)

CONFIGMAPS = Kind("ConfigMap", "", "v1", "configmaps")
VIP = "198.51.100.230"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with control_plane(tmp_path_factory.mktemp("restart-api")) as found:
        yield found


def restart_without_history(plane: ControlPlane) -> None:
    """kube-apiserver killed (its watches cut), etcd compacted, kube-apiserver started again
    with a new watch cache: a watch from any resourceVersion before the compaction answers
    410 Gone."""
    plane.kill_apiserver()
    plane.compact()
    plane.start_apiserver()


async def _true(value: bool) -> bool:
    return value


def cm(name: str, value: str) -> Obj:
    return {"metadata": {"name": name}, "data": {"k": value}}


def test_an_informer_relists_after_410_and_reports_what_it_missed(plane: ControlPlane) -> None:
    async def scenario() -> None:
        api = await connect(plane.kubeconfig)
        changes: list[Change] = []
        async with fresh_namespace(api) as ns:
            await api.request("POST", CONFIGMAPS.path(ns), body=cm("a", "1"))
            informer = Informer(
                api,
                [Watched(CONFIGMAPS, ns)],
                lambda _k, c: changes.append(c),
                backoff=Backoff(first_s=0.05, cap_s=0.5),
            )
            task = asyncio.create_task(informer.run())
            try:
                await asyncio.wait_for(informer.ready.wait(), 10)
                await api.request("POST", CONFIGMAPS.path(ns), body=cm("b", "2"))
                await until(lambda: _true(f"{ns}/b" in informer.objects(CONFIGMAPS)))
                plane.kill_apiserver()
                await until(lambda: _true(informer.stale), what="stale")
                # While it is down, `a` is deleted by someone else (in etcd, as another API
                # server of the cluster would), and the history is compacted away.
                assert plane.delete_keys(f"/registry/configmaps/{ns}/a") == 1
                plane.compact()
                await asyncio.to_thread(plane.start_apiserver)
                await until(lambda: _true(not informer.stale), 30, "fresh again")
                await until(lambda: _true(f"{ns}/a" not in informer.objects(CONFIGMAPS)), 30)
                assert informer.relists >= 1
                kinds = [(c.type.value, c.key) for c in changes]
                assert kinds[:2] == [("ADDED", f"{ns}/a"), ("ADDED", f"{ns}/b")]
                assert ("DELETED", f"{ns}/a") in kinds
                # Changes flow through the new watch.
                await api.request("POST", CONFIGMAPS.path(ns), body=cm("c", "3"))
                await until(lambda: _true(f"{ns}/c" in informer.objects(CONFIGMAPS)))
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await api.close()

    run(scenario)


def seed_objects(ns: str) -> list[tuple[Kind, Obj]]:
    return [
        (IP_ADDRESS_POOLS, {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                            "metadata": {"name": "pool", "namespace": ns},
                            "spec": {"addresses": ["198.51.100.230-198.51.100.250"]}}),
        (L2_ADVERTISEMENTS, {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
                             "metadata": {"name": "l2", "namespace": ns}}),
        (SERVICES, {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "nginx", "namespace": ns},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}],
                             "selector": {"app": "nginx"}}}),
        (ENDPOINT_SLICES, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": "nginx-1", "namespace": ns,
                                        "labels": {"kubernetes.io/service-name": "nginx"}},
                           "addressType": "IPv4",
                           "endpoints": [{"addresses": ["198.51.100.22"], "nodeName": "node02",
                                          "conditions": {"ready": True}}]}),
    ]  # fmt: skip


@contextlib.asynccontextmanager
async def controller_running(api: KubeClient, ns: str) -> AsyncIterator[Controller]:
    controller = Controller(api, ControllerSettings(namespace=ns, metrics_port=None))
    controller.informer.backoff = Backoff(first_s=0.05, cap_s=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        yield controller
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 10)


async def ingress(api: KubeClient, ns: str, name: str) -> list[str]:
    obj = await api.request("GET", SERVICES.path(ns, name))
    entries = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [e["ip"] for e in entries]


def test_api_server_restarted_mid_run_moves_no_ip_and_leaves_no_announcement_gap(
    plane: ControlPlane,
) -> None:
    """The controller and a speaker's source run; kube-apiserver is killed and comes back
    without its history. The IP stays in the Service's status (the controller writes nothing
    new), the speaker's state never loses it, `metallb_k8s_client_config_stale_bool` goes 1
    then 0, and both relisted (their resume from the old resourceVersion got 410)."""

    async def scenario() -> None:
        api = await connect(plane.kubeconfig)
        async with fresh_namespace(api) as ns:
            for kind, body in seed_objects(ns):
                await api.request("POST", kind.path(ns), body=body)
            async with controller_running(api, ns) as controller:

                async def has_ip() -> bool:
                    return await ingress(api, ns, "nginx") == [VIP]

                await until(has_ip, what="the IP in the status")
                metrics = FakeSpeakerMetrics()
                source = KubeSource(node="node02", namespace=ns, api=api)
                source.bind(metrics)
                stale_seen: list[str] = []

                async def watch_stale() -> None:
                    name = "metallb_k8s_client_config_stale_bool "
                    while True:
                        for line in metrics.registry.render().splitlines():
                            value = line.removeprefix(name)
                            if value != line and (not stale_seen or stale_seen[-1] != value):
                                stale_seen.append(value)
                        await asyncio.sleep(0.01)

                async with states(source) as seen:
                    await until(lambda: _true(announced_ips(seen) == [VIP]), what="announced")
                    watcher = asyncio.create_task(watch_stale())
                    writes_before = controller.metrics.updates.get()
                    # A write moves etcd's revision past every informer's resourceVersion (as a
                    # busy cluster's writes do): without it, a kind listed at the very latest
                    # revision could resume from there after the restart without a 410.
                    await api.request("POST", CONFIGMAPS.path(ns), body=cm("marker", "1"))
                    await asyncio.to_thread(restart_without_history, plane)
                    assert source.informer is not None
                    speaker_informer = source.informer
                    await until(lambda: _true(stale_seen[-2:] == ["1", "0"]), 30, "stale 1, 0")
                    assert stale_seen == ["0", "1", "0"]
                    await until(
                        lambda: _true(
                            controller.informer.relists >= 1 and speaker_informer.relists >= 1
                        ),
                        30,
                        f"both informers relisted after 410 ({controller.informer.relists}, "
                        f"{speaker_informer.relists})",
                    )
                    watcher.cancel()
                    assert all(announced_ips([state]) == [VIP] for state in seen), _gaps(seen)
                    assert await ingress(api, ns, "nginx") == [VIP]
                    await asyncio.sleep(0.5)  # anything the controller would write, written
                    assert controller.metrics.updates.get() == writes_before
                    # The caches are current again: a deletion after the restart withdraws.
                    await api.request("DELETE", SERVICES.path(ns, "nginx"))
                    await until(lambda: _true(announced_ips(seen) == []), 15, "withdrawn")
        await api.close()

    run(scenario, timeout_s=120)


def _gaps(seen: list[DesiredState]) -> str:
    return "states announced: " + ", ".join(str(announced_ips([s])) for s in seen)
