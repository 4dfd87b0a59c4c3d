"""The BGP speaker on the Kubernetes API (`pikube lb bgp-speaker --source kube`): its input from
the cluster's objects, and a ServiceBGPStatus per advertised service that follows the sessions.

The API is the session's (`kube_api`: a real etcd + kube-apiserver on 127.0.0.1 by default,
or the cluster of PIKUBE_TEST_KUBECONFIG); the BGP router is a scripted peer on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
from typing import Any

import pytest

from pikube.lb.bgp import codec
from pikube.lb.bgp.speaker import BgpSpeaker, BgpSpeakerSettings
from pikube.lb.kube.api import (
    BGP_ADVERTISEMENTS,
    BGP_PEERS,
    ENDPOINT_SLICES,
    IP_ADDRESS_POOLS,
    SERVICE_BGP_STATUSES,
    SERVICES,
    ApiStatusError,
    KubeClient,
    Obj,
)
from pikube.lb.sources.kube_bgp import KubeBgpSource
from tests.kube_api import KubeTarget, admin, run, until
from tests.kube_api import fresh_namespace as namespace

VIP = ipaddress.ip_network("203.0.113.10/32")


@pytest.fixture
def target(kube_api: KubeTarget) -> KubeTarget:
    """The session's API (tests/conftest.py): the tests keep to their own namespaces."""
    return kube_api


class Router:
    """A BGP peer on 127.0.0.1 that can be taken down and brought back."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.routes: set[codec.IPNetwork] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        caps = (codec.Multiprotocol(codec.IPV4_UNICAST), codec.FourOctetAS(64496))
        writer.write(codec.encode(codec.Open(64496, 9, ipaddress.IPv4Address("10.0.0.1"), caps)))
        writer.write(codec.encode(codec.Keepalive()))
        stream = codec.Reader()
        try:
            while data := await reader.read(65536):
                for frame in stream.feed(data):
                    message = codec.decode(frame)
                    if isinstance(message, codec.Update):
                        self.routes.difference_update(message.withdrawn_all())
                        self.routes.update(message.announced())
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def up(self) -> None:
        # BGPPeer.peerPort allows 1-16384 (as MetalLB), below the ephemeral range.
        candidates = [self.port] if self.port else random.sample(range(10000, 16385), 50)
        for port in candidates:
            try:
                self.server = await asyncio.start_server(self.handle, "127.0.0.1", port)
                self.port = port
                return
            except OSError:
                continue
        raise AssertionError("no free port in 10000-16384")

    async def down(self) -> None:
        """The router goes away: no more connections, the current ones cut."""
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        self.routes.clear()


def objects(ns: str, port: int) -> list[tuple[Any, Obj]]:
    return [
        (IP_ADDRESS_POOLS, {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                            "metadata": {"name": "bgp-pool", "namespace": ns},
                            "spec": {"addresses": ["203.0.113.0/24"]}}),
        (BGP_PEERS, {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
                     "metadata": {"name": "router", "namespace": ns},
                     "spec": {"myASN": 64497, "peerASN": 64496, "peerAddress": "127.0.0.1",
                              "peerPort": port, "holdTime": "9s"}}),
        (BGP_ADVERTISEMENTS, {"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
                              "metadata": {"name": "adv", "namespace": ns},
                              "spec": {"ipAddressPools": ["bgp-pool"]}}),
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


def stale_status(ns: str, node: str, service: str) -> Obj:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "ServiceBGPStatus",
        "metadata": {
            "generateName": "bgp-",
            "namespace": ns,
            "labels": {
                "metallb.io/node": node,
                "metallb.io/service-name": service,
                "metallb.io/service-namespace": ns,
            },
        },
    }


async def statuses(api: KubeClient, ns: str) -> list[Obj]:
    items: list[Obj] = (await api.request("GET", SERVICE_BGP_STATUSES.path(ns)))["items"]
    return items


async def set_ingress(api: KubeClient, ns: str, name: str, ip: str) -> None:
    obj = await api.request("GET", SERVICES.path(ns, name))
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
    await api.request("PUT", SERVICES.path(ns, name, "status"), body=obj)


def test_service_bgp_status_follows_the_sessions_and_the_service(target: KubeTarget) -> None:
    async def scenario() -> None:
        api = await admin(target)
        router = Router()
        await router.up()
        async with namespace(api) as ns:
            for kind, body in objects(ns, router.port):
                await api.request("POST", kind.path(ns), body=body)
            # Left by an earlier run of this node (a service it no longer announces), and
            # another node's: the first goes at start, the second stays.
            await api.request(
                "POST", SERVICE_BGP_STATUSES.path(ns), body=stale_status(ns, "node01", "old")
            )
            other = await api.request(
                "POST", SERVICE_BGP_STATUSES.path(ns), body=stale_status(ns, "node02", "nginx")
            )

            async def mine() -> list[Obj]:
                return [
                    s
                    for s in await statuses(api, ns)
                    if s["metadata"]["labels"]["metallb.io/node"] == "node01"
                ]

            async def peers_are(peers: list[str] | None) -> bool:
                found = await mine()
                if peers is None:
                    return not found
                return len(found) == 1 and (found[0].get("status") or {}).get("peers") == peers

            settings = BgpSpeakerSettings(node="node01", metrics_port=None, connect_retry_s=0.05)
            source = KubeBgpSource(node="node01", namespace=ns, api=api)
            speaker = BgpSpeaker(settings, source)
            stop = asyncio.Event()
            task = asyncio.create_task(speaker.run(stop))
            try:
                await until(lambda: peers_are(None), what="the stale ServiceBGPStatus deleted")
                # No IP in the Service's status yet: nothing announced, no status.
                await asyncio.sleep(0.5)
                assert not router.routes
                assert not await mine()
                await set_ingress(api, ns, "nginx", "203.0.113.10")

                async def announced() -> bool:
                    return VIP in router.routes

                await until(announced, what="the route at the router")
                await until(lambda: peers_are(["router"]), what="a ServiceBGPStatus")
                metrics = speaker.registry.render()
                assert "metallb_k8s_client_config_loaded_bool 1" in metrics
                assert "metallb_k8s_client_config_stale_bool 0" in metrics
                (obj,) = await mine()
                assert obj["metadata"]["name"].startswith("bgp-")
                assert obj["metadata"]["labels"] == {
                    "metallb.io/node": "node01",
                    "metallb.io/service-name": "nginx",
                    "metallb.io/service-namespace": ns,
                }
                assert obj["status"] == {
                    "node": "node01",
                    "serviceName": "nginx",
                    "serviceNamespace": ns,
                    "peers": ["router"],
                }
                # The peer goes down: the service is advertised to no one, its status goes.
                await router.down()
                await until(lambda: peers_are(None), what="the status gone with the session")
                # The peer comes back: the status again.
                await router.up()
                await until(lambda: peers_are(["router"]), what="the status back")
                # The Service is deleted: withdrawn, and its status goes.
                await api.request("DELETE", SERVICES.path(ns, "nginx"))

                async def withdrawn() -> bool:
                    return VIP not in router.routes

                await until(withdrawn, what="the route withdrawn")
                await until(lambda: peers_are(None), what="the status gone with the service")
                # Another node's status was never touched.
                names = [s["metadata"]["name"] for s in await statuses(api, ns)]
                assert names == [other["metadata"]["name"]]
            finally:
                stop.set()
                await asyncio.wait_for(task, 15)
                await router.down()
        await api.close()

    run(scenario)


def test_statuses_are_owned_by_the_speaker_pod_and_deleted_when_it_stops(
    target: KubeTarget,
) -> None:
    async def scenario() -> None:
        api = await admin(target)
        router = Router()
        await router.up()
        async with namespace(api) as ns:
            for kind, body in objects(ns, router.port):
                await api.request("POST", kind.path(ns), body=body)
            await set_ingress(api, ns, "nginx", "203.0.113.10")
            pod_body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "speaker-abcde", "namespace": ns},
                "spec": {"containers": [{"name": "speaker", "image": "pikube:speaker"}]},
            }
            pods: list[Obj] = []

            # A real API server refuses Pods until the namespace's default ServiceAccount
            # exists: kube-controller-manager makes it in a cluster; the tests' control plane
            # without nodes has none, so the test makes it (a cluster's is kept: 409).
            with contextlib.suppress(ApiStatusError):
                await api.request(
                    "POST",
                    f"/api/v1/namespaces/{ns}/serviceaccounts",
                    body={"apiVersion": "v1", "kind": "ServiceAccount",
                          "metadata": {"name": "default", "namespace": ns}},
                )  # fmt: skip

            async def pod_created() -> bool:
                try:
                    pods.append(
                        await api.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod_body)
                    )
                except ApiStatusError:
                    return False
                return True

            await until(pod_created, what="the speaker's Pod")
            (pod,) = pods
            settings = BgpSpeakerSettings(node="node01", metrics_port=None, connect_retry_s=0.05)
            source = KubeBgpSource(node="node01", namespace=ns, api=api, pod_name="speaker-abcde")
            speaker = BgpSpeaker(settings, source)
            # The speaker withdraws before the source cleans up: an API that is slow to answer
            # must not delay the withdrawal.
            sessions_at_cleanup: list[int] = []
            cleanup = source._remove_all

            async def remove_all(api: KubeClient) -> None:
                sessions_at_cleanup.append(len(speaker.peers))
                await cleanup(api)

            source._remove_all = remove_all  # type: ignore[method-assign]
            stop = asyncio.Event()
            task = asyncio.create_task(speaker.run(stop))
            try:

                async def reported() -> bool:
                    return any(
                        (s.get("status") or {}).get("peers") for s in await statuses(api, ns)
                    )

                await until(reported, what="a ServiceBGPStatus")
                (obj,) = await statuses(api, ns)
                assert obj["metadata"]["ownerReferences"] == [
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": "speaker-abcde",
                        "uid": pod["metadata"]["uid"],
                    }
                ]
            finally:
                stop.set()
                await asyncio.wait_for(task, 15)
                await router.down()
            assert await statuses(api, ns) == []
            assert sessions_at_cleanup == [0]
        await api.close()

    run(scenario)
