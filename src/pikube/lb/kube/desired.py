"""The speaker's desired state from the API's objects, change by change, recomputing only what
changed. Pure (it remembers results, but reads no clock, socket or file).

`pikube.lb.announcing.desired_state` over every Service and EndpointSlice costs O(services x
slices): 0.3-1.3 s per change with 1,000 Services, when a busy cluster changes EndpointSlices
many times a second. The answer for one Service depends only on the configuration (pools,
L2Advertisements, Nodes, Namespaces), that Service, the Services sharing an IP with it (they
form one target) and, of its EndpointSlices, only which nodes have an endpoint that can serve
(`serving_key`). So the builder takes the informers' changes one object at a time (`apply`):
- an EndpointSlice whose Service, address type, endpoints' nodes and conditions are as before
  (`raw_slice_key`, read from the JSON: a Pod's new IP, the common update) costs nothing more;
- otherwise it is parsed, and only if its Service's `serving_key` changed is that Service's
  group marked for recomputation;
- a Service is parsed and compared with what it was; a change of its IPs regroups;
- a configuration change recomputes everything.
`state()` recomputes the marked groups with layer2's rules and replaces only their entries in
the ordered announcements; with nothing marked it returns the previous state object.
`full_desired_state` is the reference the result must equal (tests/unit/lb/test_kube_desired.py
checks it over random changes).

Must not: talk to the API; decide anything layer2 does not decide.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pikube.lb import announcements as announcing
from pikube.lb.kube.api import (
    ENDPOINT_SLICES,
    IP_ADDRESS_POOLS,
    L2_ADVERTISEMENTS,
    NAMESPACES,
    NODES,
    SERVICES,
    Kind,
    Obj,
)
from pikube.lb.kube.convert import Converter, Problem
from pikube.lb.kube.informer import object_key
from pikube.lb.model import ClusterResources, EndpointSlice, Service, ServiceType
from pikube.lb.sources import Announcement, DesiredState

CONFIG_KINDS = (IP_ADDRESS_POOLS, L2_ADVERTISEMENTS, NODES, NAMESPACES)


def _words(problems: Sequence[Problem]) -> list[str]:
    return [f"{p.kind} {p.namespace + '/' if p.namespace else ''}{p.name}: {p.message}"
            for p in problems]  # fmt: skip


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _handled(service: Service, load_balancer_class: str | None) -> bool:
    return (
        service.type is ServiceType.LOAD_BALANCER
        and service.load_balancer_class == load_balancer_class
        and bool(service.ingress_ips)
    )


def _order(announcement: Announcement) -> bytes:
    """layer2's order of announcements: by the target's key IP, as packed bytes."""
    return ipaddress.ip_address(announcement.target.key).packed


def full_desired_state(
    objects: Mapping[Kind, Sequence[Obj]], load_balancer_class: str | None
) -> DesiredState:
    """Everything recomputed from scratch (the reference)."""
    resources, problems = Converter().resources(
        pools=objects.get(IP_ADDRESS_POOLS, ()),
        l2_advertisements=objects.get(L2_ADVERTISEMENTS, ()),
        services=objects.get(SERVICES, ()),
        namespaces=objects.get(NAMESPACES, ()),
        nodes=objects.get(NODES, ()),
        endpoint_slices=objects.get(ENDPOINT_SLICES, ()),
    )
    allocations = {
        s.key: s.ingress_ips for s in resources.services if _handled(s, load_balancer_class)
    }
    state = announcing.desired_state(resources, allocations, _words(problems))
    ordered = sorted(state.announcements, key=_order)
    return DesiredState(announcements=tuple(ordered), problems=tuple(sorted(state.problems)))


ServingKey = tuple[bool, frozenset[str]]


def serving_key(slices: Iterable[EndpointSlice]) -> ServingKey:
    """All a Service's announcements need from its EndpointSlices (layer2's rules read nothing
    else): whether any endpoint can serve, and the nodes of those that can. An EndpointSlice
    update that leaves this unchanged (a Pod's IP, a port, a hint, a condition that does not
    decide serving) changes no announcement."""
    any_serving = False
    nodes: set[str] = set()
    for eps in slices:
        for endpoint in eps.endpoints:
            if endpoint.can_serve:
                any_serving = True
                if endpoint.node_name:
                    nodes.add(endpoint.node_name)
    return any_serving, frozenset(nodes)


@dataclass
class _Slice:
    service_key: str | None
    parsed: tuple[EndpointSlice, ...]
    problems: tuple[str, ...]
    raw_key: object = None


def raw_slice_key(obj: Mapping[str, Any]) -> object:
    """What of an EndpointSlice, read straight from the API's JSON, can matter to an
    announcement: its Service, address type, and each endpoint's node and conditions. None
    when the object is not shaped as expected (then it is parsed in full)."""
    meta = obj.get("metadata")
    endpoints = obj.get("endpoints") or []
    if not isinstance(meta, dict) or not isinstance(endpoints, list):
        return None
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return None
    shaped = []
    for endpoint in endpoints:
        if not isinstance(endpoint, dict):
            return None
        conditions = endpoint.get("conditions") or {}
        if not isinstance(conditions, dict):
            return None
        shaped.append((
            endpoint.get("nodeName"),
            conditions.get("ready"),
            conditions.get("serving"),
            conditions.get("terminating"),
            len(endpoint.get("addresses") or ()),
        ))  # fmt: skip
    service = labels.get("kubernetes.io/service-name")
    return (meta.get("namespace"), service, obj.get("addressType"), tuple(shaped))


@dataclass
class DesiredStateBuilder:
    """The desired state, kept up to date change by change (`apply`, then `state`).

    The cost of a change is that of its own object: a Service is parsed and compared with
    what it was; an EndpointSlice is parsed and its Service's `serving_key` compared; only a
    difference marks that Service's group for recomputation. A configuration change (pools,
    L2Advertisements, Nodes, Namespaces) recomputes everything; a Service whose IPs change
    recomputes the sharing groups. `state()` without any such mark returns the last state
    as it is. `build(objects)` does the same from whole lists (it finds the changes itself).
    """

    load_balancer_class: str | None = None
    converter: Converter = field(default_factory=Converter)
    recomputed_groups: int = 0  # for tests and benches
    _raw: dict[Kind, dict[str, Obj]] = field(default_factory=dict)
    _config: ClusterResources = field(default_factory=ClusterResources)
    _config_problems: tuple[str, ...] = ()
    _services: dict[str, Service] = field(default_factory=dict)  # handled ones only
    _service_problems: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _slices: dict[str, _Slice] = field(default_factory=dict)
    _slices_of: dict[str, set[str]] = field(default_factory=dict)  # service -> slice keys
    _serving: dict[str, ServingKey] = field(default_factory=dict)
    _group_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # group -> (its state, its announcements' sort keys)
    _groups: dict[tuple[str, ...], tuple[DesiredState, tuple[bytes, ...]]] = field(
        default_factory=dict
    )
    _config_dirty: bool = True
    _grouping_dirty: bool = True
    _dirty: set[str] = field(default_factory=set)  # services whose group must be recomputed
    _problems_dirty: bool = True
    _problems: tuple[str, ...] = ()
    _changed: bool = True  # announcements changed since the last state
    # every announcement by its sort key (layer2's order: the key IP's bytes), and those keys
    # in order; a group's recomputation replaces only its own entries
    _announced: dict[bytes, Announcement] = field(default_factory=dict)
    _keys: list[bytes] = field(default_factory=list)
    _last: DesiredState | None = None

    # -- changes ------------------------------------------------------------------------------

    def apply(self, kind: Kind, key: str, obj: Obj | None) -> None:
        """One object changed (`obj`) or went away (None)."""
        known = self._raw.setdefault(kind, {})
        if obj is None:
            if known.pop(key, None) is None:
                return
        else:
            old = known.get(key)
            if old is not None and _rv(old) == _rv(obj) and _rv(obj) and old is obj:
                return
            known[key] = obj
        if kind in CONFIG_KINDS:
            self._config_dirty = True
        elif kind is SERVICES:
            self._service_changed(key, obj)
        elif kind is ENDPOINT_SLICES:
            self._slice_changed(key, obj)

    def _service_changed(self, key: str, obj: Obj | None) -> None:
        service: Service | None = None
        problems: tuple[str, ...] = ()
        if obj is not None:
            parsed = self.converter.parse(obj)
            if isinstance(parsed, Problem):
                problems = tuple(_words([parsed]))
            elif parsed.services and _handled(parsed.services[0], self.load_balancer_class):
                service = parsed.services[0]
        if problems != self._service_problems.get(key, ()):
            self._problems_dirty = True
            if problems:
                self._service_problems[key] = problems
            else:
                self._service_problems.pop(key, None)
        old = self._services.get(key)
        if old == service:
            return
        if service is None:
            del self._services[key]
        else:
            self._services[key] = service
        if old is None or service is None or old.ingress_ips != service.ingress_ips:
            self._grouping_dirty = True
        self._dirty.add(key)

    def _slice_changed(self, key: str, obj: Obj | None) -> None:
        old = self._slices.get(key)
        raw_key = raw_slice_key(obj) if obj is not None else None
        if old is not None and not old.problems and raw_key is not None and raw_key == old.raw_key:
            # Only what the API server itself validated changed (a Pod's address, ports,
            # hints): nothing an announcement reads, nothing pikube's parser would refuse.
            return
        entry = _Slice(None, (), ())
        if obj is not None:
            parsed = self.converter.parse(obj)
            if isinstance(parsed, Problem):
                entry = _Slice(None, (), tuple(_words([parsed])), raw_key)
            else:
                slices = parsed.endpoint_slices
                entry = _Slice(slices[0].service_key if slices else None, slices, (), raw_key)
        if (old.problems if old else ()) != entry.problems:
            self._problems_dirty = True
        if obj is None:
            self._slices.pop(key, None)
        else:
            self._slices[key] = entry
        touched = {entry.service_key, old.service_key if old else None} - {None}
        if old is not None and old.service_key is not None and old.service_key != entry.service_key:
            self._slices_of.get(old.service_key, set()).discard(key)
        if entry.service_key is not None and obj is not None:
            self._slices_of.setdefault(entry.service_key, set()).add(key)
        for service_key in touched:
            assert service_key is not None
            serving = serving_key(self._slices_parsed(service_key))
            if self._serving.get(service_key) != serving:
                self._serving[service_key] = serving
                self._dirty.add(service_key)

    def _slices_parsed(self, service_key: str) -> list[EndpointSlice]:
        return [
            eps
            for slice_key in sorted(self._slices_of.get(service_key, ()))
            for eps in self._slices[slice_key].parsed
            if eps.service_key == service_key
        ]

    def build(self, objects: Mapping[Kind, Sequence[Obj]]) -> DesiredState:
        """The state for these whole lists of objects (the changes found by comparison)."""
        for kind in (*CONFIG_KINDS, SERVICES, ENDPOINT_SLICES):
            fresh = {object_key(o): o for o in objects.get(kind, ())}
            known = self._raw.get(kind, {})
            for key in [k for k in known if k not in fresh]:
                self.apply(kind, key, None)
            for key, obj in fresh.items():
                old = known.get(key)
                if old is None or _rv(old) != _rv(obj) or old != obj:
                    self.apply(kind, key, obj)
        return self.state()

    # -- the state ----------------------------------------------------------------------------

    def _refresh_config(self) -> None:
        raw = self._raw
        self._config, problems = self.converter.resources(
            pools=list(raw.get(IP_ADDRESS_POOLS, {}).values()),
            l2_advertisements=list(raw.get(L2_ADVERTISEMENTS, {}).values()),
            namespaces=list(raw.get(NAMESPACES, {}).values()),
            nodes=list(raw.get(NODES, {}).values()),
        )
        self._config_problems = tuple(_words(problems))
        self._groups.clear()
        self._announced.clear()
        self._keys.clear()
        self._group_of.clear()
        self._grouping_dirty = True
        self._problems_dirty = True

    def _drop(self, group: tuple[str, ...]) -> None:
        found = self._groups.pop(group, None)
        if found is None:
            return
        group_state, order = found
        for key in order:
            del self._announced[key]
            del self._keys[bisect.bisect_left(self._keys, key)]
        if group_state.problems:
            self._problems_dirty = True
        self._changed = True

    def _add(self, group: tuple[str, ...]) -> None:
        group_state, order = found = self._compute(group)
        self._groups[group] = found
        for key, announcement in zip(order, group_state.announcements, strict=True):
            self._announced[key] = announcement
            bisect.insort(self._keys, key)
        if group_state.problems:
            self._problems_dirty = True
        self._changed = True

    def state(self) -> DesiredState:
        """The desired state after the changes applied so far."""
        if self._config_dirty:
            self._config_dirty = False
            self._refresh_config()
        todo: set[tuple[str, ...]] = set()
        if self._grouping_dirty:
            self._grouping_dirty = False
            groups = _sharing_groups(self._services)
            group_of = {key: group for group in groups for key in group}
            for group in [g for g in self._groups if any(group_of.get(k) != g for k in g)]:
                self._drop(group)
            self._group_of = group_of
            todo.update(g for g in groups if g not in self._groups)
        for key in self._dirty:
            found = self._group_of.get(key)
            if found is not None:
                self._drop(found)
                todo.add(found)
        self._dirty.clear()
        for group in todo:
            self._add(group)
        if not (self._changed or self._problems_dirty) and self._last is not None:
            return self._last
        self._changed = False
        if self._problems_dirty:
            self._problems_dirty = False
            problems: list[str] = list(self._config_problems)
            for each in self._service_problems.values():
                problems.extend(each)
            for entry in self._slices.values():
                problems.extend(entry.problems)
            for group_state, _ in self._groups.values():
                problems.extend(group_state.problems)
            self._problems = tuple(sorted(problems))
        self._last = DesiredState(
            announcements=tuple(self._announced[key] for key in self._keys),
            problems=self._problems,
        )
        return self._last

    def _compute(self, group: tuple[str, ...]) -> tuple[DesiredState, tuple[bytes, ...]]:
        resources = replace(
            self._config,
            services=tuple(self._services[key] for key in group),
            endpoint_slices=tuple(e for key in group for e in self._slices_parsed(key)),
        )
        allocations = {key: self._services[key].ingress_ips for key in group}
        state = announcing.desired_state(resources, allocations)
        self.recomputed_groups += 1
        return state, tuple(_order(a) for a in state.announcements)


def _sharing_groups(services: Mapping[str, Service]) -> list[tuple[str, ...]]:
    """Services grouped by shared IPs (connected components), each group's keys sorted."""
    parent = {key: key for key in services}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    owner_of_ip: dict[object, str] = {}
    for key in sorted(services):
        for ip in services[key].ingress_ips:
            other = owner_of_ip.setdefault(ip, key)
            if other != key:
                parent[root(key)] = root(other)
    groups: dict[str, list[str]] = {}
    for key in sorted(services):
        groups.setdefault(root(key), []).append(key)
    return [tuple(keys) for keys in groups.values()]
