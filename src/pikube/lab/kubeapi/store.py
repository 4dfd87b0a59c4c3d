"""The API stand-in's object store: what etcd plus the API server's generic registry do. Pure.

Theory of operation. Every write (create, update, status update, patch, delete) takes the next
value of one global resourceVersion counter and appends a `Change` to the log of its resource
(one log per group+resource, bounded to `window` changes). Watchers subscribe with a filter
(namespace, label and field selectors); each change is offered to the matching watchers
synchronously, inside the write, so a watcher never misses one: the store calls the watcher's
`sink`, and the adapter around it buffers and writes. A watch from resourceVersion N replays
the logged changes after N, or fails with 410 Gone when the log no longer reaches back to N.
A watcher whose selector starts or stops matching an object sees ADDED or DELETED, as with
the real server's watch cache.

Semantics kept from the real API server: uid, creationTimestamp, generation (bumped when
anything but metadata and status changes), 409 on a stale resourceVersion and on creating an
existing name, the status subresource (changes only .status; the main resource ignores
.status), deletion with finalizers (deletionTimestamp, then gone when the last finalizer is
removed), namespaced and cluster-scoped objects, no-op updates that keep the resourceVersion,
CRDs that make their kinds servable, and deleting a namespace deletes what it holds (the
namespace controller's job, done at once since the lab runs no controllers).

Must not: do I/O, read the clock itself (it is given one), or know about HTTP.
"""

from __future__ import annotations

import base64
import binascii
import copy
import enum
import json
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pikube.lab.kubeapi import errors, schema
from pikube.lab.kubeapi.defaults import (
    Cause,
    Exhausted,
    Invalid,
    ServiceAllocator,
    default_object,
    validate_metadata,
    validate_spec,
)
from pikube.lab.kubeapi.errors import ApiError
from pikube.lab.kubeapi.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from pikube.lab.kubeapi.resources import CrdError, Registry, ResourceType, types_from_crd
from pikube.lab.kubeapi.selectors import FieldSelector, LabelSelector

Obj = dict[str, Any]
DEFAULT_WINDOW = 10_000
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"
    ERROR = "ERROR"


class PatchType(enum.Enum):
    JSON = "application/json-patch+json"
    MERGE = "application/merge-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    APPLY = "application/apply-patch+yaml"


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class WatchEvent:
    """One event as a watcher sees it; its JSON line is encoded once and shared by watchers."""

    __slots__ = ("_encoded", "obj", "rv", "type")

    def __init__(self, type_: EventType, obj: Mapping[str, Any], rv: int) -> None:
        self.type = type_
        self.obj = obj
        self.rv = rv
        self._encoded: dict[str, bytes] = {}

    def encode(self, api_version: str | None = None) -> bytes:
        """The event as one line of a watch stream, with the object at `api_version`."""
        key = api_version or ""
        line = self._encoded.get(key)
        if line is None:
            obj = self.obj
            if api_version and obj.get("apiVersion") not in (None, api_version):
                obj = {**obj, "apiVersion": api_version}
            line = b'{"type":"' + self.type.value.encode() + b'","object":' + _dumps(obj) + b"}\n"
            self._encoded[key] = line
        return line


@dataclass(frozen=True)
class Change:
    """A logged write: the object before (None for a create) and after (None for a delete)."""

    rv: int
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None
    # The events a watcher sees for it, by how its filter matched (old, new): shared encodings.
    events: dict[tuple[bool, bool], WatchEvent] = field(default_factory=dict, compare=False)

    def event_for(self, old_matches: bool, new_matches: bool) -> WatchEvent | None:
        key = (old_matches, new_matches)
        if not old_matches and not new_matches:
            return None
        event = self.events.get(key)
        if event is None:
            if self.new is None:
                assert self.old is not None
                event = WatchEvent(EventType.DELETED, self.old, self.rv)
            elif not old_matches:
                event = WatchEvent(EventType.ADDED, self.new, self.rv)
            elif not new_matches:
                event = WatchEvent(EventType.DELETED, self.new, self.rv)
            else:
                event = WatchEvent(EventType.MODIFIED, self.new, self.rv)
            self.events[key] = event
        return event


@dataclass(eq=False)
class Watcher:
    """A subscription: the store calls `sink` with each event that passes the filter."""

    rt: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    sink: Callable[[WatchEvent], None]

    def __post_init__(self) -> None:
        self._everything = not self.labels.requirements and not self.fields.requirements

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self._everything:
            return True
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def offer(self, change: Change) -> None:
        event = change.event_for(self.matches(change.old), self.matches(change.new))
        if event is not None:
            self.sink(event)


@dataclass(frozen=True)
class ListResult:
    items: list[Mapping[str, Any]]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


_NAME_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
NAMESPACES = "namespaces"
CRDS = "customresourcedefinitions.apiextensions.k8s.io"


class Store:
    def __init__(
        self,
        registry: Registry | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        window: int = DEFAULT_WINDOW,
        service_cidr: str | None = None,
        uid_factory: Callable[[], str] = lambda: str(uuid.uuid4()),
        rng: random.Random | None = None,
    ) -> None:
        self.registry = registry or Registry()
        self.clock = clock
        self.window = window
        self.allocator = ServiceAllocator(service_cidr) if service_cidr else ServiceAllocator()
        self.uid_factory = uid_factory
        self.rng = rng or random.Random()
        self.rv = 0
        self._objects: dict[str, dict[tuple[str, str], Mapping[str, Any]]] = {}
        self._logs: dict[str, deque[Change]] = {}
        self._compacted: dict[str, int] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        for name in SYSTEM_NAMESPACES:
            self.create(self._type("", "v1", "namespaces"), None, {"metadata": {"name": name}})

    # -- helpers ----------------------------------------------------------------------------

    def _type(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.registry.lookup(group, version, plural)
        assert rt is not None, (group, version, plural)
        return rt

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], Mapping[str, Any]]:
        return self._objects.setdefault(rt.storage_key, {})

    def _present(self, rt: ResourceType, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        """The stored object as `rt`'s version shows it (CRD versions differ in apiVersion)."""
        if obj.get("apiVersion") == rt.api_version:
            return obj
        return {**obj, "apiVersion": rt.api_version}

    def _record(
        self, rt: ResourceType, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
    ) -> None:
        key = rt.storage_key
        change = Change(self.rv, old, new)
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = deque()
        if len(log) >= self.window:
            self._compacted[key] = log.popleft().rv
        log.append(change)
        for watcher in list(self._watchers.get(key, ())):
            watcher.offer(change)

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _namespace_of(self, rt: ResourceType, namespace: str | None) -> str:
        if rt.namespaced:
            if not namespace:
                raise errors.bad_request(f"{rt.plural} is namespaced: a namespace is required")
            return namespace
        return ""

    def _check_type_meta(self, rt: ResourceType, body: Mapping[str, Any]) -> None:
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if api_version is not None and api_version != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        if kind is not None and kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )

    def _validate(self, rt: ResourceType, obj: Obj) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        try:
            validate_metadata(rt, obj)
            validate_spec(rt, obj)
            if rt.custom and rt.schema is not None:
                causes = schema.validate(rt.schema, obj)
                if causes:
                    raise Invalid(causes)
            if rt.storage_key == CRDS:
                types_from_crd(obj)
        except Invalid as exc:
            raise errors.invalid(rt, name, exc.causes) from exc
        except CrdError as exc:
            raise errors.invalid(rt, name, [Cause("spec", str(exc))]) from exc

    def _default(self, rt: ResourceType, obj: Obj, old: Mapping[str, Any] | None) -> None:
        if rt.custom and rt.schema is not None:
            schema.prune(rt.schema, obj)  # as the real server, whatever the field validation
        try:
            default_object(rt, obj, self.allocator, old)
        except Invalid as exc:
            name = str(obj["metadata"].get("name", ""))
            raise errors.invalid(rt, name, exc.causes) from exc
        except Exhausted as exc:
            raise ApiError(500, "InternalError", str(exc)) from exc

    # -- reads ------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Mapping[str, Any]:
        ns = self._namespace_of(rt, namespace)
        obj = self._bucket(rt).get((ns, name))
        if obj is None:
            raise errors.not_found(rt, name)
        return self._present(rt, obj)

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
        *,
        limit: int = 0,
        continue_token: str = "",
    ) -> ListResult:
        labels = labels or LabelSelector()
        fields = fields or FieldSelector()
        bucket = self._bucket(rt)
        keys: Iterable[tuple[str, str]]
        name = fields.exact("metadata.name")
        ns_pin = namespace if rt.namespaced else None
        if name is not None and (ns_pin is not None or not rt.namespaced):
            keys = [(ns_pin or "", name)]
        else:
            keys = sorted(bucket)
        start = _decode_continue(continue_token) if continue_token else None
        items: list[Mapping[str, Any]] = []
        remaining = 0
        last: tuple[str, str] | None = None
        for key in keys:
            if start is not None and key <= start:
                continue
            if ns_pin is not None and key[0] != ns_pin:
                continue
            obj = bucket.get(key)
            if obj is None:
                continue
            if not labels.matches((obj.get("metadata") or {}).get("labels")):
                continue
            if not fields.matches(obj):
                continue
            if limit and len(items) >= limit:
                remaining += 1
                continue
            items.append(self._present(rt, obj))
            last = key
        token = _encode_continue(last) if remaining and last is not None else ""
        return ListResult(items, self.rv, token, remaining if token else None)

    # -- writes -----------------------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: Mapping[str, Any],
        *,
        dry_run: bool = False,
    ) -> Mapping[str, Any]:
        if not isinstance(body, Mapping):
            raise errors.bad_request("the body of a create must be an object")
        self._check_type_meta(rt, body)
        obj: Obj = copy.deepcopy(dict(body))
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(self.rng.choice(_NAME_SUFFIX) for _ in range(5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        ns = self._namespace_of(rt, namespace)
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        self._validate(rt, obj)
        name = str(meta["name"])
        if rt.namespaced:
            self._require_live_namespace(rt, ns, name)
        if (ns, name) in self._bucket(rt):
            raise errors.already_exists(rt, name)
        for key in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ):
            meta.pop(key, None)
        if rt.status_subresource and not rt.status_on_create:
            obj.pop("status", None)
        self._default(rt, obj, None)
        if rt.storage_key == CRDS:
            _accept_crd(obj, format_time(self.clock()))
        if dry_run:
            meta["uid"] = self.uid_factory()
            meta["creationTimestamp"] = format_time(self.clock())
            return obj
        meta["uid"] = self.uid_factory()
        meta["creationTimestamp"] = format_time(self.clock())
        meta["generation"] = 1
        meta["resourceVersion"] = str(self._next_rv())
        self._bucket(rt)[(ns, name)] = obj
        if rt.storage_key == CRDS:
            self.registry.set_crd(name, types_from_crd(obj))
        self._record(rt, None, obj)
        return self._present(rt, obj)

    def _require_live_namespace(self, rt: ResourceType, ns: str, name: str) -> None:
        ns_obj = self._objects.get(NAMESPACES, {}).get(("", ns))
        if ns_obj is None:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', name=ns)
        if (ns_obj.get("metadata") or {}).get("deletionTimestamp"):
            raise errors.forbidden(
                rt,
                name,
                f"unable to create new content in namespace {ns} because it is being terminated",
            )

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        require_rv: bool | None = None,
    ) -> Mapping[str, Any]:
        """PUT: replace the object (or only its .status, for the status subresource)."""
        if not isinstance(body, Mapping) or not isinstance(body.get("metadata", {}), Mapping):
            raise errors.bad_request("the body of an update must be an object with metadata")
        self._check_type_meta(rt, body)
        ns = self._namespace_of(rt, namespace)
        current = self._bucket(rt).get((ns, name))
        if current is None:
            raise errors.not_found(rt, name)
        meta_in = body.get("metadata") or {}
        if meta_in.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta_in.get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        if rt.namespaced and meta_in.get("namespace") not in (None, "", ns):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        given_rv = meta_in.get("resourceVersion")
        if require_rv is None:
            require_rv = rt.custom
        if given_rv in (None, "") and require_rv:
            raise errors.invalid(
                rt,
                name,
                [
                    Cause(
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        if given_rv not in (None, "") and str(given_rv) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        cur_meta = current["metadata"]
        if subresource == "status":
            new: Obj = copy.deepcopy(dict(current))
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
            if rt.group == "" and rt.plural == "services":
                # The real server's Service status strategy resets only the spec: labels and
                # annotations sent to /status are kept (MetalLB writes its pool annotation so).
                for key in ("labels", "annotations"):
                    if key in meta_in:
                        new["metadata"][key] = copy.deepcopy(meta_in[key])
                    else:
                        new["metadata"].pop(key, None)
        else:
            new = copy.deepcopy(dict(body))
            new["apiVersion"], new["kind"] = current["apiVersion"], rt.kind
            meta = new.setdefault("metadata", {})
            for key in (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if key in cur_meta:
                    meta[key] = cur_meta[key]
                else:
                    meta.pop(key, None)
            meta.pop("managedFields", None)
            if rt.status_subresource:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
            self._validate(rt, new)
            self._default(rt, new, current)
        return self._commit_update(rt, ns, name, current, new, dry_run=dry_run)

    def _commit_update(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        current: Mapping[str, Any],
        new: Obj,
        *,
        dry_run: bool,
    ) -> Mapping[str, Any]:
        meta = new["metadata"]
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        if _spec_part(new) != _spec_part(current):
            meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if new == current:
            return self._present(rt, current)  # a no-op write keeps the resourceVersion
        if rt.storage_key == CRDS:
            _accept_crd(new, format_time(self.clock()))
        if dry_run:
            return self._present(rt, new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(rt, ns, name, new)
        meta["resourceVersion"] = str(self._next_rv())
        self._bucket(rt)[(ns, name)] = new
        if rt.storage_key == CRDS:
            self.registry.set_crd(name, types_from_crd(new))
        self._record(rt, current, new)
        return self._present(rt, new)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: PatchType,
        patch: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Mapping[str, Any]:
        ns = self._namespace_of(rt, namespace)
        current = self._bucket(rt).get((ns, name))
        if patch_type is PatchType.STRATEGIC and rt.custom:
            raise errors.unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml"
            )
        if current is None:
            if patch_type is PatchType.APPLY and subresource is None:
                if not isinstance(patch, Mapping):
                    raise errors.bad_request("an apply patch must be an object")
                body = copy.deepcopy(dict(patch))
                body.setdefault("metadata", {})["name"] = name
                return self.create(rt, namespace, body, dry_run=dry_run)
            raise errors.not_found(rt, name)
        shown = self._present(rt, current)
        try:
            if patch_type is PatchType.JSON:
                patched = json_patch(shown, patch)
            elif patch_type is PatchType.MERGE:
                patched = merge_patch(shown, patch)
            elif patch_type is PatchType.STRATEGIC:
                patched = strategic_merge_patch(shown, patch)
            else:  # server-side apply, approximated: a merge without field ownership
                if isinstance(patch, Mapping):
                    self._check_type_meta(rt, patch)
                patched = (merge_patch if rt.custom else strategic_merge_patch)(shown, patch)
        except PatchError as exc:
            raise ApiError(
                422, "Invalid", f"the patch could not be applied: {exc}", name=name, rt=rt
            ) from exc
        if not isinstance(patched, Mapping) or not isinstance(patched.get("metadata"), Mapping):
            raise ApiError(
                422,
                "Invalid",
                "the patched object is not an object with metadata",
                name=name,
                rt=rt,
            )
        patched_rv = patched["metadata"].get("resourceVersion")
        if (
            patched_rv not in (None, "")
            and str(patched_rv) != current["metadata"]["resourceVersion"]
        ):
            raise errors.conflict(rt, name)
        patched = dict(patched)
        patched["metadata"] = {
            **patched["metadata"],
            "resourceVersion": current["metadata"]["resourceVersion"],
        }
        return self.update(
            rt, namespace, name, patched, subresource=subresource, dry_run=dry_run, require_rv=False
        )

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Mapping[str, Any]:
        ns = self._namespace_of(rt, namespace)
        current = self._bucket(rt).get((ns, name))
        if current is None:
            raise errors.not_found(rt, name)
        meta = current["metadata"]
        pre = preconditions or {}
        if pre.get("uid") not in (None, "") and pre["uid"] != meta.get("uid"):
            raise errors.precondition_failed(
                rt,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                f"object meta: {meta.get('uid')}",
            )
        if (
            pre.get("resourceVersion") not in (None, "")
            and str(pre["resourceVersion"]) != meta["resourceVersion"]
        ):
            raise errors.precondition_failed(
                rt,
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                f"{meta['resourceVersion']}",
            )
        if dry_run:
            return self._present(rt, current)
        if rt.storage_key == NAMESPACES:
            return self._delete_namespace(rt, current)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return self._present(rt, current)
            new = copy.deepcopy(dict(current))
            new["metadata"]["deletionTimestamp"] = format_time(self.clock())
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            self._bucket(rt)[(ns, name)] = new
            self._record(rt, current, new)
            return self._present(rt, new)
        return self._remove(rt, ns, name, current)

    def _remove(
        self, rt: ResourceType, ns: str, name: str, current: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        gone = copy.deepcopy(dict(current))
        gone["metadata"]["resourceVersion"] = str(self._next_rv())
        del self._bucket(rt)[(ns, name)]
        if rt.kind == "Service" and rt.group == "":
            self.allocator.release(current)
        self._record_delete(rt, current, gone)
        if rt.storage_key == CRDS:
            self._drop_crd(name, current)
        if ns:
            self._maybe_finish_namespace(ns)
        return self._present(rt, gone)

    def _record_delete(
        self, rt: ResourceType, old: Mapping[str, Any], gone: Mapping[str, Any]
    ) -> None:
        # The DELETED event carries the object at the deletion's resourceVersion; filters are
        # evaluated on the last stored state.
        key = rt.storage_key
        change = Change(self.rv, gone, None)
        log = self._logs.setdefault(key, deque())
        if len(log) >= self.window:
            self._compacted[key] = log.popleft().rv
        log.append(change)
        for watcher in list(self._watchers.get(key, ())):
            if watcher.matches(old):
                event = change.event_for(True, False)
                assert event is not None
                watcher.sink(event)

    def _drop_crd(self, crd_name: str, crd: Mapping[str, Any]) -> None:
        types = types_from_crd(crd)
        self.registry.remove_crd(crd_name)
        if not types:
            return
        rt = types[0]
        for (ns, name), obj in list(self._bucket(rt).items()):
            self._remove_quietly(rt, ns, name, obj)

    def _remove_quietly(self, rt: ResourceType, ns: str, name: str, obj: Mapping[str, Any]) -> None:
        gone = copy.deepcopy(dict(obj))
        gone["metadata"]["resourceVersion"] = str(self._next_rv())
        del self._bucket(rt)[(ns, name)]
        self._record_delete(rt, obj, gone)

    def _delete_namespace(self, rt: ResourceType, current: Mapping[str, Any]) -> Mapping[str, Any]:
        ns = str(current["metadata"]["name"])
        if not current["metadata"].get("deletionTimestamp"):
            new = copy.deepcopy(dict(current))
            new["metadata"]["deletionTimestamp"] = format_time(self.clock())
            new.setdefault("status", {})["phase"] = "Terminating"
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            self._bucket(rt)[("", ns)] = new
            self._record(rt, current, new)
            current = new
        for other in self.registry.all():
            if not other.namespaced or other.storage_key == NAMESPACES:
                continue
            bucket = self._bucket(other)
            for key in [k for k in bucket if k[0] == ns]:
                obj = bucket.get(key)
                if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
                    continue
                self.delete(other, ns, key[1])
        finished = self._maybe_finish_namespace(ns)
        return finished if finished is not None else self._present(rt, current)

    def _maybe_finish_namespace(self, ns: str) -> Mapping[str, Any] | None:
        rt = self._type("", "v1", "namespaces")
        ns_obj = self._bucket(rt).get(("", ns))
        if ns_obj is None or not (ns_obj.get("metadata") or {}).get("deletionTimestamp"):
            return None
        for key, bucket in self._objects.items():
            if key != NAMESPACES and any(k[0] == ns for k in bucket):
                return None
        if (ns_obj.get("metadata") or {}).get("finalizers"):
            return None
        return self._remove(rt, "", ns, ns_obj)

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> list[Mapping[str, Any]]:
        result = self.list_objects(rt, namespace, labels, fields)
        deleted = []
        for obj in result.items:
            meta = obj["metadata"]
            deleted.append(self.delete(rt, meta.get("namespace"), meta["name"]))
        return deleted

    # -- watching ---------------------------------------------------------------------------

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector | None,
        fields: FieldSelector | None,
        sink: Callable[[WatchEvent], None],
        *,
        resource_version: str | None = None,
        send_initial_events: bool = False,
    ) -> Watcher:
        """Subscribe; initial or replayed events reach `sink` before this returns.

        resource_version None, "" or "0" (or send_initial_events): a synthetic ADDED for each
        matching object, then live changes (plus a BOOKMARK marking the end of the initial
        events when send_initial_events is set). A number N: the changes after N, then live
        ones; 410 Gone (ApiError) when the log no longer reaches back to N.
        """
        watcher = Watcher(
            rt,
            namespace if rt.namespaced else None,
            labels or LabelSelector(),
            fields or FieldSelector(),
            sink,
        )
        key = rt.storage_key
        if send_initial_events or resource_version in (None, "", "0"):
            for obj in self.list_objects(rt, namespace, labels, fields).items:
                sink(WatchEvent(EventType.ADDED, obj, int(obj["metadata"]["resourceVersion"])))
            if send_initial_events:
                sink(self.bookmark(rt, initial_events_end=True))
        else:
            try:
                since = int(str(resource_version))
            except ValueError as exc:
                raise errors.bad_request(
                    f"invalid resourceVersion {resource_version!r}: must be a number"
                ) from exc
            compacted = self._compacted.get(key, 0)
            if since < compacted:
                raise errors.gone(since, compacted + 1)
            for change in self._logs.get(key, ()):
                if change.rv > since:
                    if change.new is None:
                        if watcher.matches(change.old):
                            event = change.event_for(True, False)
                            assert event is not None
                            sink(event)
                    else:
                        watcher.offer(change)
        self._watchers.setdefault(key, set()).add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(watcher.rt.storage_key)
        if watchers is not None:
            watchers.discard(watcher)

    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def bookmark(self, rt: ResourceType, *, initial_events_end: bool = False) -> WatchEvent:
        meta: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if initial_events_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
        return WatchEvent(EventType.BOOKMARK, obj, self.rv)

    def compact(self) -> None:
        """Forget every logged change: a watch from any older resourceVersion now gets 410."""
        for key in list(self._logs):
            self._logs[key].clear()
        for rt in self.registry.all():
            self._compacted[rt.storage_key] = self.rv


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What generation tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _accept_crd(crd: Obj, now: str) -> None:
    spec = crd.get("spec") or {}
    previous = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions") or ()}
    storage = [v.get("name") for v in spec.get("versions") or () if v.get("storage")]
    crd["status"] = {
        "acceptedNames": copy.deepcopy(spec.get("names") or {}),
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": previous.get("NamesAccepted", {}).get(
                    "lastTransitionTime", now
                ),
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": previous.get("Established", {}).get(
                    "lastTransitionTime", now
                ),
            },
        ],
        "storedVersions": storage,
    }


def _encode_continue(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        ns, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        return (str(ns), str(name))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise errors.bad_request(f"invalid continue token {token!r}") from exc
