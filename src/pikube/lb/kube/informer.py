"""Informers: a local cache per kind, kept equal to the API server's by list-then-watch.

Theory of operation (the real API server's contract, which the lab's stand-in keeps too):
1. LIST the kind; the list's `metadata.resourceVersion` is the point in history the cache
   now reflects. Replacing the cache with the list yields the differences as changes, so a
   relist after a gap tells consumers exactly what they missed (deletions included).
2. WATCH from that resourceVersion with bookmarks. Every event carries the object's new
   resourceVersion, which becomes the cache's; a BOOKMARK only moves it forward. When the
   server ends the stream (its timeout), the watch resumes from the last resourceVersion: no
   event is lost or repeated.
3. An ERROR event with code 410 (Gone), or a 410 answer, means the server no longer has the
   history after that resourceVersion: relist (step 1).
4. Any other failure (connection refused, reset, TLS, 5xx, a read idle too long) retries after
   an exponential backoff with jitter, from the last resourceVersion; the cache is kept and
   served meanwhile, and the informer is *stale* until a list or watch succeeds again. A
   quiet watch on a lost connection only fails at its idle timeout, so /readyz is also asked
   every few seconds: the informer is stale while that fails too.
The informer is *ready* once every kind has been listed once.

Pure: `Cache`, `interpret`, `Backoff`. The adapter is `Informer`.
Must not: interpret objects (that is the controller's and the sources' job).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pikube.lb.kube.api import ApiStatusError, Kind, KubeClient, Obj

log = logging.getLogger("pikube.kube")


def object_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name` for namespaced objects, `name` for cluster-scoped ones."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class ChangeType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Change:
    type: ChangeType
    key: str
    obj: Obj  # the new object, or for DELETED the last one known


@dataclass
class Cache:
    """One kind's objects by key, and the resourceVersion they reflect. Pure."""

    objects: dict[str, Obj] = field(default_factory=dict)
    resource_version: str = ""
    synced: bool = False

    def replace(self, items: Iterable[Obj], list_resource_version: str) -> list[Change]:
        """The cache becomes exactly `items` (a list's answer); returns what changed."""
        fresh = {object_key(obj): obj for obj in items}
        changes = [
            Change(ChangeType.DELETED, key, old)
            for key, old in self.objects.items()
            if key not in fresh
        ]
        for key, obj in fresh.items():
            old = self.objects.get(key)
            if old is None:
                changes.append(Change(ChangeType.ADDED, key, obj))
            elif resource_version(old) != resource_version(obj) or old != obj:
                changes.append(Change(ChangeType.MODIFIED, key, obj))
        self.objects = fresh
        self.resource_version = list_resource_version
        self.synced = True
        return changes

    def apply(self, change_type: ChangeType, obj: Obj) -> Change | None:
        """A watch event; None if it changes nothing (a replay of what the cache has)."""
        key = object_key(obj)
        rv = resource_version(obj)
        if rv:
            self.resource_version = rv
        old = self.objects.get(key)
        if change_type is ChangeType.DELETED:
            if old is None:
                return None
            del self.objects[key]
            return Change(ChangeType.DELETED, key, obj)
        if old is not None and rv and resource_version(old) == rv:
            return None
        self.objects[key] = obj
        return Change(ChangeType.MODIFIED if old is not None else ChangeType.ADDED, key, obj)


class Action(enum.Enum):
    APPLY = "apply"  # a change to the cache
    BOOKMARK = "bookmark"  # only a newer resourceVersion
    RELIST = "relist"  # 410 Gone: the history is gone
    RETRY = "retry"  # another error: resume later from the same resourceVersion


@dataclass(frozen=True)
class Interpreted:
    action: Action
    change_type: ChangeType | None = None
    obj: Obj | None = None
    resource_version: str = ""
    message: str = ""


def interpret(event: Mapping[str, Any]) -> Interpreted:
    """What one line of a watch stream means for the informer. Pure."""
    kind = event.get("type")
    obj = event.get("object")
    if not isinstance(obj, dict):
        return Interpreted(Action.RETRY, message=f"malformed watch event {str(event)[:100]}")
    if kind == "BOOKMARK":
        return Interpreted(Action.BOOKMARK, resource_version=resource_version(obj))
    if kind == "ERROR":
        code = obj.get("code")
        message = str(obj.get("message", "watch error"))
        if code == 410 or obj.get("reason") in ("Expired", "Gone"):
            return Interpreted(Action.RELIST, message=message)
        return Interpreted(Action.RETRY, message=message)
    try:
        change_type = ChangeType(kind)
    except ValueError:
        return Interpreted(Action.RETRY, message=f"unknown watch event type {kind!r}")
    return Interpreted(Action.APPLY, change_type, obj, resource_version(obj))


@dataclass(frozen=True)
class Backoff:
    """Delays between retries: exponential, capped, with jitter ("equal jitter": half fixed,
    half random) so that many clients cut off together do not come back together. Pure:
    the random number in [0, 1) is given."""

    first_s: float = 0.1
    cap_s: float = 10.0
    factor: float = 2.0

    def delay_s(self, failures: int, unit: float) -> float:
        if failures <= 0:
            return 0.0
        ceiling = min(self.cap_s, self.first_s * self.factor ** (failures - 1))
        return ceiling / 2 + ceiling / 2 * unit


# --- the adapter --------------------------------------------------------------------------------

OnChange = Callable[[Kind, Change], None]


@dataclass(frozen=True)
class Watched:
    """A kind to keep in cache, optionally only in one namespace or with a label selector."""

    kind: Kind
    namespace: str | None = None
    label_selector: str = ""


_FAILURES: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    ApiStatusError,
    ValueError,  # a truncated JSON line
)


class Informer:
    """Keeps one `Cache` per watched kind up to date; calls `on_change` for every change."""

    def __init__(
        self,
        api: KubeClient,
        watched: Sequence[Watched],
        on_change: OnChange | None = None,
        *,
        backoff: Backoff | None = None,
        watch_timeout_s: tuple[float, float] = (240.0, 480.0),
        idle_timeout_s: float = 90.0,
        on_stale: Callable[[bool], None] | None = None,
        health_interval_s: float | None = 5.0,
    ) -> None:
        self.api = api
        self.watched = tuple(watched)
        self.caches: dict[str, Cache] = {w.kind.plural: Cache() for w in self.watched}
        self.on_change = on_change
        self.on_stale = on_stale
        self.backoff = backoff or Backoff()
        self.watch_timeout_s = watch_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.ready = asyncio.Event()
        self.relists = 0  # after a 410, for tests and metrics
        self.errors = 0
        self._failing: set[str] = set()
        self.health_interval_s = health_interval_s

    def objects(self, kind: Kind) -> Mapping[str, Obj]:
        return self.caches[kind.plural].objects

    @property
    def stale(self) -> bool:
        """True while some kind could not be listed or watched (its cache may be old)."""
        return bool(self._failing)

    def _set_failing(self, kind: Kind, failing: bool) -> None:
        was = self.stale
        if failing:
            self._failing.add(kind.plural)
        else:
            self._failing.discard(kind.plural)
        if was != self.stale:
            if self.stale:
                log.warning("Kubernetes API unreachable: serving the last known state")
            else:
                log.info("Kubernetes API reachable again: state is current")
            if self.on_stale is not None:
                self.on_stale(self.stale)

    async def run(self) -> None:
        """Run until cancelled."""
        async with asyncio.TaskGroup() as group:
            for watched in self.watched:
                group.create_task(self._run_kind(watched), name=f"informer-{watched.kind.plural}")
            if self.health_interval_s is not None:
                group.create_task(self._check_health(self.health_interval_s), name="api-health")

    async def _check_health(self, interval_s: float) -> None:
        """A quiet watch cannot tell a silent API from a lost one (until its idle timeout):
        ask /readyz every `interval_s`, so `stale` says within seconds that the API is away."""
        health = Kind("Health", "", "", "")
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.api.request("GET", "/readyz", timeout_s=min(2.0, interval_s))
            except _FAILURES:
                self._set_failing(health, True)
            else:
                self._set_failing(health, False)

    def _query(self, watched: Watched) -> dict[str, str]:
        return {"labelSelector": watched.label_selector} if watched.label_selector else {}

    def _emit(self, kind: Kind, changes: Iterable[Change]) -> None:
        if self.on_change is None:
            return
        for change in changes:
            self.on_change(kind, change)

    async def _list(self, watched: Watched, cache: Cache) -> None:
        body = await self.api.request(
            "GET", watched.kind.path(watched.namespace), query=self._query(watched)
        )
        items = [i for i in body.get("items") or [] if isinstance(i, dict)]
        for item in items:
            # A list's items carry no kind; consumers read objects as the API writes them.
            item.setdefault("apiVersion", watched.kind.api_version)
            item.setdefault("kind", watched.kind.kind)
        rv = str((body.get("metadata") or {}).get("resourceVersion", ""))
        self._emit(watched.kind, cache.replace(items, rv))
        if all(c.synced for c in self.caches.values()):
            self.ready.set()

    async def _run_kind(self, watched: Watched) -> None:
        kind = watched.kind
        cache = self.caches[kind.plural]
        failures = 0
        relist = True
        while True:
            try:
                if relist:
                    await self._list(watched, cache)
                    relist = False
                    failures = 0
                    self._set_failing(kind, False)
                relist = await self._watch_once(watched, cache)
                if relist:
                    self.relists += 1
                    log.info("%s: resourceVersion too old (410), relisting", kind.plural)
                failures = 0
            except ApiStatusError as exc:
                if exc.status == 410:
                    self.relists += 1
                    relist = True
                    continue
                failures = await self._failed(kind, failures, exc)
            except _FAILURES as exc:
                failures = await self._failed(kind, failures, exc)

    async def _failed(self, kind: Kind, failures: int, exc: BaseException) -> int:
        failures += 1
        self.errors += 1
        self._set_failing(kind, True)
        delay = self.backoff.delay_s(failures, random.random())
        log.debug("%s: %s; retrying in %.2f s", kind.plural, exc or type(exc).__name__, delay)
        await asyncio.sleep(delay)
        return failures

    async def _watch_once(self, watched: Watched, cache: Cache) -> bool:
        """One watch stream from the cache's resourceVersion; True when a relist is needed."""
        low, high = self.watch_timeout_s
        query = {
            **self._query(watched),
            "resourceVersion": cache.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(random.uniform(low, high))),
        }
        path = watched.kind.path(watched.namespace)
        events = self.api.watch(
            path,
            query,
            idle_timeout_s=self.idle_timeout_s,
            on_open=lambda: self._set_failing(watched.kind, False),
        )
        async for event in events:
            meaning = interpret(event)
            if meaning.action is Action.RELIST:
                return True
            if meaning.action is Action.RETRY:
                raise ApiStatusError(500, meaning.message)
            if meaning.action is Action.BOOKMARK:
                if meaning.resource_version:
                    cache.resource_version = meaning.resource_version
                continue
            assert meaning.change_type is not None
            assert meaning.obj is not None
            change = cache.apply(meaning.change_type, meaning.obj)
            if change is not None:
                self._emit(watched.kind, (change,))
        return False
