"""The Kubernetes API source: the speaker's desired state from informers, and what the speaker
reports back (ServiceL2Status objects, the `nodeAssigned` Event).

It watches what MetalLB's speaker watches: Services, EndpointSlices, Nodes, Namespaces, and
the IPAddressPools and L2Advertisements of its namespace. It does not allocate: a Service is
announced with the IPs the controller wrote into its status (status.loadBalancer.ingress), and
only while they lie in a pool. From there the rules are MetalLB's, applied by
pikube.lb.announcements (a serving endpoint; an L2Advertisement selecting the pool, service and
node; schedulable, network available, not excluded by label; externalTrafficPolicy Local keeps the
nodes with a local endpoint), and the same `DesiredState` comes out as from a directory of
manifests, so the speaker does not know which source it has.

When the API becomes unreachable the informers keep their caches: no new state is yielded, the
speaker keeps announcing what it announces, the log says so once, and
`metallb_k8s_client_config_stale_bool` is 1 until the API answers again.

Reporting back: the speaker binds its metrics to the source (`bind`); what it announces is its
`metallb_speaker_announced` gauge (service, protocol, node, ip). For each service it announces
the source keeps one ServiceL2Status in its namespace (generateName `l2-`, labels
metallb.io/node, metallb.io/service-name, metallb.io/service-namespace; status node,
serviceName, serviceNamespace, interfaces; owned by the speaker's Pod when POD_NAME says which)
and deletes it when the node stops; a newly announced service gets the Event `nodeAssigned`.
A node taking a service over deletes the other nodes' statuses for it (a crashed node cannot
delete its own, and only one node announces a service in layer 2).

Must not: decide who announces (the speaker's election does) or allocate IPs (the controller).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pikube.errors import PikubeError
from pikube.lb.assignment import Event, EventType
from pikube.lb.kube.api import (
    ENDPOINT_SLICES,
    IP_ADDRESS_POOLS,
    L2_ADVERTISEMENTS,
    NAMESPACES,
    NODES,
    SECRETS,
    SERVICE_L2_STATUSES,
    SERVICES,
    ApiStatusError,
    Kind,
    KubeClient,
    Obj,
    connect,
)
from pikube.lb.kube.client_metrics import ClientMetrics
from pikube.lb.kube.desired import DesiredStateBuilder
from pikube.lb.kube.events import EventRecorder, reference
from pikube.lb.kube.informer import Change, ChangeType, Watched
from pikube.lb.metrics import Family, Registry
from pikube.lb.sources import DesiredState
from pikube.lb.sources.informed import REPORT_RETRY_S, REPORT_SAFETY_S, InformedSource

__all__ = ["REPORT_RETRY_S", "REPORT_SAFETY_S", "KubeSource", "read_secret_key"]

log = logging.getLogger("pikube.source")

SPEAKER_COMPONENT = "metallb-speaker"
NODE_LABEL = "metallb.io/node"
SERVICE_NAME_LABEL = "metallb.io/service-name"
SERVICE_NAMESPACE_LABEL = "metallb.io/service-namespace"
PROTOCOL_LAYER2 = "layer2"
# What the desired state is made of (ServiceL2Statuses are what the source writes back).
BUILDER_KINDS = (SERVICES, ENDPOINT_SLICES, NODES, NAMESPACES, IP_ADDRESS_POOLS, L2_ADVERTISEMENTS)


class SpeakerMetricsLike(Protocol):
    registry: Registry
    announced: Family


def l2_status_object(
    node: str,
    service_key: str,
    namespace: str,
    owner: Mapping[str, Any] | None,
) -> Obj:
    """A new ServiceL2Status (MetalLB's shape) for a service this node announces."""
    service_namespace, _, service_name = service_key.partition("/")
    meta: dict[str, Any] = {
        "generateName": "l2-",
        "namespace": namespace,
        "labels": {
            NODE_LABEL: node,
            SERVICE_NAME_LABEL: service_name,
            SERVICE_NAMESPACE_LABEL: service_namespace,
        },
    }
    if owner is not None:
        ref = reference(owner)
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": ref["name"], "uid": ref["uid"]}
        ]
    return {"apiVersion": SERVICE_L2_STATUSES.api_version, "kind": "ServiceL2Status",
            "metadata": meta}  # fmt: skip


def l2_status(node: str, service_key: str, interfaces: tuple[str, ...]) -> Obj:
    service_namespace, _, service_name = service_key.partition("/")
    return {
        "node": node,
        "serviceName": service_name,
        "serviceNamespace": service_namespace,
        "interfaces": [{"name": name} for name in interfaces],
    }


@dataclass
class KubeSource(InformedSource):
    """`--source kube`: desired state from the API, ServiceL2Status and Events back to it."""

    written_kinds: ClassVar[tuple[Kind, ...]] = (SERVICE_L2_STATUSES,)
    written_what: ClassVar[str] = "ServiceL2Status"

    interfaces: tuple[str, ...] = ()
    _metrics: SpeakerMetricsLike | None = None
    _interfaces_by_service: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _reported: dict[str, str] = field(default_factory=dict)  # service -> ServiceL2Status name
    _seen: set[str] = field(default_factory=set)  # of those, the ones the informer has shown
    _pending: list[tuple[Kind, Change]] = field(default_factory=list)  # for the builder

    def bind(self, metrics: SpeakerMetricsLike) -> None:
        """The speaker's metrics: where to export the API client's gauges, and what it announces."""
        self._metrics = metrics
        metrics.announced.watchers.append(self.announcements_changed)
        self._client = ClientMetrics.on(metrics.registry)

    def _input_changed(self, kind: Kind, change: Change) -> None:
        if kind in BUILDER_KINDS:
            self._pending.append((kind, change))

    async def updates(self) -> AsyncIterator[DesiredState]:
        api, owned = await self._client_api()
        try:
            async for state in self._states(api):
                yield state
        finally:
            await self._close(api, owned)

    async def _states(self, api: KubeClient) -> AsyncIterator[DesiredState]:
        watched = [
            Watched(SERVICES),
            Watched(ENDPOINT_SLICES),
            Watched(NODES),
            Watched(NAMESPACES),
            Watched(IP_ADDRESS_POOLS, self.namespace),
            Watched(L2_ADVERTISEMENTS, self.namespace),
            Watched(SERVICE_L2_STATUSES, self.namespace),
        ]
        recorder = EventRecorder(api, SPEAKER_COMPONENT)
        builder = DesiredStateBuilder(self.load_balancer_class)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(recorder.run(), name="events")
            await self._start_informer(api, watched, tasks)
            tasks.create_task(self._report_back(api, recorder), name="l2 status")
            last: DesiredState | None = None
            while True:
                self._wake.clear()
                pending, self._pending = self._pending, []
                for kind, change in pending:
                    deleted = change.type is ChangeType.DELETED
                    builder.apply(kind, change.key, None if deleted else change.obj)
                state = builder.state()
                if state is not last and state != last:  # the builder returns `last` as it is
                    self._interfaces_by_service = {
                        service: a.interfaces or self.interfaces
                        for a in state.announcements
                        for service in a.services
                    }
                    last = state
                    yield state
                    self._loaded()
                await self._wake.wait()

    # -- reporting back -----------------------------------------------------------------------

    def announced_services(self) -> set[str]:
        if self._metrics is None:
            return set()
        return {
            labels[0]
            for labels, value in self._metrics.announced.values.items()
            if value and labels[1] == PROTOCOL_LAYER2 and labels[2] == self.node
        }

    async def _report_back(self, api: KubeClient, recorder: EventRecorder) -> None:
        owner = await self._pod(api)
        await self._report_loop(lambda: self._report(api, recorder, owner))

    async def _report(self, api: KubeClient, recorder: EventRecorder, owner: Obj | None) -> None:
        assert self.informer is not None
        announced = self.announced_services()
        existing: dict[str, list[Obj]] = {}  # this node's, by service
        others: dict[str, list[Obj]] = {}  # other nodes', by service
        for obj in self.informer.objects(SERVICE_L2_STATUSES).values():
            labels = (obj.get("metadata") or {}).get("labels") or {}
            key = f"{labels.get(SERVICE_NAMESPACE_LABEL)}/{labels.get(SERVICE_NAME_LABEL)}"
            mine = labels.get(NODE_LABEL) == self.node
            (existing if mine else others).setdefault(key, []).append(obj)
        self._forget_deleted({o["metadata"]["name"] for objs in existing.values() for o in objs})
        services = self.informer.objects(SERVICES)
        for key in sorted(announced):
            if key in existing or key in self._reported:
                continue
            created = await api.request(
                "POST",
                SERVICE_L2_STATUSES.path(self.namespace),
                body=l2_status_object(self.node, key, self.namespace, owner),
            )
            name = created["metadata"]["name"]
            created["status"] = l2_status(
                self.node, key, self._interfaces_by_service.get(key, self.interfaces)
            )
            await api.request(
                "PUT", SERVICE_L2_STATUSES.path(self.namespace, name, "status"), body=created
            )
            self._reported[key] = name
            # One node announces a service in layer 2: taking it over makes the others'
            # statuses stale (a crashed node cannot remove its own). Once, at the takeover.
            for obj in others.get(key, []):
                with contextlib.suppress(ApiStatusError):
                    await api.request(
                        "DELETE", SERVICE_L2_STATUSES.path(self.namespace, obj["metadata"]["name"])
                    )
            service = services.get(key)
            if service is not None:
                recorder.record(
                    service,
                    Event(
                        EventType.NORMAL,
                        "nodeAssigned",
                        f'announcing from node "{self.node}" with protocol "{PROTOCOL_LAYER2}"',
                    ),
                )
        for key, objs in existing.items():
            if key in announced:
                continue
            for obj in objs:
                name = obj["metadata"]["name"]
                with contextlib.suppress(ApiStatusError):
                    await api.request("DELETE", SERVICE_L2_STATUSES.path(self.namespace, name))
        for key in list(self._reported):
            if key not in announced:
                self._seen.discard(self._reported.pop(key))

    def _forget_deleted(self, present: set[str]) -> None:
        """A status this node wrote and the API no longer has is written again (as MetalLB's
        status controller does): deleted by hand, or by MetalLB's speaker on the same node while
        a migration overlaps them. Forgotten once the informer has shown it and shows it no
        more (a status just created may not have reached the informer yet)."""
        for key, name in list(self._reported.items()):
            if name in present:
                self._seen.add(name)
            elif name in self._seen:
                self._seen.discard(name)
                del self._reported[key]


async def read_secret_key(
    kubeconfig: Path | None, namespace: str, name: str, item: str, wait_s: float = 30.0
) -> bytes:
    """The heartbeat key from a Secret (MetalLB's memberlist key: `secretkey` of `memberlist`),
    waiting up to `wait_s` for the controller to create it."""
    api = await connect(kubeconfig)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    last = ""
    try:
        while True:
            try:
                secret = await api.request("GET", SECRETS.path(namespace, name))
                data = (secret.get("data") or {}).get(item)
                if not data:
                    raise PikubeError(
                        f"secret {namespace}/{name} has no {item!r}: the heartbeat key goes there",
                        exit_code=2,
                    )
                return base64.b64decode(data)
            except ApiStatusError as exc:
                last = exc.message
            except (OSError, TimeoutError) as exc:
                last = str(exc) or type(exc).__name__
            if loop.time() > deadline:
                raise PikubeError(
                    f"secret {namespace}/{name}: {last} (the controller creates it; or give "
                    "--key-file)",
                    exit_code=2,
                )
            await asyncio.sleep(0.5)
    finally:
        await api.close()
