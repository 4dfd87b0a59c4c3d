"""The BGP speaker's Kubernetes API source: its input from informers, ServiceBGPStatus back.

It watches what MetalLB's BGP speaker watches: Services, EndpointSlices, Nodes, Namespaces,
and the IPAddressPools, BGPPeers, BGPAdvertisements, Communities and BFDProfiles of its
namespace (and its ServiceBGPStatuses). Like the layer-2 source it does not allocate: a
Service is announced with the IPs the controller wrote into status.loadBalancer.ingress (and
only where an IP lies in a pool a BGPAdvertisement selects; pikube.lb.bgp.routes decides the
rest). Services, EndpointSlices, Nodes and Namespaces are parsed one by one (a bad one is set
aside and named); the BGP configuration is parsed as a whole, because its objects refer to
each other (Community aliases, BFDProfile names, aggregation lengths against pools), and a bad
configuration keeps the last valid one, as the directory source does.

Reporting back: the speaker binds a function saying which services it advertises to which
peers, and the metric families whose change may change that (`bind`: sessions up, UPDATEs
sent). When one changes, when the speaker has taken a new input, or when a ServiceBGPStatus
changes (and at least every REPORT_SAFETY_S; at most once per REPORT_MIN_INTERVAL_S), the
source turns the difference with the cached ServiceBGPStatus objects into writes
(pikube.lb.bgp.status.plan) and makes them, so an object follows sessions going up and down,
goes when a service is withdrawn, and what a previous run left behind is deleted at start.
When the speaker stops, this node's objects are deleted. Nothing is polled (the informer
wiring and the report loop are the layer-2 source's: `informed`).

Must not: decide what is announced or what the status says (routes and status do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from pikube.lb.bgp import status as bgp_status
from pikube.lb.bgp.routes import BgpInput
from pikube.lb.config import ConfigError, Origin, parse_documents
from pikube.lb.kube.api import (
    BFD_PROFILES,
    BGP_ADVERTISEMENTS,
    BGP_PEERS,
    COMMUNITIES,
    ENDPOINT_SLICES,
    IP_ADDRESS_POOLS,
    NAMESPACES,
    NODES,
    SERVICE_BGP_STATUSES,
    SERVICES,
    ApiStatusError,
    Kind,
    KubeClient,
    Obj,
)
from pikube.lb.kube.client_metrics import ClientMetrics
from pikube.lb.kube.convert import API_ORIGIN, Converter, Problem
from pikube.lb.kube.events import reference
from pikube.lb.kube.informer import Watched
from pikube.lb.metrics import Family, Registry
from pikube.lb.model import ClusterResources, IPAddress, ServiceType
from pikube.lb.sources.informed import REPORT_SAFETY_S, InformedSource

log = logging.getLogger("pikube.source")

__all__ = ["REPORT_MIN_INTERVAL_S", "REPORT_SAFETY_S", "BgpInputBuilder", "KubeBgpSource"]

REPORT_MIN_INTERVAL_S = 0.1  # a burst of UPDATEs makes one round of writes, not one each
PENDING_S = 5.0  # how long our own write stands in for what the informer has not seen yet
FINAL_CLEANUP_S = 3.0
CONFIG_KINDS = (IP_ADDRESS_POOLS, BGP_PEERS, BGP_ADVERTISEMENTS, COMMUNITIES, BFD_PROFILES)

Advertised = Callable[[], Mapping[str, Iterable[str]]]


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _words(problem: Problem) -> str:
    where = f"{problem.namespace}/{problem.name}" if problem.namespace else problem.name
    return f"{problem.kind} {where}: {problem.message}"


def _config_error(exc: ConfigError) -> str:
    parts = [p for p in (exc.obj, exc.field) if p]
    return "BGP configuration: " + ": ".join([*parts, exc.problem])


@dataclass
class BgpInputBuilder:
    """The speaker's input from the informers' objects. Pure (remembers parsing results and the
    last valid BGP configuration)."""

    load_balancer_class: str | None = None
    converter: Converter = field(default_factory=Converter)
    _config: ClusterResources = field(default_factory=ClusterResources)
    _config_signature: tuple[tuple[str, str], ...] | None = None
    _config_problem: str = ""

    def build(self, objects: Mapping[Kind, Sequence[Obj]]) -> BgpInput:
        cluster, problems = self.converter.resources(
            services=objects.get(SERVICES, ()),
            namespaces=objects.get(NAMESPACES, ()),
            nodes=objects.get(NODES, ()),
            endpoint_slices=objects.get(ENDPOINT_SLICES, ()),
        )
        words = [_words(p) for p in problems]
        config_objects = [o for kind in CONFIG_KINDS for o in objects.get(kind, ())]
        config_objects += list(objects.get(NODES, ()))  # localPref checks read node labels
        signature = tuple(
            sorted(
                (str((o.get("metadata") or {}).get("uid", "")),
                 str((o.get("metadata") or {}).get("resourceVersion", "")))
                for o in config_objects
            )
        )  # fmt: skip
        if signature != self._config_signature:
            self._config_signature = signature
            try:
                self._config = parse_documents(
                    [(o, Origin(API_ORIGIN, i + 1)) for i, o in enumerate(config_objects)]
                )
                self._config_problem = ""
            except ConfigError as exc:
                self._config_problem = _config_error(exc) + "; keeping the last valid one"
        if self._config_problem:
            words.append(self._config_problem)
        resources = replace(
            cluster,
            pools=self._config.pools,
            bgp_peers=self._config.bgp_peers,
            bgp_advertisements=self._config.bgp_advertisements,
            communities=self._config.communities,
            bfd_profiles=self._config.bfd_profiles,
        )
        allocations: dict[str, tuple[IPAddress, ...]] = {
            s.key: tuple(s.ingress_ips)
            for s in resources.services
            if s.type is ServiceType.LOAD_BALANCER
            and s.load_balancer_class == self.load_balancer_class
            and s.ingress_ips
        }
        return BgpInput(resources, allocations, tuple(sorted(words)))


@dataclass
class KubeBgpSource(InformedSource):
    """`pikube lb bgp-speaker --source kube`."""

    written_kinds: ClassVar[tuple[Kind, ...]] = (SERVICE_BGP_STATUSES,)
    written_what: ClassVar[str] = "ServiceBGPStatus"

    report_min_interval_s: float = REPORT_MIN_INTERVAL_S
    _advertised: Advertised | None = None
    # name -> (the object as our last write left it, when); name -> when we deleted it
    _written: dict[str, tuple[Obj, float]] = field(default_factory=dict)
    _deleted: dict[str, float] = field(default_factory=dict)

    def bind(
        self,
        advertised: Advertised,
        registry: Registry | None = None,
        signals: Iterable[Family] = (),
    ) -> None:
        """What the speaker advertises now (service key -> peer names); the families whose
        change may change that (a session's state, UPDATEs sent); and where to export the API
        client's metrics (MetalLB's names, as the layer-2 source does)."""
        self._advertised = advertised
        for family in signals:
            family.watchers.append(self.announcements_changed)
        if registry is None:
            return
        self._client = ClientMetrics.on(registry)
        self._client.stale.set(0)

    async def updates(self) -> AsyncIterator[BgpInput]:
        api, owned = await self._client_api()
        try:
            async for item in self._inputs(api):
                yield item
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._remove_all(api), FINAL_CLEANUP_S)
            await self._close(api, owned)

    async def _inputs(self, api: KubeClient) -> AsyncIterator[BgpInput]:
        ns = self.namespace
        inputs = [
            Watched(SERVICES),
            Watched(ENDPOINT_SLICES),
            Watched(NODES),
            Watched(NAMESPACES),
            *(Watched(kind, ns) for kind in CONFIG_KINDS),
        ]
        builder = BgpInputBuilder(self.load_balancer_class)
        async with asyncio.TaskGroup() as tasks:
            informer = await self._start_informer(
                api, [*inputs, Watched(SERVICE_BGP_STATUSES, ns)], tasks
            )
            tasks.create_task(self._report_back(api), name="bgp status")
            last: BgpInput | None = None
            while True:
                self._wake.clear()
                objects = {w.kind: list(informer.objects(w.kind).values()) for w in inputs}
                item = builder.build(objects)
                if item != last:
                    last = item
                    yield item
                    # The speaker has applied it: the services behind its prefixes may differ.
                    self.announcements_changed()
                    self._loaded()
                await self._wake.wait()

    # -- reporting back -----------------------------------------------------------------------

    def _view(self) -> list[Obj]:
        """The cached ServiceBGPStatus objects, with our own writes the cache has not seen yet
        (for at most PENDING_S: after that the cache is right, whoever wrote last)."""
        assert self.informer is not None
        cached = {
            str(o["metadata"]["name"]): o
            for o in self.informer.objects(SERVICE_BGP_STATUSES).values()
        }
        now = time.monotonic()
        for name, since in list(self._deleted.items()):
            if name not in cached or now - since > PENDING_S:
                del self._deleted[name]
        view = dict(cached)
        for name, (mine, since) in list(self._written.items()):
            seen = cached.get(name)
            caught_up = seen is not None and _rv(seen) == _rv(mine)
            if caught_up or now - since > PENDING_S:
                del self._written[name]
            else:
                view[name] = mine
        return [obj for name, obj in view.items() if name not in self._deleted]

    async def _report_back(self, api: KubeClient) -> None:
        pod = await self._pod(api)
        owner = reference(pod) if pod is not None else None
        await self._report_loop(lambda: self.report(api, owner))

    async def report(self, api: KubeClient, owner: Mapping[str, str] | None = None) -> None:
        """One round: make this node's ServiceBGPStatus objects say what it advertises."""
        advertised = self._advertised() if self._advertised is not None else {}
        view = self._view()
        by_name = {str(o["metadata"]["name"]): o for o in view}
        for action in bgp_status.plan(self.node, advertised, view):
            await self._do(api, action, owner, by_name)

    async def _do(
        self,
        api: KubeClient,
        action: bgp_status.Action,
        owner: Mapping[str, str] | None,
        by_name: Mapping[str, Obj],
    ) -> None:
        ns = self.namespace
        kind = SERVICE_BGP_STATUSES
        if isinstance(action, bgp_status.Delete):
            try:
                await api.request("DELETE", kind.path(ns, action.name))
            except ApiStatusError as exc:
                if exc.status != 404:
                    raise
            self._written.pop(action.name, None)
            self._deleted[action.name] = time.monotonic()
            return
        if isinstance(action, bgp_status.Create):
            body = bgp_status.new_object(self.node, action.service, ns, owner)
            obj = await api.request("POST", kind.path(ns), body=body)
            log.info("ServiceBGPStatus %s for %s", obj["metadata"]["name"], action.service)
        else:
            obj = dict(by_name[action.name])
            wanted_labels = bgp_status.labels(self.node, action.service)
            if (obj["metadata"].get("labels") or {}) != wanted_labels:
                obj["metadata"] = {**obj["metadata"], "labels": wanted_labels}
                obj = await api.request("PUT", kind.path(ns, action.name), body=obj)
        name = str(obj["metadata"]["name"])
        # Until the cache shows it, our copy stands in: the next round must not create again.
        self._written[name] = (obj, time.monotonic())
        obj = {**obj, "status": bgp_status.status(self.node, action.service, action.peers)}
        try:
            written = await api.request("PUT", kind.path(ns, name, "status"), body=obj)
        except ApiStatusError as exc:
            if exc.status == 409 and isinstance(action, bgp_status.Update):
                self._written.pop(name, None)  # someone else wrote: start from the cache
            raise
        self._written[name] = (written, time.monotonic())

    async def _remove_all(self, api: KubeClient) -> None:
        """The speaker stops: it advertises nothing any more."""
        if self.informer is None:
            return
        view = self._view()
        by_name = {str(o["metadata"]["name"]): o for o in view}
        for action in bgp_status.plan(self.node, {}, view):
            await self._do(api, action, None, by_name)
