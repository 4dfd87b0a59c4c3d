"""The API stand-in served for real (TLS on loopback) to the Python client pikube will use
(kubernetes_asyncio), and to clients that misbehave: bad bodies, unknown kinds, oversized
bodies, missing or foreign client certificates, watchers that vanish mid-stream.

These need no root: the server runs in the test's own event loop on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from pikube.lab.kubeapi.store import PatchType
from tests.unit.kubeapi.support import PkiFiles, Served, client_context, serving, write_pki


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return write_pki(tmp_path_factory.mktemp("pki"))


def run(scenario: Callable[[], Awaitable[None]], timeout_s: float = 60.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), timeout_s)

    asyncio.run(bounded())


@asynccontextmanager
async def core_api(served: Served) -> AsyncIterator[client.CoreV1Api]:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(served.files.kubeconfig(served.port)), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api_client:
        yield client.CoreV1Api(api_client)


def configmap(name: str, **data: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)


def configmap_body(name: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": data}


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# -- the Python client -----------------------------------------------------------------------


def test_list_then_watch_sees_every_change_in_order(files: PkiFiles) -> None:
    async def scenario() -> None:
        async with serving(files) as served, core_api(served) as v1:
            await v1.create_namespaced_config_map("default", configmap("a", k="1"))
            listed = await v1.list_namespaced_config_map("default")
            assert [i.metadata.name for i in listed.items] == ["a"]
            events: list[tuple[str, str, str]] = []
            stream = watch.Watch()

            async def consume() -> None:
                async for event in stream.stream(
                    v1.list_namespaced_config_map,
                    "default",
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    events.append((event["type"], obj.metadata.name, obj.metadata.resource_version))
                    if len(events) == 3:
                        stream.stop()

            consumer = asyncio.create_task(consume())
            await v1.create_namespaced_config_map("default", configmap("b"))
            await v1.patch_namespaced_config_map("a", "default", {"data": {"k": "2"}})
            await v1.delete_namespaced_config_map("b", "default")
            await consumer
            assert [(t, n) for t, n, _ in events] == [
                ("ADDED", "b"),
                ("MODIFIED", "a"),
                ("DELETED", "b"),
            ]
            versions = [int(rv) for _, _, rv in events]
            assert versions == sorted(versions)

    run(scenario)


def test_a_client_survives_410_gone_by_relisting(files: PkiFiles) -> None:
    async def scenario() -> None:
        async with serving(files, window=5) as served, core_api(served) as v1:
            await v1.create_namespaced_config_map("default", configmap("a", n="0"))
            listed = await v1.list_namespaced_config_map("default")
            stale = listed.metadata.resource_version
            for n in range(1, 8):  # more changes than the server keeps for watches
                await v1.patch_namespaced_config_map("a", "default", {"data": {"n": str(n)}})
            with pytest.raises(ApiException) as gone:
                async for _event in watch.Watch().stream(
                    v1.list_namespaced_config_map, "default", resource_version=stale
                ):
                    pass
            assert gone.value.status == 410
            # What a controller does: list again, and watch from the new version.
            relisted = await v1.list_namespaced_config_map("default")
            assert relisted.items[0].data == {"n": "7"}
            stream = watch.Watch()
            seen: list[str] = []

            async def consume() -> None:
                async for event in stream.stream(
                    v1.list_namespaced_config_map,
                    "default",
                    resource_version=relisted.metadata.resource_version,
                ):
                    seen.append(event["object"].data["n"])
                    stream.stop()

            consumer = asyncio.create_task(consume())
            await v1.patch_namespaced_config_map("a", "default", {"data": {"n": "8"}})
            await consumer
            assert seen == ["8"]

    run(scenario)


def test_an_update_with_a_stale_resource_version_gets_409(files: PkiFiles) -> None:
    async def scenario() -> None:
        async with serving(files) as served, core_api(served) as v1:
            created = await v1.create_namespaced_config_map("default", configmap("a", k="1"))
            await v1.patch_namespaced_config_map("a", "default", {"data": {"k": "2"}})
            created.data = {"k": "3"}
            with pytest.raises(ApiException) as conflict:
                await v1.replace_namespaced_config_map("a", "default", created)
            assert conflict.value.status == 409
            assert json.loads(conflict.value.body or b"{}")["reason"] == "Conflict"
            current = await v1.read_namespaced_config_map("a", "default")
            assert current.data == {"k": "2"}
            current.data = {"k": "3"}
            replaced = await v1.replace_namespaced_config_map("a", "default", current)
            assert replaced.data == {"k": "3"}
            with pytest.raises(ApiException) as exists:
                await v1.create_namespaced_config_map("default", configmap("a"))
            assert exists.value.status == 409

    run(scenario)


def test_bookmarks_carry_the_current_resource_version(files: PkiFiles) -> None:
    async def scenario() -> None:
        async with serving(files, bookmark_interval_s=0.05) as served, core_api(served) as v1:
            stream = watch.Watch()
            async for event in stream.stream(
                v1.list_namespaced_config_map,
                "default",
                allow_watch_bookmarks=True,
                resource_version=str(served.store.rv),
            ):
                assert event["type"] == "BOOKMARK"
                assert event["raw_object"]["metadata"]["resourceVersion"] == str(served.store.rv)
                stream.stop()

    run(scenario)


# -- bad input and misbehaving clients ------------------------------------------------------


async def raw(
    served: Served,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str = "application/json",
    cert: str | None = "admin",
) -> tuple[int, Any]:
    context = client_context(served.files, cert=cert)
    connector = aiohttp.TCPConnector(ssl=context)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(
            method, served.url + path, data=body, headers={"Content-Type": content_type}
        ) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def healthy(served: Served) -> None:
    status, body = await raw(served, "GET", "/api/v1/namespaces/default/configmaps")
    assert status == 200
    assert body["kind"] == "ConfigMapList"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"metadata": {"name": "a"', "application/json"),
        (b"\xff\xfe not json", "application/json"),
        (b"metadata: {name: [unclosed", "application/yaml"),
        (b"metadata:\n  name: a\n\t bad: tab", "application/yaml"),
    ],
)
def test_malformed_bodies_get_400_and_the_server_goes_on(
    files: PkiFiles, body: bytes, content_type: str
) -> None:
    async def scenario() -> None:
        async with serving(files) as served:
            status, answer = await raw(
                served,
                "POST",
                "/api/v1/namespaces/default/configmaps",
                body=body,
                content_type=content_type,
            )
            assert status == 400
            assert answer["kind"] == "Status"
            assert answer["reason"] == "BadRequest"
            await healthy(served)

    run(scenario)


def test_yaml_bodies_are_accepted_like_json(files: PkiFiles) -> None:
    async def scenario() -> None:
        async with serving(files) as served:
            body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n"
            status, answer = await raw(
                served,
                "POST",
                "/api/v1/namespaces/default/configmaps",
                body=body,
                content_type="application/yaml",
            )
            assert status == 201
            assert answer["data"] == {"k": "v"}

    run(scenario)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/apis/example.com/v1/namespaces/default/widgets", None, 404),
        ("GET", "/api/v1/widgets", None, 404),
        ("GET", "/apis/example.com/v1", None, 404),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b'{"kind":"Widget","metadata":{"name":"w"}}',
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b'{"apiVersion":"example.com/v1","metadata":{"name":"w"}}',
            400,
        ),
        ("POST", "/api/v1/namespaces/default/configmaps", b"[1, 2, 3]", 400),
        ("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a+in+(", None, 400),
        ("GET", "/api/v1/namespaces/default/configmaps?fieldSelector=spec.bogus%3Dx", None, 400),
        ("GET", "/api/v1/namespaces/default/configmaps/a/scale", None, 404),
    ],
)
def test_unknown_kinds_and_bad_requests_are_refused_with_a_status(
    files: PkiFiles, method: str, path: str, body: bytes | None, status: int
) -> None:
    async def scenario() -> None:
        async with serving(files) as served:
            got, answer = await raw(served, method, path, body=body)
            assert got == status, answer
            assert answer["kind"] == "Status"
            assert answer["code"] == status
            await healthy(served)

    run(scenario)


def test_oversized_bodies_get_413(files: PkiFiles) -> None:
    async def scenario() -> None:
        async with serving(files, max_body_bytes=64 * 1024) as served:
            big = json.dumps(configmap_body("big", blob="x" * 100_000)).encode()
            status, answer = await raw(
                served, "POST", "/api/v1/namespaces/default/configmaps", body=big
            )
            assert status == 413
            assert answer["reason"] == "RequestEntityTooLarge"

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
                for _ in range(10):
                    yield b" " * 10_000

            connector = aiohttp.TCPConnector(ssl=client_context(files))
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.post(
                    served.url + "/api/v1/namespaces/default/configmaps", data=chunks()
                ) as response,
            ):
                assert response.status == 413
            await healthy(served)

    run(scenario)


def test_requests_without_a_client_certificate_get_401(files: PkiFiles) -> None:
    async def scenario() -> None:
        async with serving(files) as served:
            status, answer = await raw(served, "GET", "/api/v1/nodes", cert=None)
            assert status == 401
            assert answer["reason"] == "Unauthorized"
            status, answer = await raw(served, "GET", "/version", cert=None)
            assert status == 200
            assert answer["gitVersion"].startswith("v1.31.")
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
                await raw(served, "GET", "/api/v1/nodes", cert="stranger")
            await healthy(served)

    run(scenario)


async def open_watch(served: Served) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", served.port, ssl=client_context(served.files), server_hostname="127.0.0.1"
    )
    writer.write(
        b"GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    status_line = await reader.readline()
    assert b" 200 " in status_line
    return reader, writer


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_watchers_that_vanish_leave_no_tasks_or_subscriptions_behind(files: PkiFiles) -> None:
    async def scenario() -> None:
        async with serving(files) as served:
            await healthy(served)
            baseline = len(asyncio.all_tasks())
            watchers = [await open_watch(served) for _ in range(20)]
            await until(lambda: served.store.watcher_count() == 20)
            assert served.api.active_watches == 20
            # Half vanish with a TCP reset while idle; the others after an event was queued.
            for _reader, writer in watchers[:10]:
                _reset(writer)
            status, _ = await raw(
                served,
                "POST",
                "/api/v1/namespaces/default/configmaps",
                body=json.dumps(configmap_body("x")).encode(),
            )
            assert status == 201
            for _reader, writer in watchers[10:]:
                writer.transport.abort()
            await until(lambda: served.store.watcher_count() == 0)
            await until(lambda: served.api.active_watches == 0)
            await until(lambda: len(asyncio.all_tasks()) <= baseline)
            await healthy(served)

    run(scenario)


def test_a_watcher_too_slow_to_keep_up_is_closed_not_silently_skipped(files: PkiFiles) -> None:
    async def scenario() -> None:
        async with serving(files, max_pending_events=5) as served, core_api(served) as v1:
            cms = served.store.registry.lookup("", "v1", "configmaps")
            assert cms is not None
            served.store.create(cms, "default", configmap_body("a"))
            reader, writer = await open_watch(served)
            # 50 changes while the event loop cannot write any of them out.
            for n in range(50):
                served.store.patch(cms, "default", "a", PatchType.MERGE, {"data": {"n": str(n)}})
            body = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            lines = [json.loads(line) for line in _chunked_lines(body)]
            # It got a prefix of the changes, in order, and then the stream ended: a client
            # resumes from the last resourceVersion it saw (as with the real server).
            versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in lines]
            assert versions == list(range(versions[0], versions[0] + len(versions)))
            assert served.api.closed_slow_watchers == 1
            assert lines[0]["type"] == "ADDED"
            assert 5 <= len(lines) <= 6
            resumed = await v1.list_namespaced_config_map("default")
            assert resumed.items[0].data == {"n": "49"}

    run(scenario)


def _chunked_lines(body: bytes) -> list[bytes]:
    """The JSON lines of a chunked HTTP response body (headers included in `body`)."""
    _headers, _, rest = body.partition(b"\r\n\r\n")
    data = b""
    while rest:
        size_text, _, rest = rest.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        data += rest[:size]
        rest = rest[size + 2 :]
    return [line for line in data.split(b"\n") if line.strip()]
