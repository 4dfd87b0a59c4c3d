"""The controller daemon (`pikube lb controller`): MetalLB's controller on the Kubernetes API.

It keeps informers on Services, IPAddressPools (in its namespace) and Namespaces, runs the
allocator (pikube.lb.ipam) over them, and for every Service whose outcome changed writes what
pikube.lb.assignment decides: one update of the Service's status subresource (ingress IPs and
the `metallb.io/ip-allocated-from-pool` annotation) and MetalLB's Events.

- Restarts never move an IP: nothing is decided before every cache has synced, and the first
  decision is one `sync` of all Services, which processes the Services already holding IPs in
  their status first (they keep them while valid), then the others.
- No IP is handed out twice: the allocator's state is rebuilt from the statuses, every status
  write carries the resourceVersion it was decided on (a conflict waits for the newer version
  from the watch), and with `--leader-elect` only the holder of the Lease writes.
- Pools or Namespaces changing rebuild the allocator from the previous allocations; a Service
  changing reprocesses only that Service (and any waiting for what it freed).
- An invalid pool is set aside with an Event on it and a log line naming the field; the other
  pools keep working.

Must not: decide allocations (ipam) or status contents (assignment); it is the wiring.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pikube.helpers import METRICS_PORT
from pikube.lb import assignment
from pikube.lb.assignment import (
    CONTROLLER_COMPONENT,
    POOL_ANNOTATION,
    Current,
    Decision,
    Event,
    EventType,
    Outcome,
    StatusWrite,
)
from pikube.lb.ipam import Allocator
from pikube.lb.kube.api import (
    IP_ADDRESS_POOLS,
    NAMESPACES,
    SECRETS,
    SERVICES,
    ApiStatusError,
    Kind,
    KubeClient,
    Obj,
)
from pikube.lb.kube.convert import Converter, Problem
from pikube.lb.kube.events import EventRecorder
from pikube.lb.kube.informer import Change, Informer, Watched
from pikube.lb.kube.lease import LeaderElector
from pikube.lb.metrics import Registry, serve
from pikube.lb.model import Service, ServiceType

log = logging.getLogger("pikube.controller")

DEFAULT_NAMESPACE = "metallb-system"
MEMBERLIST_SECRET = "memberlist"
MEMBERLIST_KEY = "secretkey"
WRITE_CONCURRENCY = 16
RELEASE_TIMEOUT_S = 2.0  # giving the Lease back on a graceful stop; then it expires


@dataclass(frozen=True)
class ControllerSettings:
    kubeconfig: Path | None = None
    namespace: str = DEFAULT_NAMESPACE
    load_balancer_class: str | None = None
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = METRICS_PORT
    leader_elect: bool = False
    identity: str = ""
    lease_duration_s: float = 15.0
    create_memberlist_secret: bool = True
    webhook_port: int | None = None  # serve the admission webhook (pikube.lb.webhook)


class ControllerMetrics:
    def __init__(self) -> None:
        r = self.registry = Registry()
        self.addresses_total = r.gauge(
            "metallb_allocator_addresses_total", "Number of usable IP addresses, per pool", "pool"
        )
        self.in_use = r.gauge(
            "metallb_allocator_addresses_in_use_total",
            "Number of IP addresses in use, per pool",
            "pool",
        )
        self.services = r.gauge(
            "metallb_allocator_services_allocated_total",
            "Number of services with an address from the pool",
            "pool",
        )
        self.updates = r.counter(
            "metallb_k8s_client_updates_total", "Number of k8s object updates that were processed"
        )
        self.update_errors = r.counter(
            "metallb_k8s_client_update_errors_total",
            "Number of k8s object updates that failed for some reason",
        )
        self.config_loaded = r.gauge(
            "metallb_k8s_client_config_loaded_bool",
            "1 if the MetalLB configuration was successfully loaded at least once",
        )
        self.config_stale = r.gauge(
            "metallb_k8s_client_config_stale_bool",
            "1 if running on a stale configuration, because the Kubernetes API is unreachable",
        )
        self.leader = r.gauge("pikube_controller_leader", "1 while this replica may write")


def _ingress_ips(obj: Mapping[str, Any]) -> tuple[str, ...]:
    status = obj.get("status") or {}
    balancer = status.get("loadBalancer") or {} if isinstance(status, Mapping) else {}
    ingress = balancer.get("ingress") or [] if isinstance(balancer, Mapping) else []
    return tuple(str(e["ip"]) for e in ingress if isinstance(e, Mapping) and e.get("ip"))


def current_of(obj: Mapping[str, Any]) -> Current:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return Current(_ingress_ips(obj), annotations.get(POOL_ANNOTATION), dict(annotations))


def status_body(obj: Mapping[str, Any], write: StatusWrite) -> Obj:
    """The Service with the decided status and pool annotation: the body of the /status PUT."""
    meta = dict(obj.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    if write.pool is None:
        annotations.pop(POOL_ANNOTATION, None)
    else:
        annotations[POOL_ANNOTATION] = write.pool
    meta["annotations"] = annotations
    meta.pop("managedFields", None)
    status = dict(obj.get("status") or {})
    status["loadBalancer"] = {"ingress": [{"ip": ip} for ip in write.ips]} if write.ips else {}
    return {**obj, "apiVersion": "v1", "kind": "Service", "metadata": meta, "status": status}


def pool_metrics(
    metrics: ControllerMetrics, allocator: Allocator | None, pools: Any = None
) -> None:
    """MetalLB's per-pool gauges: addresses (when the pools changed), in use and services."""
    if pools is not None:
        metrics.addresses_total.values.clear()
        for pool in pools:
            metrics.addresses_total.set(sum(r.size for r in pool.addresses), pool.name)
    if allocator is None:
        return
    in_use: dict[str, set[str]] = {}
    services: dict[str, int] = {}
    for allocation in allocator.result().allocations.values():
        in_use.setdefault(allocation.pool, set()).update(str(ip) for ip in allocation.ips)
        services[allocation.pool] = services.get(allocation.pool, 0) + 1
    metrics.in_use.values.clear()
    metrics.services.values.clear()
    for (name,) in metrics.addresses_total.values:
        metrics.in_use.set(len(in_use.get(name, ())), name)
        metrics.services.set(services.get(name, 0), name)


@dataclass
class Controller:
    api: KubeClient
    settings: ControllerSettings
    metrics: ControllerMetrics = field(default_factory=ControllerMetrics)
    informer: Informer = field(init=False)
    allocator: Allocator | None = None
    converter: Converter = field(default_factory=Converter)
    reported: dict[str, Outcome | None] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)  # first decisions written
    # Keys in the order their changes arrived: a dict, not a set, so that Services created
    # one after another get a pool's IPs in that order (a set's order is hash-random).
    _dirty: dict[str, None] = field(default_factory=dict)
    _config_dirty: bool = True
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _problems_reported: set[tuple[str, str]] = field(default_factory=set)
    recorder: EventRecorder = field(init=False)
    _leading: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.informer = Informer(
            self.api,
            [
                Watched(SERVICES),
                Watched(IP_ADDRESS_POOLS, self.settings.namespace),
                Watched(NAMESPACES),
            ],
            self._changed,
            on_stale=lambda stale: self.metrics.config_stale.set(1 if stale else 0),
        )
        self.recorder = EventRecorder(self.api, CONTROLLER_COMPONENT)

    def _changed(self, kind: Kind, change: Change) -> None:
        if kind is SERVICES:
            self._dirty[change.key] = None
        else:
            self._config_dirty = True
        self._wake.set()

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        server = None
        if s.metrics_port is not None:
            server = await serve(self.metrics.registry, s.metrics_host, s.metrics_port)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self.informer.run(), name="informer"),
                    group.create_task(self.recorder.run(), name="events"),
                    group.create_task(self._lead(), name="lease"),
                    group.create_task(self._loop(), name="reconcile"),
                ]
                await stop.wait()
                await self.recorder.drain()
                for task in tasks:
                    task.cancel()
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()

    async def _lead(self) -> None:
        s = self.settings
        if not s.leader_elect:
            self._leading.set()
            self.metrics.leader.set(1)
            return
        elector = LeaderElector(
            self.api,
            namespace=s.namespace,
            name="pikube-controller",
            identity=s.identity,
            duration_s=s.lease_duration_s,
        )

        def leading(now_leading: bool) -> None:
            self.metrics.leader.set(1 if now_leading else 0)
            if now_leading:
                log.info("leading: this replica now assigns IPs (%s)", s.identity)
                self._leading.set()
                self._config_dirty = True  # decide everything again from the current caches
                self._wake.set()
            else:
                log.warning("lost the lease: standing by")
                self._leading.clear()

        try:
            await elector.run(leading)
        finally:  # a graceful stop (this task cancelled) gives the Lease back
            await elector.release_on_stop(RELEASE_TIMEOUT_S)

    async def _loop(self) -> None:
        await self.informer.ready.wait()
        log.info(
            "caches synced: %d services, %d pools, %d namespaces",
            len(self.informer.objects(SERVICES)),
            len(self.informer.objects(IP_ADDRESS_POOLS)),
            len(self.informer.objects(NAMESPACES)),
        )
        secret_ready = not self.settings.create_memberlist_secret
        while True:
            await self._leading.wait()
            self._wake.clear()
            if not secret_ready:  # retried on every change: its namespace may come later
                secret_ready = await self._ensure_memberlist_secret()
            await self.reconcile()
            self.synced.set()
            await self._wake.wait()

    # -- deciding ---------------------------------------------------------------------------

    def _service(self, obj: Mapping[str, Any]) -> Service | None:
        parsed = self.converter.parse(obj)
        if isinstance(parsed, Problem):
            self._report_problem(obj, parsed)
            return None
        return parsed.services[0] if parsed.services else None

    def _report_problem(self, obj: Mapping[str, Any], problem: Problem) -> None:
        marker = (
            problem.uid or f"{problem.kind}/{problem.namespace}/{problem.name}",
            problem.message,
        )
        if marker in self._problems_reported:
            return
        self._problems_reported.add(marker)
        self.recorder.record(
            obj, Event(EventType.WARNING, "InvalidConfiguration", f"{problem.message}; ignored")
        )

    def _handled(self, service: Service | None) -> bool:
        return (
            service is not None
            and service.type is ServiceType.LOAD_BALANCER
            and service.load_balancer_class == self.settings.load_balancer_class
        )

    def _rebuild(self, services: dict[str, Service]) -> set[str]:
        pools = list(self.informer.objects(IP_ADDRESS_POOLS).values())
        namespaces = list(self.informer.objects(NAMESPACES).values())
        resources, problems = self.converter.resources(pools=pools, namespaces=namespaces)
        by_key: dict[tuple[str, object, object], Problem] = {
            (p.kind, p.namespace, p.name): p for p in problems
        }
        for obj in pools:
            meta = obj.get("metadata") or {}
            found = by_key.get(("IPAddressPool", meta.get("namespace"), meta.get("name")))
            if found is not None:
                self._report_problem(obj, found)
        previous = self.allocator.result().allocations if self.allocator else None
        self.allocator = Allocator(
            resources.pools,
            resources.namespaces,
            load_balancer_class=self.settings.load_balancer_class,
        )
        self.allocator.sync(services.values(), previous=previous)
        self.metrics.config_loaded.set(1)
        pool_metrics(self.metrics, self.allocator, resources.pools)
        return set(services)

    async def reconcile(self) -> None:
        """Decide and write for every Service whose outcome may have changed."""
        objects = self.informer.objects(SERVICES)
        service: Service | None
        if self._config_dirty or self.allocator is None:
            self._config_dirty = False
            self._dirty.clear()
            services: dict[str, Service] = {}
            for key, each in objects.items():
                service = self._service(each)
                if service is not None:
                    services[key] = service
            keys = self._rebuild(services)
        else:
            dirty, self._dirty = self._dirty, {}
            keys = set(dirty)
            for key in dirty:
                found = objects.get(key)
                service = self._service(found) if found is not None else None
                if service is None:
                    keys.update(self.allocator.delete(key))
                else:
                    keys.update(self.allocator.upsert(service))
            pool_metrics(self.metrics, self.allocator)
        allocator = self.allocator
        assert allocator is not None
        semaphore = asyncio.Semaphore(WRITE_CONCURRENCY)
        writes = []
        for key in sorted(keys):
            obj = objects.get(key)
            if obj is None:
                self.reported.pop(key, None)
                continue
            service = self._service(obj)
            outcome = None
            if self._handled(service):
                outcome = Outcome(allocator.allocation(key), allocator.error(key))
            decision = assignment.decide(
                key, current_of(obj), outcome, previous=self.reported.get(key)
            )
            if decision.write is None:
                self._emit(obj, decision)
                self.reported[key] = outcome
                continue
            writes.append(self._write(semaphore, key, obj, decision, outcome))
        if writes:
            with self.recorder.held():  # the statuses first; their Events after them
                await asyncio.gather(*writes)

    def _emit(self, obj: Mapping[str, Any], decision: Decision) -> None:
        for event in decision.events:
            self.recorder.record(obj, event)

    async def _write(
        self,
        semaphore: asyncio.Semaphore,
        key: str,
        obj: Mapping[str, Any],
        decision: Decision,
        outcome: Outcome | None,
    ) -> None:
        assert decision.write is not None
        namespace, _, name = key.partition("/")
        async with semaphore:
            try:
                await self.api.request(
                    "PUT",
                    SERVICES.path(namespace, name, "status"),
                    body=status_body(obj, decision.write),
                )
            except ApiStatusError as exc:
                self.metrics.update_errors.inc()
                if exc.status in (404, 409):
                    return  # gone, or changed under us: the watch brings the new version
                log.warning("service %s: status not written: %s; retrying", key, exc.message)
                self._retry_later(key)
                return
            except Exception as exc:
                self.metrics.update_errors.inc()
                log.warning("service %s: status not written: %s; retrying", key, exc)
                self._retry_later(key)
                return
        self.metrics.updates.inc()
        self.reported[key] = outcome
        self._emit(obj, decision)
        if decision.write.ips:
            log.info(
                "service %s: %s from pool %s",
                key,
                ", ".join(decision.write.ips),
                decision.write.pool,
            )
        else:
            log.info("service %s: IPs cleared", key)

    def _retry_later(self, key: str, delay_s: float = 1.0) -> None:
        def again() -> None:
            self._dirty[key] = None
            self._wake.set()

        asyncio.get_running_loop().call_later(delay_s, again)

    async def _ensure_memberlist_secret(self) -> bool:
        """MetalLB's controller creates the speakers' shared key; pikube's does the same.
        True once the Secret exists."""
        namespace = self.settings.namespace
        path = SECRETS.path(namespace, MEMBERLIST_SECRET)
        try:
            await self.api.request("GET", path)
            return True
        except ApiStatusError as exc:
            if exc.status != 404:
                log.warning("secret %s/%s: %s", namespace, MEMBERLIST_SECRET, exc.message)
                return False
        except Exception as exc:
            log.warning("secret %s/%s: %s", namespace, MEMBERLIST_SECRET, exc)
            return False
        key_text = secrets.token_urlsafe(48).encode()
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": MEMBERLIST_SECRET, "namespace": namespace},
            "data": {MEMBERLIST_KEY: base64.b64encode(key_text).decode()},
        }
        try:
            await self.api.request("POST", SECRETS.path(namespace), body=body)
        except ApiStatusError as exc:
            if exc.status == 409:  # another replica was first
                return True
            log.info("secret %s/%s not created yet: %s", namespace, MEMBERLIST_SECRET, exc.message)
            return False
        except Exception as exc:
            log.warning("secret %s/%s: %s", namespace, MEMBERLIST_SECRET, exc)
            return False
        log.info("created secret %s/%s (the speakers' key)", namespace, MEMBERLIST_SECRET)
        return True


async def run_controller(settings: ControllerSettings, stop: asyncio.Event) -> None:
    from pikube.lb.kube.api import connect  # noqa: PLC0415

    api = await connect(settings.kubeconfig)
    try:
        log.info(
            "controller started: API %s, pools from namespace %s, load-balancer class %s",
            api.host,
            settings.namespace,
            settings.load_balancer_class or "(none)",
        )
        if settings.webhook_port is None:
            await Controller(api, settings).run(stop)
        else:
            from pikube.lb.webhook.server import run_webhook  # noqa: PLC0415

            async with asyncio.TaskGroup() as group:
                group.create_task(run_webhook(api, settings.namespace, settings.webhook_port, stop))
                group.create_task(Controller(api, settings).run(stop))
    finally:
        await api.close()
    log.info("controller stopped")


def run_forever(settings: ControllerSettings) -> None:
    """Run the controller until SIGTERM or SIGINT."""
    import signal  # noqa: PLC0415

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_controller(settings, stop)

    asyncio.run(main())
