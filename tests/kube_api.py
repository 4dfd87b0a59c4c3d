"""Which Kubernetes API the load balancer's API tests talk to, as a kubeconfig.

By default: the lab's API stand-in, served in a thread of the test process on 127.0.0.1 (TLS,
client certificates; no root needed). With PIKUBE_TEST_KUBECONFIG=FILE: that cluster instead
(a real kube-apiserver, e.g. the lab's real Kubernetes once it runs). Tests isolate themselves
with their own namespace and delete it at the end, so they can share a cluster.

Also: a small synchronous admin client for the tests' own reads and writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pikube.lab.kubeapi.seed import seed_cluster
from pikube.lab.kubeapi.server import ApiServer, RunningServer, start, tls_context
from pikube.lab.kubeapi.store import Store
from pikube.lb.kube.api import KubeClient, connect
from tests.unit.kubeapi.support import PkiFiles, write_pki

CRD_DIR = Path(__file__).resolve().parents[1] / "src" / "pikube" / "data" / "crds"
T = TypeVar("T")


@dataclass
class KubeTarget:
    """A kubeconfig, whether it is the in-process stand-in, and (for the stand-in) its store."""

    kubeconfig: Path
    stand_in: bool
    store: Store | None = None


@contextlib.contextmanager
def stand_in_thread(directory: Path) -> Iterator[KubeTarget]:
    """The API stand-in on 127.0.0.1 in its own thread and event loop."""
    files: PkiFiles = write_pki(directory)
    store = Store()
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    async def serve() -> None:
        tls = tls_context(
            files.path("apiserver.crt"), files.path("apiserver.key"), files.path("ca.crt")
        )
        running = await start(ApiServer(store), host="127.0.0.1", port=0, tls=tls)
        seed_cluster(store, "127.0.0.1", running.port)
        started["running"] = running
        ready.set()

    thread = threading.Thread(target=loop.run_forever, name="kube-api", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(30)
    ready.wait(30)
    try:
        yield KubeTarget(files.kubeconfig(started["running"].port), True, store)
    finally:
        asyncio.run_coroutine_threadsafe(started["running"].close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def kube_target(directory: Path) -> Iterator[KubeTarget]:
    configured = os.environ.get("PIKUBE_TEST_KUBECONFIG")
    if configured:
        yield KubeTarget(Path(configured), False)
        return
    with stand_in_thread(directory) as target:
        yield target


def unique_namespace() -> str:
    return "pk-" + secrets.token_hex(4)


def run(scenario: Callable[[], Awaitable[T]], timeout_s: float = 90.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), timeout_s)

    return asyncio.run(bounded())


async def until(
    condition: Callable[[], Awaitable[bool]], timeout_s: float = 15.0, what: str = "condition"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout_s:g} s")
        await asyncio.sleep(0.02)


async def apply_crds(api: KubeClient) -> None:
    """Create pikube's CRDs for the MetalLB kinds unless they exist."""
    import yaml  # noqa: PLC0415

    from pikube.lb.kube.api import ApiStatusError  # noqa: PLC0415

    for path in sorted(CRD_DIR.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        with contextlib.suppress(ApiStatusError):
            await api.request(
                "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=body
            )
        # A real API server serves a new kind only once its CRD is Established.
        group, plural = body["spec"]["group"], body["spec"]["names"]["plural"]
        version = body["spec"]["versions"][0]["name"]

        async def served(group: str = group, version: str = version, plural: str = plural) -> bool:
            try:
                await api.request("GET", f"/apis/{group}/{version}/{plural}")
            except ApiStatusError:
                return False
            return True

        await until(served, 30, f"{plural}.{group} served")


async def admin(target: KubeTarget) -> KubeClient:
    return await connect(target.kubeconfig)


@contextlib.asynccontextmanager
async def fresh_namespace(api: KubeClient) -> AsyncIterator[str]:
    """A fresh namespace (with pikube's CRDs in the cluster), deleted afterwards."""
    from pikube.lb.kube.api import NAMESPACES  # noqa: PLC0415

    name = unique_namespace()
    await apply_crds(api)
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    await api.request("POST", NAMESPACES.path(), body=body)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            await api.request("DELETE", NAMESPACES.path(name=name))


@contextlib.asynccontextmanager
async def api_server(files: PkiFiles, store: Store, port: int = 0) -> AsyncIterator[RunningServer]:
    """The stand-in serving `store` in this event loop; the store outlives it, as etcd outlives
    kube-apiserver, so a test can restart the server (stand-in only)."""
    tls = tls_context(
        files.path("apiserver.crt"), files.path("apiserver.key"), files.path("ca.crt")
    )
    running = await start(ApiServer(store), host="127.0.0.1", port=port, tls=tls)
    try:
        yield running
    finally:
        await running.close()
