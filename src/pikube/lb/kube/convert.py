"""API objects (dicts, as the informers cache them) -> pikube's model, one object at a time.

pikube.lb.config parses a whole configuration and stops at its first error, which is right for
a directory of files a user is editing. On a cluster, objects arrive one by one from different
people: one bad object must not stop the others. So each object is parsed on its own, a bad one
is set aside with a `Problem` naming it and its field (for an Event and a log line), and pools
that overlap an older pool are set aside the same way. Pure; parsing results are remembered by
uid and resourceVersion, so an unchanged object is never parsed twice.

Must not: talk to the API or decide allocations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pikube.lb.config import ConfigError, Origin, parse_documents
from pikube.lb.model import ClusterResources, Node

API_ORIGIN = "the Kubernetes API"


@dataclass(frozen=True)
class Problem:
    """An object pikube cannot use, and why (one line that names the object and the field)."""

    kind: str
    namespace: str | None
    name: str
    message: str
    uid: str = ""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _describe(error: ConfigError) -> str:
    parts = [p for p in (error.obj, error.field) if p]
    return ": ".join([*parts, error.problem])


def problem_of(obj: Mapping[str, Any], error: ConfigError) -> Problem:
    meta = _meta(obj)
    return Problem(
        kind=str(obj.get("kind", "")),
        namespace=meta.get("namespace"),
        name=str(meta.get("name", "")),
        message=_describe(error),
        uid=str(meta.get("uid", "")),
    )


def _created(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(obj)
    return (str(meta.get("creationTimestamp", "")), str(meta.get("name", "")))


@dataclass
class Converter:
    """Parses API objects into `ClusterResources`, remembering what it parsed."""

    _parsed: dict[tuple[str, str], ClusterResources | Problem] = field(default_factory=dict)

    def parse(self, obj: Mapping[str, Any]) -> ClusterResources | Problem:
        meta = _meta(obj)
        memo_key = (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
        known = self._parsed.get(memo_key) if all(memo_key) else None
        if known is not None:
            return known
        try:
            result: ClusterResources | Problem = parse_documents([(obj, Origin(API_ORIGIN, 1))])
        except ConfigError as exc:
            result = problem_of(obj, exc)
        if all(memo_key):
            if len(self._parsed) > 100_000:
                self._parsed.clear()
            self._parsed[memo_key] = result
        return result

    def resources(
        self,
        *,
        pools: Iterable[Mapping[str, Any]] = (),
        l2_advertisements: Iterable[Mapping[str, Any]] = (),
        services: Iterable[Mapping[str, Any]] = (),
        namespaces: Iterable[Mapping[str, Any]] = (),
        nodes: Iterable[Mapping[str, Any]] = (),
        endpoint_slices: Iterable[Mapping[str, Any]] = (),
    ) -> tuple[ClusterResources, tuple[Problem, ...]]:
        """Everything usable, and a Problem for each object set aside."""
        problems: list[Problem] = []
        accepted_pools = self._pools(pools, problems)
        parts: list[ClusterResources] = []
        for group in (l2_advertisements, services, namespaces, endpoint_slices):
            for obj in group:
                parsed = self.parse(obj)
                if isinstance(parsed, Problem):
                    problems.append(parsed)
                else:
                    parts.append(parsed)
        node_values: list[Node] = []
        for obj in nodes:
            parsed = self.parse(obj)
            if isinstance(parsed, Problem):
                problems.append(parsed)
                continue
            spec = obj.get("spec")
            cordoned = isinstance(spec, Mapping) and spec.get("unschedulable") is True
            node_values.extend(
                replace(n, unschedulable=True) if cordoned else n for n in parsed.nodes
            )
        return (
            ClusterResources(
                pools=accepted_pools,
                l2_advertisements=tuple(a for p in parts for a in p.l2_advertisements),
                services=tuple(s for p in parts for s in p.services),
                namespaces=tuple(n for p in parts for n in p.namespaces),
                nodes=tuple(node_values),
                endpoint_slices=tuple(e for p in parts for e in p.endpoint_slices),
            ),
            tuple(problems),
        )

    def _pools(
        self, pools: Iterable[Mapping[str, Any]], problems: list[Problem]
    ) -> tuple[Any, ...]:
        """Valid pools; of two that overlap, the older one stays (MetalLB's webhook would have
        refused the newer one)."""
        valid: list[tuple[Mapping[str, Any], ClusterResources]] = []
        for obj in sorted(pools, key=_created):
            parsed = self.parse(obj)
            if isinstance(parsed, Problem):
                problems.append(parsed)
            else:
                valid.append((obj, parsed))
        accepted: list[Mapping[str, Any]] = []
        result: list[Any] = []
        for obj, parsed in valid:
            try:
                parse_documents(
                    [(o, Origin(API_ORIGIN, i + 1)) for i, o in enumerate([*accepted, obj])]
                )
            except ConfigError as exc:
                problems.append(problem_of(obj, exc))
                continue
            accepted.append(obj)
            result.extend(parsed.pools)
        return tuple(result)


def by_namespace(objs: Sequence[Mapping[str, Any]], namespace: str | None) -> list[Any]:
    """The objects in `namespace` (all of them when None)."""
    if namespace is None:
        return list(objs)
    return [o for o in objs if _meta(o).get("namespace") == namespace]
