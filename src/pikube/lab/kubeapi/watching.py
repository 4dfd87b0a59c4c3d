"""Watch streams of the API stand-in (`server`): one chunked HTTP response per watch, fed by
the store through a buffer.

Each watcher has a buffer the store fills synchronously (events encoded as they come, as JSON
lines or as server-side printed tables); one task per watch drains it in batches. A watcher more
than `max_pending_events` behind is closed (as the real server closes a watcher that cannot keep
up); its client resumes from the last resourceVersion it saw, so no event is lost. The watcher
is always unsubscribed, whether the stream times out, the client goes away or the server closes.

Must not: decide which events a watcher gets (that is the store's job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from pikube.lab.kubeapi import errors, tables
from pikube.lab.kubeapi.bodies import JSON, dumps
from pikube.lab.kubeapi.errors import ApiError
from pikube.lab.kubeapi.resources import ResourceType
from pikube.lab.kubeapi.routing import parse_bool, wants_table
from pikube.lab.kubeapi.store import EventType, Store, WatchEvent

log = logging.getLogger("pikube.kubeapi")

DEFAULT_WATCH_TIMEOUT_S = 1800
WATCH_FLUSH_S = 0.01  # how long a watch stream gathers changes before writing them


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


class WatchStreams:
    """Every open watch stream of one server, and how they are paced."""

    def __init__(
        self,
        store: Store,
        *,
        bookmark_interval_s: float = 60.0,
        max_pending_events: int = 100_000,
        watch_flush_s: float = WATCH_FLUSH_S,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.bookmark_interval_s = bookmark_interval_s
        self.max_pending_events = max_pending_events
        self.watch_flush_s = watch_flush_s
        self.clock = clock
        self.active = 0
        self.closed_slow = 0
        self.closing = False
        self._buffers: set[WatchBuffer] = set()

    def close_all(self) -> None:
        """End every watch stream (on shutdown): clients resume elsewhere or later."""
        self.closing = True
        for buffer in self._buffers:
            buffer.ready.set()

    async def serve(
        self,
        request: web.Request,
        rt: ResourceType,
        ns: str | None,
        selectors: tuple[Any, Any],
    ) -> web.StreamResponse:
        """The watch this request asks for (query: timeoutSeconds, allowWatchBookmarks,
        sendInitialEvents, resourceVersion, includeObject), streamed until it ends."""
        query = request.query
        labels, fields = selectors
        try:
            timeout_s = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT_S)
        except ValueError as exc:
            raise errors.bad_request("timeoutSeconds must be a number") from exc
        bookmarks = parse_bool(query.get("allowWatchBookmarks"))
        send_initial = parse_bool(query.get("sendInitialEvents"))
        as_table = wants_table(request.headers.get("Accept"))
        api_version = rt.api_version if rt.custom else None
        encode = self.table_encoder(rt, query) if as_table else (lambda e: e.encode(api_version))
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
        self.active += 1
        self._buffers.add(buffer)
        try:
            await response.prepare(request)
            await self._pump(response, buffer, rt, timeout_s, bookmarks)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
        finally:
            self.store.unwatch(watcher)
            self._buffers.discard(buffer)
            self.active -= 1
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
                self.closed_slow += 1
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
                await asyncio.sleep(self.watch_flush_s * max(1.0, self.active / 50))

    def table_encoder(
        self, rt: ResourceType, query: Mapping[str, str]
    ) -> Callable[[WatchEvent], bytes]:
        """Events as `kubectl get --watch` asks for them: one Table each, columns only in the
        first; bookmarks as they are."""
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
            return dumps({"type": event.type.value, "object": table}) + b"\n"

        return encode
