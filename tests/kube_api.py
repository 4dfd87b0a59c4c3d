"""Which Kubernetes API the load balancer's API tests talk to, as a kubeconfig.

By default: a real etcd v3.5.15 and kube-apiserver v1.31.5 (built here from their Go modules)
started as local processes on 127.0.0.1, once per test session (`pikube.lab.kubernetes.
apiserver`: own data directory, certificates, RBAC, admin kubeconfig; a few seconds). With
PIKUBE_TEST_KUBECONFIG=FILE: that cluster instead (e.g. the lab's real Kubernetes); tests that
restart the API server need the local one and are skipped then. Tests isolate themselves with
their own namespace and delete it at the end, so they can share a cluster (the session
fixture `kube_api` in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pikube.lab.kubernetes.apiserver import ControlPlane, control_plane
from pikube.lb.kube.api import KubeClient, connect

CRD_DIR = Path(__file__).resolve().parents[1] / "src" / "pikube" / "data" / "crds"
T = TypeVar("T")


@dataclass
class KubeTarget:
    """A kubeconfig, and the local control plane behind it (None for PIKUBE_TEST_KUBECONFIG)."""

    kubeconfig: Path
    plane: ControlPlane | None = None


@contextlib.contextmanager
def kube_target(directory: Path) -> Iterator[KubeTarget]:
    configured = os.environ.get("PIKUBE_TEST_KUBECONFIG")
    if configured:
        yield KubeTarget(Path(configured))
        return
    with control_plane(directory) as plane:
        yield KubeTarget(plane.kubeconfig, plane)


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
    """A fresh namespace (with pikube's CRDs in the cluster), deleted afterwards.

    Its Services are deleted first: a namespace's deletion is asynchronous on a real cluster
    (and never completes without kube-controller-manager's namespace controller), and another
    test's controller, which watches Services in every namespace, must not find them.
    """
    from pikube.lb.kube.api import NAMESPACES, SERVICES  # noqa: PLC0415

    name = unique_namespace()
    await apply_crds(api)
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    await api.request("POST", NAMESPACES.path(), body=body)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            listed = await api.request("GET", SERVICES.path(name))
            for item in listed.get("items") or []:
                await api.request("DELETE", SERVICES.path(name, item["metadata"]["name"]))
        with contextlib.suppress(Exception):
            await api.request("DELETE", NAMESPACES.path(name=name))
