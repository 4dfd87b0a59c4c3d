"""The HTTP adapter of the API stand-in: aiohttp, TLS with client certificates, routing.

It turns requests into calls on the pure `Store` and back into responses with the status codes
and `Status` bodies of the real API server. Its helpers: `bodies` (request and response bodies),
`watching` (watch streams), `documents` (discovery and OpenAPI). Only these modules (and
`launch`) do I/O.

- Authentication: on TLS, a client certificate signed by the cluster CA (the user is its CN,
  the groups its O); a request without one gets 401 (a certificate from another CA fails the
  handshake). /healthz, /livez, /readyz and /version are open, as the real server's
  system:public-info-viewer role makes them. An optional Unix socket (mode 0600, for the lab's
  own tooling such as registering Nodes) is trusted as an administrator. Every authenticated
  user may do everything (no RBAC).
- Bodies: JSON or YAML, at most `max_body_bytes` (413 beyond); malformed ones get 400.
- Watches: see `watching`. Disconnects cancel the handler (handler_cancellation) and the
  watcher is always unsubscribed.

Must not: decide API semantics (that is the store's job) or know about labs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from pikube.lab.kubeapi import discovery, errors, fieldvalidation, tables
from pikube.lab.kubeapi.bodies import (
    MAX_BODY_BYTES,
    error_response,
    json_response,
    read_body,
    warned,
)
from pikube.lab.kubeapi.documents import discovery_response, openapi_response
from pikube.lab.kubeapi.errors import ApiError
from pikube.lab.kubeapi.resources import ResourceType
from pikube.lab.kubeapi.routing import (
    Target,
    TargetKind,
    parse_bool,
    parse_path,
    patch_type,
    wants_table,
)
from pikube.lab.kubeapi.selectors import SelectorError, parse_field_selector, parse_label_selector
from pikube.lab.kubeapi.store import PatchType, Store
from pikube.lab.kubeapi.watching import WATCH_FLUSH_S, WatchStreams

__all__ = ["MAX_BODY_BYTES", "ApiServer", "Identity", "RunningServer", "start", "tls_context"]

log = logging.getLogger("pikube.kubeapi")

OPEN_PATHS = ("/healthz", "/livez", "/readyz", "/version")
UNAUTHORIZED = ApiError(401, "Unauthorized", "Unauthorized")


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...]


class ApiServer:
    """The aiohttp application around a Store: who asks, and which store call answers."""

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
        self.clock = clock
        self.watches = WatchStreams(
            store,
            bookmark_interval_s=bookmark_interval_s,
            max_pending_events=max_pending_events,
            watch_flush_s=watch_flush_s,
            clock=clock,
        )
        # client_max_size is enforced by our own reader (to answer with a Status and 413).
        self.app = web.Application(client_max_size=max_body_bytes * 4 + 1024)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    @property
    def active_watches(self) -> int:
        return self.watches.active

    @property
    def closed_slow_watchers(self) -> int:
        return self.watches.closed_slow

    def close_watches(self) -> None:
        """End every watch stream (on shutdown): clients resume elsewhere or later."""
        self.watches.close_all()

    # -- entry point ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return error_response(exc)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:  # a bug: answer 500 and keep serving
            log.exception("internal error serving %s %s", request.method, request.path)
            return error_response(ApiError(500, "InternalError", "Internal error occurred"))

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
                return json_response(discovery.version_info())
            return web.Response(text="ok", content_type="text/plain")
        if self.identity(request) is None:
            raise UNAUTHORIZED
        accept = request.headers.get("Accept")
        if path.startswith("/openapi/"):
            return openapi_response(self.store.registry, path, accept)
        target = parse_path(path)
        if target.kind is TargetKind.RESOURCE:
            rt = self._resource_type(target)
            if target.name is None:
                return await self._collection(request, target, rt)
            return await self._object(request, target, rt, target.name)
        if request.method != "GET":
            raise errors.method_not_allowed(f"the server does not allow this method on {path}")
        return discovery_response(self.store.registry, target, path, accept, self.advertise_address)

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

    async def _collection(
        self, request: web.Request, target: Target, rt: ResourceType
    ) -> web.StreamResponse:
        query, method, ns = request.query, request.method, target.namespace
        if target.subresource is not None:
            raise errors.not_found_path(request.path)
        if method == "GET":
            if target.watch_prefix or parse_bool(query.get("watch")):
                return await self.watches.serve(request, rt, ns, self._selectors(rt, query))
            return self._list(request, rt, ns, query)
        if method == "POST":
            if rt.namespaced and ns is None:
                raise errors.method_not_allowed(
                    f"{rt.plural} is namespaced: POST to /namespaces/NAMESPACE/{rt.plural}"
                )
            body = await read_body(request, self.max_body_bytes)
            warnings = fieldvalidation.check(rt, body, query.get("fieldValidation"))
            obj = self.store.create(rt, ns, body, dry_run=query.get("dryRun") == "All")
            return warned(json_response(obj, 201), warnings)
        if method == "DELETE":
            labels, fields = self._selectors(rt, query)
            deleted = self.store.delete_collection(rt, ns, labels, fields)
            return json_response(
                {
                    "kind": rt.list_kind,
                    "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(self.store.rv)},
                    "items": deleted,
                }
            )
        raise errors.method_not_allowed(f"{method} is not allowed on a collection")

    async def _object(
        self, request: web.Request, target: Target, rt: ResourceType, name: str
    ) -> web.StreamResponse:
        query, method, ns = request.query, request.method, target.namespace
        dry_run, sub = query.get("dryRun") == "All", target.subresource
        if rt.namespaced and ns is None:
            raise errors.not_found_path(request.path)
        if method == "GET":
            if target.watch_prefix:
                raise errors.method_not_allowed("watch a single object with a field selector")
            obj = self.store.get(rt, ns, name)
            if wants_table(request.headers.get("Accept")):
                return json_response(
                    tables.table(
                        rt,
                        [obj],
                        self.clock(),
                        resource_version=obj["metadata"]["resourceVersion"],
                        include_object=query.get("includeObject", "Metadata"),
                    )
                )
            return json_response(obj)
        if method == "PUT":
            body = await read_body(request, self.max_body_bytes)
            warnings = fieldvalidation.check(rt, body, query.get("fieldValidation"))
            obj = self.store.update(rt, ns, name, body, subresource=sub, dry_run=dry_run)
            return warned(json_response(obj), warnings)
        if method == "PATCH":
            kind = patch_type(request.headers.get("Content-Type"))
            if kind is None:
                raise errors.unsupported_media_type(
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: {', '.join(t.value for t in PatchType)}"
                )
            body = await read_body(request, self.max_body_bytes, yaml_ok=kind is PatchType.APPLY)
            current = self._current(rt, ns, name)
            warnings = fieldvalidation.check(rt, body, query.get("fieldValidation"), kind, current)
            obj = self.store.patch(rt, ns, name, kind, body, subresource=sub, dry_run=dry_run)
            status = 200 if current is not None or kind is not PatchType.APPLY else 201
            return warned(json_response(obj, status), warnings)
        if method == "DELETE":
            if sub is not None:
                raise errors.method_not_allowed("a subresource cannot be deleted")
            options = await read_body(request, self.max_body_bytes, optional=True)
            preconditions = options.get("preconditions") if isinstance(options, Mapping) else None
            obj = self.store.delete(rt, ns, name, preconditions=preconditions, dry_run=dry_run)
            return json_response(obj)
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
            return json_response(table)
        metadata: dict[str, Any] = {"resourceVersion": rv_text}
        if result.continue_token:
            metadata["continue"] = result.continue_token
            metadata["remainingItemCount"] = result.remaining
        return json_response(
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": metadata,
                "items": result.items,
            }
        )


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
