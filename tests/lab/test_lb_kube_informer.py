"""The informer against the API stand-in served for real on loopback (TLS, client
certificates): list then watch, a 410 answered by a relist, a server that goes away (the cache
stays and the informer says it is stale). No root needed.

These run against the stand-in only (its store can be compacted and its watches cut on demand).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from pikube.lab.kubeapi.store import PatchType, Store
from pikube.lb.kube.api import Kind, connect
from pikube.lb.kube.informer import Backoff, Change, Informer, Watched
from tests.kube_api import api_server
from tests.unit.kubeapi.support import PkiFiles, serving, write_pki

CONFIGMAPS = Kind("ConfigMap", "", "v1", "configmaps")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return write_pki(tmp_path_factory.mktemp("pki"))


def run(scenario: Callable[[], Awaitable[None]], timeout_s: float = 60.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), timeout_s)

    asyncio.run(bounded())


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def cm(name: str, value: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "data": {"k": value}}


def test_list_watch_and_a_restarted_server_that_lost_the_history_answers_410(
    files: PkiFiles,
) -> None:
    async def scenario() -> None:
        store = Store(window=5)
        configmaps = store.registry.lookup("", "v1", "configmaps")
        assert configmaps is not None
        store.create(configmaps, "default", cm("a", "1"))
        changes: list[Change] = []
        async with contextlib.AsyncExitStack() as stack:
            running = await stack.enter_async_context(api_server(files, store))
            api = await connect(files.kubeconfig(running.port), request_timeout_s=2)
            informer = Informer(
                api,
                [Watched(CONFIGMAPS, "default")],
                lambda _k, c: changes.append(c),
                backoff=Backoff(first_s=0.05, cap_s=0.2),
            )
            task = asyncio.create_task(informer.run())
            try:
                await asyncio.wait_for(informer.ready.wait(), 10)
                await api.request("POST", CONFIGMAPS.path("default"), body=cm("b", "2"))
                await until(lambda: "default/b" in informer.objects(CONFIGMAPS))
                await stack.aclose()
                await until(lambda: informer.stale)
                # While it is down, more changes than its watch history keeps.
                for n in range(7):
                    store.patch(
                        configmaps, "default", "b", PatchType.MERGE, {"data": {"k": str(n)}}
                    )
                store.delete(configmaps, "default", "a")
                async with api_server(files, store, running.port):
                    await until(lambda: "default/a" not in informer.objects(CONFIGMAPS))
                    await until(lambda: not informer.stale)
                    assert informer.relists >= 1
                    assert informer.objects(CONFIGMAPS)["default/b"]["data"] == {"k": "6"}
                    kinds = [(c.type.value, c.key) for c in changes]
                    assert kinds[:2] == [("ADDED", "default/a"), ("ADDED", "default/b")]
                    assert ("DELETED", "default/a") in kinds
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await api.close()

    run(scenario)


def test_a_vanished_server_leaves_the_cache_and_sets_stale(files: PkiFiles) -> None:
    async def scenario() -> None:
        stale_calls: list[bool] = []
        async with serving(files) as served:
            api = await connect(files.kubeconfig(served.port), request_timeout_s=2)
            await api.request("POST", CONFIGMAPS.path("default"), body=cm("a", "1"))
            informer = Informer(
                api,
                [Watched(CONFIGMAPS, "default")],
                backoff=Backoff(first_s=0.05, cap_s=0.2),
                idle_timeout_s=2,
                on_stale=stale_calls.append,
            )
            task = asyncio.create_task(informer.run())
            await asyncio.wait_for(informer.ready.wait(), 10)
            served.api.close_watches()
        try:
            await until(lambda: informer.stale)
            assert stale_calls == [True]
            assert set(informer.objects(CONFIGMAPS)) == {"default/a"}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await api.close()

    run(scenario)
