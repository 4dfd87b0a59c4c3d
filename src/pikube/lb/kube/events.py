"""Recording Events on objects (core/v1 Events, as client-go's recorder writes them).

Events are best effort, as in Kubernetes, but never on the critical path and never lost
without a word:
- `record` only queues (and logs the event's line at once); writer tasks send the queue, and
  while a daemon holds the recorder (`held()`: the controller's batch of status writes) they
  wait, so that 1,000 Events never compete with the 1,000 status writes they describe.
- As client-go's EventCorrelator: an Event identical to one still queued (same object, type,
  reason, message) is folded into it (`count`), and one identical to an Event already written
  in the last 10 minutes becomes a PATCH of that Event's `count` and `lastTimestamp`; and each
  object has a token bucket (burst 25, one more every 5 minutes) against event storms.
- An Event that cannot be queued (the queue is full, or its object's bucket is empty) or
  written is counted in `dropped` and logged at warning level (the first of each kind of loss,
  then every 100th); one still queued when the daemon stops is counted and logged too.

Pure: `Correlator` (what to do with one Event at a given time). `EventRecorder` is the adapter.
Must not: decide which Events to send (pikube.lb.assignment and the sources do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pikube.lb.assignment import Event
from pikube.lb.kube.api import EVENTS, MERGE_PATCH, ApiStatusError, KubeClient, Obj

log = logging.getLogger("pikube.kube")

BURST = 25  # client-go's spam filter: 25 Events per object at once,
REFILL_S = 300.0  # then one every 5 minutes
SERIES_S = 600.0  # an identical Event within 10 minutes increments the first one's count
REMEMBERED = 4096  # Events written, remembered for that (least recently used forgotten)
WRITERS = 4


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


def object_key(body: Mapping[str, Any]) -> str:
    ref = body.get("involvedObject") or {}
    return str(ref.get("uid") or f"{ref.get('kind')}/{ref.get('namespace')}/{ref.get('name')}")


def series_key(body: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (object_key(body), str(body["type"]), str(body["reason"]), str(body["message"]))


@dataclass
class Written:
    namespace: str
    name: str
    count: int
    at: float


@dataclass
class Correlator:
    """client-go's correlation, as a pure function of the Events seen and the time."""

    burst: int = BURST
    refill_s: float = REFILL_S
    _tokens: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, at)
    _written: OrderedDict[tuple[str, str, str, str], Written] = field(default_factory=OrderedDict)

    def allow(self, key: str, now: float) -> bool:
        """One token from the object's bucket, if it has one."""
        tokens, at = self._tokens.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) / self.refill_s)
        if tokens < 1.0:
            self._tokens[key] = (tokens, now)
            return False
        self._tokens[key] = (tokens - 1.0, now)
        if len(self._tokens) > REMEMBERED * 4:  # full buckets need no memory
            self._tokens = {k: v for k, v in self._tokens.items() if v[0] < self.burst - 1}
        return True

    def series(self, key: tuple[str, str, str, str], now: float) -> Written | None:
        """The Event this one repeats (written within SERIES_S), to be counted up."""
        found = self._written.get(key)
        if found is None or now - found.at > SERIES_S:
            return None
        self._written.move_to_end(key)
        return found

    def wrote(self, key: tuple[str, str, str, str], written: Written) -> None:
        self._written[key] = written
        self._written.move_to_end(key)
        while len(self._written) > REMEMBERED:
            self._written.popitem(last=False)


class EventRecorder:
    def __init__(self, api: KubeClient, component: str, *, limit: int = 10_000) -> None:
        self.api = api
        self.component = component
        self.host = socket.gethostname()
        self._queue: asyncio.Queue[tuple[str, str, str, str]] = asyncio.Queue(limit)
        self._pending: dict[tuple[str, str, str, str], Obj] = {}
        self._correlator = Correlator()
        self._holds = 0
        self._open = asyncio.Event()
        self._open.set()
        self._busy = 0
        self.dropped = 0
        self.written = 0
        self.aggregated = 0

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
        body = event_object(involved, event, self.component, self.host)
        key = series_key(body)
        queued = self._pending.get(key)
        if queued is not None:  # folded into the identical Event still waiting
            queued["count"] += 1
            queued["lastTimestamp"] = body["lastTimestamp"]
            self.aggregated += 1
            return
        if not self._correlator.allow(key[0], time.monotonic()):
            self._lost(body, "its object's rate limit (25, then one per 5 minutes)")
            return
        try:
            self._queue.put_nowait(key)
        except asyncio.QueueFull:
            self._lost(body, "the queue is full")
            return
        self._pending[key] = body

    def _lost(self, body: Mapping[str, Any], why: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 100 == 0:
            involved = body.get("involvedObject") or {}
            log.warning(
                "event %s on %s %s/%s not written: %s (%d events lost so far)",
                body.get("reason"),
                involved.get("kind"),
                involved.get("namespace", "-"),
                involved.get("name"),
                why,
                self.dropped,
            )

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Writers wait while held (queued Events stay queued, none is lost)."""
        self._holds += 1
        self._open.clear()
        try:
            yield
        finally:
            self._holds -= 1
            if self._holds == 0:
                self._open.set()

    async def run(self, writers: int = WRITERS) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(writers):
                group.create_task(self._writer())

    async def _writer(self) -> None:
        while True:
            await self._open.wait()
            key = await self._queue.get()
            await self._open.wait()
            body = self._pending.pop(key, None)
            if body is None:
                continue
            self._busy += 1
            try:
                await self._send(key, body)
            except Exception as exc:
                self._lost(body, str(exc) or type(exc).__name__)
            finally:
                self._busy -= 1

    async def _send(self, key: tuple[str, str, str, str], body: Obj) -> None:
        now = time.monotonic()
        earlier = self._correlator.series(key, now)
        if earlier is not None:
            count = earlier.count + int(body["count"])
            patch = {"count": count, "lastTimestamp": body["lastTimestamp"]}
            try:
                await self.api.request(
                    "PATCH",
                    EVENTS.path(earlier.namespace, earlier.name),
                    body=patch,
                    content_type=MERGE_PATCH,
                )
            except ApiStatusError as exc:
                if exc.status != 404:
                    raise
            else:
                earlier.count, earlier.at = count, now
                self.written += 1
                return
        namespace = body["metadata"]["namespace"]
        await self.api.request("POST", EVENTS.path(namespace), body=body)
        self._correlator.wrote(
            key, Written(namespace, body["metadata"]["name"], int(body["count"]), now)
        )
        self.written += 1

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing being written."""
        return not self._pending and not self._busy

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until queued Events are written, e.g. before exiting; say how many
        were not."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not self.idle:
                    await asyncio.sleep(0.01)
        left = len(self._pending) + self._busy
        if left:
            self.dropped += left
            log.warning("stopping: %d events not written (the API too slow or away)", left)
