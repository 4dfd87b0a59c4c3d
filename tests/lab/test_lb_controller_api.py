"""The controller on a Kubernetes API: IPs in Services' status with the pool annotation,
MetalLB's Events, restarts that move nothing, bad pools set aside, load-balancer classes, and
two replicas with a Lease.

The API is the session's real etcd + kube-apiserver on 127.0.0.1 (`tests.kube_api`), or the
cluster of PIKUBE_TEST_KUBECONFIG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pikube.lb.controller import Controller, ControllerSettings
from pikube.lb.kube.api import (
    EVENTS,
    IP_ADDRESS_POOLS,
    LEASES,
    SERVICES,
    ApiStatusError,
    KubeClient,
    Obj,
)
from tests.kube_api import KubeTarget, admin, run, until
from tests.kube_api import fresh_namespace as namespace


@pytest.fixture
def target(kube_api: KubeTarget) -> KubeTarget:
    return kube_api


def pool(name: str, namespace: str, *addresses: str, **spec: Any) -> Obj:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"addresses": list(addresses), **spec},
    }


def service(name: str, namespace: str, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": name},
                 **spec},
    }  # fmt: skip


@contextlib.asynccontextmanager
async def running(api: KubeClient, ns: str, **settings: Any) -> AsyncIterator[Controller]:
    controller = Controller(api, ControllerSettings(namespace=ns, metrics_port=None, **settings))
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


async def events(api: KubeClient, ns: str, name: str) -> list[tuple[str, str, str]]:
    listed = await api.request("GET", EVENTS.path(ns))
    return [
        (e.get("type", ""), e.get("reason", ""), e.get("message", ""))
        for e in listed.get("items") or []
        if (e.get("involvedObject") or {}).get("name") == name
    ]


def test_a_service_gets_the_first_ip_with_its_pool_annotation_and_an_event(
    target: KubeTarget,
) -> None:
    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns, running(api, ns) as controller:
            await api.request(
                "POST",
                IP_ADDRESS_POOLS.path(ns),
                body=pool("seed-pool", ns, "198.51.100.230-198.51.100.250"),
            )
            await api.request("POST", SERVICES.path(ns), body=service("nginx", ns))

            async def has_ip() -> bool:
                return await ingress(api, ns, "nginx") == ["198.51.100.230"]

            await until(has_ip, what="EXTERNAL-IP 198.51.100.230")
            obj = await api.request("GET", SERVICES.path(ns, "nginx"))
            assert (
                obj["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"] == "seed-pool"
            )

            async def has_event() -> bool:
                return ("Normal", "IPAllocated", 'Assigned IP ["198.51.100.230"]') in await events(
                    api, ns, "nginx"
                )

            await until(has_event, what="the IPAllocated event")
            # MetalLB's allocator metrics, per pool
            metrics = controller.metrics.registry.render()
            for line in (
                'metallb_allocator_addresses_total{pool="seed-pool"} 21',
                'metallb_allocator_addresses_in_use_total{pool="seed-pool"} 1',
                'metallb_allocator_services_allocated_total{pool="seed-pool"} 1',
            ):
                assert line in metrics, line
            # Deleting the pool's only user frees the IP for the next service.
            await api.request("DELETE", SERVICES.path(ns, "nginx"))
            await api.request("POST", SERVICES.path(ns), body=service("web", ns))

            async def reused() -> bool:
                return await ingress(api, ns, "web") == ["198.51.100.230"]

            await until(reused, what="the freed IP given again")
        await api.close()

    run(scenario)


def test_services_created_in_a_burst_get_the_pools_ips_in_creation_order(
    target: KubeTarget,
) -> None:
    """Created one after another while the controller runs, Services get a pool's IPs in the
    order they were created (names chosen against alphabetical order), every time."""
    names = ["svc-h", "svc-g", "svc-f", "svc-e", "svc-d", "svc-c", "svc-b", "svc-a"]

    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns:
            await api.request(
                "POST",
                IP_ADDRESS_POOLS.path(ns),
                body=pool("p", ns, "198.51.100.230-198.51.100.239"),
            )
            async with running(api, ns) as controller:
                await asyncio.wait_for(controller.synced.wait(), 15)
                for name in names:
                    await api.request("POST", SERVICES.path(ns), body=service(name, ns))
                expected = [[f"198.51.100.{230 + i}"] for i in range(len(names))]

                async def in_order() -> bool:
                    return [await ingress(api, ns, n) for n in names] == expected

                await until(in_order, what="IPs in creation order")
        await api.close()

    run(scenario)


def test_a_restarted_controller_readopts_every_ip_before_allocating(target: KubeTarget) -> None:
    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns:
            await api.request(
                "POST",
                IP_ADDRESS_POOLS.path(ns),
                body=pool("p", ns, "198.51.100.230-198.51.100.232"),
            )
            async with running(api, ns):
                await api.request("POST", SERVICES.path(ns), body=service("a", ns))
                await api.request("POST", SERVICES.path(ns), body=service("b", ns))

                async def both() -> bool:
                    return (await ingress(api, ns, "a"), await ingress(api, ns, "b")) == (
                        ["198.51.100.230"],
                        ["198.51.100.231"],
                    )

                await until(both, what="a at .230 and b at .231")
            # While no controller runs: a goes away, c (new) arrives. On restart, c must not
            # take b's IP even though c would come first in a fresh allocation.
            await api.request("DELETE", SERVICES.path(ns, "a"))
            await api.request("POST", SERVICES.path(ns), body=service("c", ns))
            async with running(api, ns) as controller:
                await asyncio.wait_for(controller.synced.wait(), 15)

                async def settled() -> bool:
                    return await ingress(api, ns, "c") == ["198.51.100.230"]

                await until(settled, what="c at the freed .230")
                assert await ingress(api, ns, "b") == ["198.51.100.231"]
        await api.close()

    run(scenario)


class HeldWrites(KubeClient):
    """A controller's client whose status writes never arrive: the controller has chosen the
    IPs and is killed before its writes land. The test sends them late (a request still on its
    way when the process died)."""

    def __init__(self, api: KubeClient) -> None:
        super().__init__(api._backend)
        self.held: list[tuple[str, Obj]] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> Obj:
        if method == "PUT" and path.endswith("/status"):
            self.held.append((path, kwargs["body"]))
            await asyncio.Event().wait()  # never answered
        return await super().request(method, path, **kwargs)


def test_a_controller_killed_between_choosing_and_writing_hands_out_no_ip_twice(
    target: KubeTarget,
) -> None:
    """The first controller chooses a, b, c -> .230, .231, .232 and dies before writing; a is
    deleted; the restarted controller gives b and c the free IPs (b .230, c .231). The first
    one's writes, arriving late, are refused (409: decided on an older resourceVersion): no IP
    is in two Services, none moves."""

    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns:
            await api.request(
                "POST",
                IP_ADDRESS_POOLS.path(ns),
                body=pool("p", ns, "198.51.100.230-198.51.100.233"),
            )
            for name in ("a", "b", "c"):
                await api.request("POST", SERVICES.path(ns), body=service(name, ns))
            doomed = HeldWrites(api)
            async with running(doomed, ns):

                async def chosen() -> bool:
                    return len(doomed.held) == 3

                await until(chosen, what="the first controller's three status writes")
            late = {path.rsplit("/", 2)[-2]: body for path, body in doomed.held}
            chose = {n: b["status"]["loadBalancer"]["ingress"][0]["ip"] for n, b in late.items()}
            assert chose == {"a": "198.51.100.230", "b": "198.51.100.231", "c": "198.51.100.232"}
            for name in ("a", "b", "c"):
                assert await ingress(api, ns, name) == []  # nothing written
            await api.request("DELETE", SERVICES.path(ns, "a"))
            async with running(api, ns) as controller:
                await asyncio.wait_for(controller.synced.wait(), 15)

                async def both() -> bool:
                    return bool(await ingress(api, ns, "b") and await ingress(api, ns, "c"))

                await until(both, what="b and c with IPs from the restarted controller")
                after = {n: await ingress(api, ns, n) for n in ("b", "c")}
                refused = []
                for name, body in late.items():
                    with contextlib.suppress(ApiStatusError):
                        await api.request("PUT", SERVICES.path(ns, name, "status"), body=body)
                        continue
                    refused.append(name)
                assert sorted(refused) == ["a", "b", "c"]  # 404 for a, 409 for b and c
                await asyncio.sleep(0.3)  # the restarted controller sees nothing to undo
                assert {n: await ingress(api, ns, n) for n in ("b", "c")} == after
                flat = [ip for ips in after.values() for ip in ips]
                assert len(flat) == len(set(flat)) == 2
        await api.close()

    run(scenario)


def test_a_bad_pool_gets_an_event_naming_the_field_and_the_good_one_keeps_working(
    target: KubeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    where: list[str] = []

    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns, running(api, ns):
            where.append(ns)
            await api.request(
                "POST", IP_ADDRESS_POOLS.path(ns), body=pool("bad", ns, "198.51.100.0/33")
            )
            await api.request(
                "POST", IP_ADDRESS_POOLS.path(ns), body=pool("good", ns, "198.51.100.240/30")
            )
            await api.request("POST", SERVICES.path(ns), body=service("web", ns))

            async def has_ip() -> bool:
                return await ingress(api, ns, "web") == ["198.51.100.240"]

            await until(has_ip, what="an IP from the good pool")

            async def named() -> bool:
                found = await events(api, ns, "bad")
                return any(
                    r == "InvalidConfiguration" and "spec.addresses[0]" in m for _, r, m in found
                )

            await until(named, what="an Event on the bad pool naming spec.addresses[0]")
        await api.close()

    with caplog.at_level(logging.WARNING, logger="pikube.kube"):
        run(scenario)
    # ... and a log line naming the object and the field
    lines = [
        r.getMessage() for r in caplog.records if f"IPAddressPool {where[0]}/bad" in r.getMessage()
    ]
    assert any("InvalidConfiguration" in line and "spec.addresses[0]" in line for line in lines)


def test_an_unknown_field_in_a_pool_is_named_by_the_api_and_the_pool_works_without_it(
    target: KubeTarget,
) -> None:
    """pikube's CRDs are structural: with strict field validation (kubectl's default) the API
    refuses an unknown field and names it; without, it is pruned (a warning) and the pool
    works. So the controller never sees unknown fields on a real API (its own check, for
    files and the stand-in, is pikube.lb.config's)."""

    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns, running(api, ns):
            body = pool("extra", ns, "198.51.100.240/32", colour="blue")
            strict = {"fieldValidation": "Strict"}
            with pytest.raises(ApiStatusError, match=r'unknown field "spec\.colour"') as refused:
                await api.request("POST", IP_ADDRESS_POOLS.path(ns), body=body, query=strict)
            assert refused.value.status == 400
            await api.request("POST", IP_ADDRESS_POOLS.path(ns), body=body)
            stored = await api.request("GET", IP_ADDRESS_POOLS.path(ns, "extra"))
            assert "colour" not in stored["spec"]
            await api.request("POST", SERVICES.path(ns), body=service("web", ns))

            async def has_ip() -> bool:
                return await ingress(api, ns, "web") == ["198.51.100.240"]

            await until(has_ip, what="an IP from the pool without its unknown field")
        await api.close()

    run(scenario)


def test_failures_and_other_classes(target: KubeTarget) -> None:
    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns, running(api, ns):
            await api.request(
                "POST", IP_ADDRESS_POOLS.path(ns), body=pool("tiny", ns, "198.51.100.240/32")
            )
            await api.request("POST", SERVICES.path(ns), body=service("first", ns))
            await api.request(
                "POST",
                SERVICES.path(ns),
                body=service("other", ns, loadBalancerClass="example.com/lb"),
            )
            await api.request("POST", SERVICES.path(ns), body=service("second", ns))

            async def failed() -> bool:
                return any(r == "AllocationFailed" for _, r, _ in await events(api, ns, "second"))

            await until(failed, what="AllocationFailed on the service that found no IP")
            assert await ingress(api, ns, "first") == ["198.51.100.240"]
            assert await ingress(api, ns, "second") == []
            assert await ingress(api, ns, "other") == []
            assert await events(api, ns, "other") == []
        await api.close()

    run(scenario)


def test_two_replicas_only_the_lease_holder_writes_and_the_standby_takes_over(
    target: KubeTarget,
) -> None:
    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns:
            await api.request(
                "POST", IP_ADDRESS_POOLS.path(ns), body=pool("p", ns, "198.51.100.240/30")
            )
            lease = {"leader_elect": True, "lease_duration_s": 1.5}
            async with contextlib.AsyncExitStack() as first:
                one = await first.enter_async_context(running(api, ns, identity="one", **lease))
                await until(lambda: _true(one.metrics.leader.get() == 1), what="one leads")
                async with running(api, ns, identity="two", **lease) as two:
                    await api.request("POST", SERVICES.path(ns), body=service("a", ns))

                    async def has_ip() -> bool:
                        return await ingress(api, ns, "a") == ["198.51.100.240"]

                    await until(has_ip, what="a's IP")
                    assert two.metrics.leader.get() == 0
                    assert two.metrics.updates.get() == 0
                    # The leader goes away without giving the Lease back (as if killed).
                    await first.aclose()
                    await until(lambda: _true(two.metrics.leader.get() == 1), what="two takes over")
                    await api.request("POST", SERVICES.path(ns), body=service("b", ns))

                    async def b_ip() -> bool:
                        return await ingress(api, ns, "b") == ["198.51.100.241"]

                    await until(b_ip, what="b's IP from the new leader")
                    assert await ingress(api, ns, "a") == ["198.51.100.240"]
        await api.close()

    run(scenario)


def test_a_leader_stopped_gracefully_gives_the_lease_back(target: KubeTarget) -> None:
    async def scenario() -> None:
        api = await admin(target)
        async with namespace(api) as ns:
            lease = {"leader_elect": True, "lease_duration_s": 30.0}
            async with running(api, ns, identity="one", **lease) as one:
                await until(lambda: _true(one.metrics.leader.get() == 1), what="one leads")
            held = await api.request("GET", LEASES.path(ns, "pikube-controller"))
            assert held["spec"]["holderIdentity"] == ""  # released, not left to expire (30 s)
            async with running(api, ns, identity="two", **lease) as two:
                await until(lambda: _true(two.metrics.leader.get() == 1), what="two leads")
        await api.close()

    run(scenario)


async def _true(value: bool) -> bool:
    return value
