"""The speaker's Kubernetes source on an API: the desired state from the cluster's objects
(MetalLB's candidate rules), ServiceL2Status and `nodeAssigned` for what the node announces,
and the last state kept while the API is away.

The API is the session's real kube-apiserver (`tests.kube_api`); the API going away is in
test_lb_kube_api_restart.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pikube.lb.kube.api import (
    ENDPOINT_SLICES,
    EVENTS,
    IP_ADDRESS_POOLS,
    L2_ADVERTISEMENTS,
    SERVICE_L2_STATUSES,
    SERVICES,
    KubeClient,
    Obj,
)
from pikube.lb.metrics import Registry
from pikube.lb.sources import DesiredState
from pikube.lb.sources.kube import KubeSource
from tests.kube_api import KubeTarget, admin, run, until
from tests.kube_api import fresh_namespace as namespace


@pytest.fixture
def target(kube_api: KubeTarget) -> KubeTarget:
    return kube_api


class FakeSpeakerMetrics:
    """What the speaker binds: its registry and `metallb_speaker_announced`."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.announced = self.registry.gauge(
            "metallb_speaker_announced", "x", "service", "protocol", "node", "ip"
        )


def objects(ns: str) -> list[tuple[Any, Obj]]:
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


async def set_ingress(api: KubeClient, ns: str, name: str, ip: str) -> None:
    obj = await api.request("GET", SERVICES.path(ns, name))
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
    await api.request("PUT", SERVICES.path(ns, name, "status"), body=obj)


@contextlib.asynccontextmanager
async def states(source: KubeSource) -> AsyncIterator[list[DesiredState]]:
    seen: list[DesiredState] = []

    async def consume() -> None:
        async for state in source.updates():
            seen.append(state)

    task = asyncio.create_task(consume())
    try:
        yield seen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _true(value: bool) -> bool:
    return value


def announced_ips(seen: list[DesiredState]) -> list[str]:
    return [ip for a in seen[-1].announcements for ip in a.target.ips] if seen else []


def test_a_service_with_an_ip_in_its_status_is_announced_and_reported(target: KubeTarget) -> None:
    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns:
            for kind, body in objects(ns):
                await api.request("POST", kind.path(ns), body=body)
            metrics = FakeSpeakerMetrics()
            source = KubeSource(node="node02", namespace=ns, interfaces=("eth0",), api=api)
            source.bind(metrics)
            async with states(source) as seen:
                await until(lambda: _true(bool(seen)), what="a first state")
                assert announced_ips(seen) == []  # no IP in its status yet: nothing to announce
                await set_ingress(api, ns, "nginx", "198.51.100.230")
                await until(
                    lambda: _true(announced_ips(seen) == ["198.51.100.230"]),
                    what="the status IP announced",
                )
                assert seen[-1].announcements[0].services == (f"{ns}/nginx",)
                # The speaker says it announces it: a ServiceL2Status and nodeAssigned follow.
                metrics.announced.set(1, f"{ns}/nginx", "layer2", "node02", "198.51.100.230")

                async def reported() -> bool:
                    listed = await api.request("GET", SERVICE_L2_STATUSES.path(ns))
                    return any((i.get("status") or {}).get("node") for i in listed["items"])

                await until(reported, what="a ServiceL2Status")
                (status_obj,) = (await api.request("GET", SERVICE_L2_STATUSES.path(ns)))["items"]
                assert status_obj["metadata"]["name"].startswith("l2-")
                assert status_obj["metadata"]["labels"] == {
                    "metallb.io/node": "node02",
                    "metallb.io/service-name": "nginx",
                    "metallb.io/service-namespace": ns,
                }
                assert status_obj["status"] == {
                    "node": "node02",
                    "serviceName": "nginx",
                    "serviceNamespace": ns,
                    "interfaces": [{"name": "eth0"}],
                }

                async def assigned() -> bool:
                    listed = await api.request("GET", EVENTS.path(ns))
                    return any(
                        e["reason"] == "nodeAssigned"
                        and e["message"] == 'announcing from node "node02" with protocol "layer2"'
                        and e["source"]["component"] == "metallb-speaker"
                        for e in listed["items"]
                    )

                await until(assigned, what="the nodeAssigned event")
                # The speaker stops: the ServiceL2Status goes.
                metrics.announced.values.clear()

                async def gone() -> bool:
                    listed = await api.request("GET", SERVICE_L2_STATUSES.path(ns))
                    return not listed["items"]

                await until(gone, what="the ServiceL2Status deleted")
                # The service is deleted: no announcement.
                await api.request("DELETE", SERVICES.path(ns, "nginx"))
                await until(lambda: _true(announced_ips(seen) == []), what="withdrawn")
        await api.close()

    run(scenario)


def test_candidate_rules_come_from_nodes_and_the_traffic_policy(target: KubeTarget) -> None:
    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns:
            for kind, body in objects(ns):
                if kind is SERVICES:
                    body["spec"]["externalTrafficPolicy"] = "Local"
                await api.request("POST", kind.path(ns), body=body)
            await set_ingress(api, ns, "nginx", "198.51.100.231")
            source = KubeSource(node="node01", namespace=ns, api=api)
            async with states(source) as seen:
                await until(lambda: _true(announced_ips(seen) == ["198.51.100.231"]), what="state")
                # Local: only node02 hosts an endpoint.
                assert seen[-1].announcements[0].target.eligible == frozenset({"node02"})
        await api.close()

    run(scenario)
