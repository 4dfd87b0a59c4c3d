"""The HTTP adapter of the API stand-in: aiohttp, TLS with client certificates, watch streams.

It turns requests into calls on the pure `Store` and documents from `discovery` and `tables`,
and back into responses with the status codes and `Status` bodies of the real API server.
Only this module (and `launch`) does I/O.

- Authentication: on TLS, a client certificate signed by the cluster CA (the user is its CN,
  the groups its O); a request without one gets 401 (a certificate from another CA fails the
  handshake). /healthz, /livez, /readyz and /version are open, as the real server's
  system:public-info-viewer role makes them. An optional Unix socket (mode 0600, for the lab's
  own tooling such as registering Nodes) is trusted as an administrator. Every authenticated
  user may do everything (no RBAC).
- Bodies: JSON or YAML, at most `max_body_bytes` (413 beyond); malformed ones get 400.
- Watches: each watcher has a buffer the store fills synchronously; one task per watch drains
  it in batches. A watcher more than `max_pending_events` behind is closed (as the real server
  closes a watcher that cannot keep up); its client resumes from the last resourceVersion it
  saw, so no event is lost. Disconnects cancel the handler (handler_cancellation) and the
  watcher is always unsubscribed.

Must not: decide API semantics (that is the store's job) or know about labs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from pikube.lab.kubeapi import discovery, errors, fieldvalidation, openapi, openapi_proto, tables
from pikube.lab.kubeapi.errors import ApiError
from pikube.lab.kubeapi.resources import ResourceType
from pikube.lab.kubeapi.routing import (
    Target,
    TargetKind,
    parse_bool,
    parse_path,
    patch_type,
    wants_aggregated,
    wants_table,
)
from pikube.lab.kubeapi.selectors import SelectorError, parse_field_selector, parse_label_selector
from pikube.lab.kubeapi.store import EventType, PatchType, Store, WatchEvent

log = logging.getLogger("pikube.kubeapi")

MAX_BODY_BYTES = 3 * 1024 * 1024  # the real server's limit for a request body
DEFAULT_WATCH_TIMEOUT_S = 1800
WATCH_FLUSH_S = 0.01  # how long a watch stream gathers changes before writing them
OPEN_PATHS = ("/healthz", "/livez", "/readyz", "/version")
JSON = "application/json"


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _json_response(body: Any, status: int = 200, content_type: str = JSON) -> web.Response:
    return web.Response(body=_dumps(body), status=status, headers={"Content-Type": content_type})


def _warned(response: web.Response, warnings: list[str]) -> web.Response:
    """Warnings as the real server sends them (kubectl prints each as `Warning: ...`)."""
    for warning in warnings:
        response.headers.add("Warning", f'299 - "{warning.replace(chr(34), chr(92) + chr(34))}"')
    return response


def _error_response(error: ApiError) -> web.Response:
    response = _json_response(error.status(), error.code)
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


UNAUTHORIZED = ApiError(401, "Unauthorized", "Unauthorized")


class WatchBuffer:
    """Encoded events waiting to be written to one watch stream (filled synchronously)."""

    def __init__(self, limit: int, encode: Callable[[WatchEvent], bytes]) -> None:
        self.limit = limit
        self.encode = encode
        self.chunks: list[bytes] = []
        self.ready = asyncio.Event()
        self.overflowed = False

    def push(self, event: WatchEvent) -> None:
        if self.overflowed:
            return
        if len(self.chunks) >= self.limit:
            self.overflowed = True
            self.ready.set()
            return
        self.chunks.append(self.encode(event))
        self.ready.set()

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.ready.clear()
        return data


class ApiServer:
    """The aiohttp application around a Store."""

    def __init__(
        self,
        store: Store,
        *,
        advertise_address: str = "127.0.0.1:6443",
        max_body_bytes: int = MAX_BODY_BYTES,
        bookmark_interval_s: float = 60.0,
        max_pending_events: int = 100_000,
        watch_flush_s: float = WATCH_FLUSH_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.advertise_address = advertise_address
        self.max_body_bytes = max_body_bytes
        self.bookmark_interval_s = bookmark_interval_s
        self.max_pending_events = max_pending_events
        self.watch_flush_s = watch_flush_s
        self.clock = clock
        self.active_watches = 0
        self.closing = False
        self._buffers: set[WatchBuffer] = set()
        self.closed_slow_watchers = 0
        # client_max_size is enforced by our own reader (to answer with a Status and 413).
        self.app = web.Application(client_max_size=max_body_bytes * 4 + 1024)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    def close_watches(self) -> None:
        """End every watch stream (on shutdown): clients resume elsewhere or later."""
        self.closing = True
        for buffer in self._buffers:
            buffer.ready.set()

    # -- entry point ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return _error_response(exc)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:  # a bug: answer 500 and keep serving
            log.exception("internal error serving %s %s", request.method, request.path)
            return _error_response(ApiError(500, "InternalError", "Internal error occurred"))

    def identity(self, request: web.Request) -> Identity | None:
        transport = request.transport
        if transport is None:
            return None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            return Identity("system:admin", ("system:masters",))
        cert = transport.get_extra_info("peercert")
        if not cert:
            return None
        common_name, groups = "", []
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    common_name = value
                elif key == "organizationName":
                    groups.append(value)
        return Identity(common_name, tuple(groups)) if common_name else None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or any(path.startswith(p + "/") for p in OPEN_PATHS[:3]):
            if path == "/version":
                return _json_response(discovery.version_info())
            return web.Response(text="ok", content_type="text/plain")
        if self.identity(request) is None:
            raise UNAUTHORIZED
        if path.startswith("/openapi/"):
            return self._openapi(request, path)
        target = parse_path(path)
        if target.kind is TargetKind.RESOURCE:
            return await self._resource(request, target)
        if request.method != "GET":
            raise errors.method_not_allowed(f"the server does not allow this method on {path}")
        return self._discovery(request, target)

    # -- discovery --------------------------------------------------------------------------

    def _discovery(self, request: web.Request, target: Target) -> web.Response:
        registry = self.store.registry
        accept = request.headers.get("Accept")
        if target.kind in (TargetKind.CORE_GROUPS, TargetKind.GROUPS):
            core = target.kind is TargetKind.CORE_GROUPS
            aggregated = wants_aggregated(accept)
            if aggregated is not None:
                content_type = (
                    discovery.AGGREGATED_V2 if aggregated == "v2" else discovery.AGGREGATED_V2BETA1
                )
                body = discovery.aggregated(registry, core=core, api_version=aggregated)
                return _json_response(body, content_type=content_type)
            if core:
                return _json_response(discovery.api_versions(self.advertise_address))
            return _json_response(discovery.api_group_list(registry))
        if target.kind is TargetKind.GROUP:
            group = discovery.api_group(registry, target.group)
            if group is None:
                raise errors.not_found_path(request.path)
            return _json_response(group)
        if target.kind is TargetKind.RESOURCES:
            resources = discovery.api_resource_list(registry, target.group, target.version)
            if resources is None:
                raise errors.not_found_path(request.path)
            return _json_response(resources)
        raise errors.not_found_path(request.path)

    def _openapi(self, request: web.Request, path: str) -> web.Response:
        registry = self.store.registry
        if path.rstrip("/") == "/openapi/v2":
            swagger = openapi.v2_document(registry.all())
            if "protobuf" in request.headers.get("Accept", ""):  # what client-go asks for
                body = openapi_proto.document(swagger)
                return web.Response(body=body, headers={"Content-Type": openapi_proto.CONTENT_TYPE})
            return _json_response(swagger)
        if path.rstrip("/") == "/openapi/v3":
            return _json_response(openapi.v3_index(registry))
        rest = path[len("/openapi/v3/") :] if path.startswith("/openapi/v3/") else ""
        parts = rest.strip("/").split("/")
        document = None
        if len(parts) == 2 and parts[0] == "api":
            document = openapi.v3_document(registry, "", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            document = openapi.v3_document(registry, parts[1], parts[2])
        if document is None:
            raise errors.not_found_path(path)
        return _json_response(document)

    # -- resources --------------------------------------------------------------------------

    def _resource_type(self, target: Target) -> ResourceType:
        rt = self.store.registry.lookup(target.group, target.version, target.plural)
        if rt is None:
            raise errors.not_found_path(
                f"/{'apis/' + target.group if target.group else 'api'}/{target.version}/"
                f"{target.plural}"
            )
        if target.namespace is not None and not rt.namespaced:
            raise errors.not_found_path(f"{rt.plural} is not namespaced")
        if target.subresource not in (None, "status") or (
            target.subresource == "status" and not rt.status_subresource
        ):
            raise errors.not_found_path(f"{rt.plural}/{target.subresource}")
        return rt

    async def _resource(self, request: web.Request, target: Target) -> web.StreamResponse:
        rt = self._resource_type(target)
        query = request.query
        method = request.method
        dry_run = query.get("dryRun") == "All"
        ns = target.namespace
        if target.name is None:
            if target.subresource is not None:
                raise errors.not_found_path(request.path)
            if method == "GET":
                if target.watch_prefix or parse_bool(query.get("watch")):
                    return await self._watch(request, rt, ns, query)
                return self._list(request, rt, ns, query)
            if method == "POST":
                if rt.namespaced and ns is None:
                    raise errors.method_not_allowed(
                        f"{rt.plural} is namespaced: POST to /namespaces/NAMESPACE/{rt.plural}"
                    )
                body = await self._body(request)
                warnings = fieldvalidation.check(rt, body, query.get("fieldValidation"))
                obj = self.store.create(rt, ns, body, dry_run=dry_run)
                return _warned(_json_response(obj, 201), warnings)
            if method == "DELETE":
                labels, fields = self._selectors(rt, query)
                deleted = self.store.delete_collection(rt, ns, labels, fields)
                return _json_response(
                    {
                        "kind": rt.list_kind,
                        "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": str(self.store.rv)},
                        "items": deleted,
                    }
                )
            raise errors.method_not_allowed(f"{method} is not allowed on a collection")
        if rt.namespaced and ns is None:
            raise errors.not_found_path(request.path)
        if method == "GET":
            if target.watch_prefix:
                raise errors.method_not_allowed("watch a single object with a field selector")
            obj = self.store.get(rt, ns, target.name)
            if wants_table(request.headers.get("Accept")):
                return _json_response(
                    tables.table(
                        rt,
                        [obj],
                        self.clock(),
                        resource_version=obj["metadata"]["resourceVersion"],
                        include_object=query.get("includeObject", "Metadata"),
                    )
                )
            return _json_response(obj)
        if method == "PUT":
            body = await self._body(request)
            warnings = fieldvalidation.check(rt, body, query.get("fieldValidation"))
            obj = self.store.update(
                rt, ns, target.name, body, subresource=target.subresource, dry_run=dry_run
            )
            return _warned(_json_response(obj), warnings)
        if method == "PATCH":
            kind = patch_type(request.headers.get("Content-Type"))
            if kind is None:
                raise errors.unsupported_media_type(
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: {', '.join(t.value for t in PatchType)}"
                )
            body = await self._body(request, yaml_ok=kind is PatchType.APPLY)
            current = self._current(rt, ns, target.name)
            warnings = fieldvalidation.check(rt, body, query.get("fieldValidation"), kind, current)
            obj = self.store.patch(
                rt, ns, target.name, kind, body, subresource=target.subresource, dry_run=dry_run
            )
            status = 200 if current is not None or kind is not PatchType.APPLY else 201
            return _warned(_json_response(obj, status), warnings)
        if method == "DELETE":
            if target.subresource is not None:
                raise errors.method_not_allowed("a subresource cannot be deleted")
            options = await self._body(request, optional=True)
            preconditions = options.get("preconditions") if isinstance(options, Mapping) else None
            obj = self.store.delete(
                rt, ns, target.name, preconditions=preconditions, dry_run=dry_run
            )
            return _json_response(obj)
        raise errors.method_not_allowed(f"{method} is not allowed on {rt.plural}")

    def _current(self, rt: ResourceType, ns: str | None, name: str) -> Mapping[str, Any] | None:
        try:
            return self.store.get(rt, ns, name)
        except ApiError:
            return None

    def _selectors(self, rt: ResourceType, query: Mapping[str, str]) -> tuple[Any, Any]:
        try:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"), rt.kind)
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc
        return labels, fields

    def _list(
        self, request: web.Request, rt: ResourceType, ns: str | None, query: Mapping[str, str]
    ) -> web.Response:
        labels, fields = self._selectors(rt, query)
        rv = query.get("resourceVersion")
        if rv not in (None, "", "0"):
            try:
                wanted = int(str(rv))
            except ValueError as exc:
                raise errors.bad_request(f"invalid resourceVersion {rv!r}") from exc
            if wanted > self.store.rv:
                raise ApiError(
                    504,
                    "Timeout",
                    f"Too large resource version: {wanted}, current: {self.store.rv}",
                    retry_after_s=1,
                )
        try:
            limit = int(query.get("limit") or 0)
        except ValueError as exc:
            raise errors.bad_request("limit must be a number") from exc
        result = self.store.list_objects(
            rt, ns, labels, fields, limit=max(limit, 0), continue_token=query.get("continue", "")
        )
        rv_text = str(result.resource_version)
        if wants_table(request.headers.get("Accept")):
            table = tables.table(
                rt,
                result.items,
                self.clock(),
                resource_version=rv_text,
                include_object=query.get("includeObject", "Metadata"),
            )
            if result.continue_token:
                table["metadata"]["continue"] = result.continue_token
            return _json_response(table)
        metadata: dict[str, Any] = {"resourceVersion": rv_text}
        if result.continue_token:
            metadata["continue"] = result.continue_token
            metadata["remainingItemCount"] = result.remaining
        return _json_response(
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": metadata,
                "items": result.items,
            }
        )

    async def _watch(
        self, request: web.Request, rt: ResourceType, ns: str | None, query: Mapping[str, str]
    ) -> web.StreamResponse:
        labels, fields = self._selectors(rt, query)
        try:
            timeout_s = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT_S)
        except ValueError as exc:
            raise errors.bad_request("timeoutSeconds must be a number") from exc
        bookmarks = parse_bool(query.get("allowWatchBookmarks"))
        send_initial = parse_bool(query.get("sendInitialEvents"))
        as_table = wants_table(request.headers.get("Accept"))
        api_version = rt.api_version if rt.custom else None
        encode = self._table_encoder(rt, query) if as_table else (lambda e: e.encode(api_version))
        buffer = WatchBuffer(self.max_pending_events, encode)
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        try:
            watcher = self.store.watch(
                rt,
                ns,
                labels,
                fields,
                buffer.push,
                resource_version=query.get("resourceVersion"),
                send_initial_events=send_initial,
            )
        except ApiError as exc:
            if exc.code != 410:
                raise
            # As the real server's watch cache does: 200, then one ERROR event.
            await response.prepare(request)
            error = WatchEvent(EventType.ERROR, exc.status(), 0)
            await response.write(error.encode())
            await response.write_eof()
            return response
        self.active_watches += 1
        self._buffers.add(buffer)
        try:
            await response.prepare(request)
            await self._pump(response, buffer, rt, timeout_s, bookmarks)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
        finally:
            self.store.unwatch(watcher)
            self._buffers.discard(buffer)
            self.active_watches -= 1
        return response

    async def _pump(
        self,
        response: web.StreamResponse,
        buffer: WatchBuffer,
        rt: ResourceType,
        timeout_s: float,
        bookmarks: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        next_bookmark = loop.time() + self.bookmark_interval_s
        while True:
            if buffer.chunks:
                data = buffer.take()
                try:
                    await response.write(data)
                except (ConnectionError, RuntimeError):
                    return  # the client went away
                continue
            if buffer.overflowed:
                self.closed_slow_watchers += 1
                log.warning(
                    "closing a %s watch that fell %d events behind", rt.plural, buffer.limit
                )
                return
            now = loop.time()
            if now >= deadline:
                return
            if bookmarks and now >= next_bookmark:
                buffer.push(self.store.bookmark(rt))
                next_bookmark = now + self.bookmark_interval_s
                continue
            wake = min(deadline, next_bookmark if bookmarks else deadline)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wake - now, 0.001)):
                    await buffer.ready.wait()
            if self.closing:
                return
            if buffer.chunks and self.watch_flush_s > 0:
                # Let a burst of changes gather: one write per watcher per interval instead of
                # one per event keeps hundreds of watchers cheap (bench/kubeapi_watch.py). The
                # interval grows with the number of watchers: 10 ms up to 50, 40 ms at 200.
                await asyncio.sleep(self.watch_flush_s * max(1.0, self.active_watches / 50))

    def _table_encoder(
        self, rt: ResourceType, query: Mapping[str, str]
    ) -> Callable[[WatchEvent], bytes]:
        first = [True]
        include = query.get("includeObject", "Metadata")

        def encode(event: WatchEvent) -> bytes:
            if event.type is EventType.BOOKMARK:
                return event.encode()
            table = tables.table(
                rt,
                [event.obj],
                self.clock(),
                resource_version=str(event.rv),
                include_object=include,
                with_columns=first[0],
            )
            first[0] = False
            return _dumps({"type": event.type.value, "object": table}) + b"\n"

        return encode

    # -- bodies -----------------------------------------------------------------------------

    async def _body(
        self, request: web.Request, *, optional: bool = False, yaml_ok: bool = True
    ) -> Any:
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        chunks, size = [], 0
        while True:
            chunk = await request.content.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _too_large(self.max_body_bytes)
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            if optional:
                return {}
            raise errors.bad_request("the request body is empty")
        content_type = (request.headers.get("Content-Type") or JSON).split(";")[0].strip()
        if content_type == "application/vnd.kubernetes.protobuf":
            raise errors.unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json, application/yaml"
            )
        try:
            if content_type.endswith("yaml") and yaml_ok:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            what = "yaml" if content_type.endswith("yaml") else "json"
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise errors.bad_request(
                f"couldn't decode the request body: {what} parse error: {detail}"
            ) from exc


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"request entity too large: limit is {limit}")


# -- running it -----------------------------------------------------------------------------


def tls_context(cert_file: Path, key_file: Path, ca_file: Path) -> ssl.SSLContext:
    """Server TLS: our certificate, and client certificates optional but verified by the CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cafile=ca_file)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass
class RunningServer:
    runner: web.AppRunner
    api: ApiServer
    port: int

    async def close(self) -> None:
        self.api.close_watches()
        await self.runner.cleanup()


async def start(
    api: ApiServer,
    *,
    host: str | None,
    port: int,
    tls: ssl.SSLContext | None,
    unix_socket: Path | None = None,
) -> RunningServer:
    """Serve `api` on host:port (TLS) and/or a Unix socket; returns once listening."""
    runner = web.AppRunner(api.app, handler_cancellation=True, access_log=None)
    await runner.setup()
    bound_port = 0
    if host is not None:
        site = web.TCPSite(runner, host, port, ssl_context=tls, backlog=1024, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound_port = sockets[0].getsockname()[1] if sockets else port
    if unix_socket is not None:
        with contextlib.suppress(FileNotFoundError):
            unix_socket.unlink()
        old_umask = os.umask(0o177)
        try:
            await web.UnixSite(runner, str(unix_socket)).start()
        finally:
            os.umask(old_umask)
    return RunningServer(runner, api, bound_port)
