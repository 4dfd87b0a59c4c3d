"""Recording Events on objects (core/v1 Events, as client-go's recorder writes them).

Events are best effort, as in Kubernetes: they go through a bounded queue and one writer task,
never delay a status write, and one that cannot be written is logged and dropped.

Must not: decide which Events to send (pikube.lb.assignment and the sources do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pikube.lb.assignment import Event
from pikube.lb.kube.api import EVENTS, ApiStatusError, KubeClient, Obj

log = logging.getLogger("pikube.kube")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reference(obj: Mapping[str, Any]) -> dict[str, str]:
    """An ObjectReference to `obj` (for involvedObject, ownerReferences)."""
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": str(obj.get("apiVersion", "v1")),
        "kind": str(obj.get("kind", "")),
        "name": str(meta.get("name", "")),
        "uid": str(meta.get("uid", "")),
        "resourceVersion": str(meta.get("resourceVersion", "")),
    }
    if meta.get("namespace"):
        ref["namespace"] = str(meta["namespace"])
    return ref


def event_object(involved: Mapping[str, Any], event: Event, component: str, host: str) -> Obj:
    ref = reference(involved)
    namespace = ref.get("namespace", "default")
    stamp = _now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref['name']}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": ref,
        "reason": event.reason,
        "message": event.message,
        "type": event.type.value,
        "source": {"component": component, "host": host},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": host,
    }


class EventRecorder:
    def __init__(self, api: KubeClient, component: str, *, limit: int = 1000) -> None:
        self.api = api
        self.component = component
        self.host = socket.gethostname()
        self._queue: asyncio.Queue[Obj] = asyncio.Queue(limit)
        self.dropped = 0
        self.written = 0

    def record(self, involved: Mapping[str, Any], event: Event) -> None:
        log.log(
            logging.WARNING if event.type.value == "Warning" else logging.INFO,
            "%s %s/%s: %s: %s",
            involved.get("kind", ""),
            (involved.get("metadata") or {}).get("namespace") or "-",
            (involved.get("metadata") or {}).get("name", ""),
            event.reason,
            event.message,
        )
        try:
            self._queue.put_nowait(event_object(involved, event, self.component, self.host))
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        while True:
            body = await self._queue.get()
            namespace = body["metadata"]["namespace"]
            try:
                await self.api.request("POST", EVENTS.path(namespace), body=body)
                self.written += 1
            except (ApiStatusError, OSError, TimeoutError, ValueError) as exc:
                self.dropped += 1
                log.debug("event %s not written: %s", body["reason"], exc)
            except Exception as exc:
                self.dropped += 1
                log.debug("event %s not written: %s", body["reason"], exc)

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Wait (bounded) until queued Events are written, e.g. before exiting."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not self._queue.empty():
                    await asyncio.sleep(0.01)
