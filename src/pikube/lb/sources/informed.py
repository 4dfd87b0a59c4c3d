"""What the two Kubernetes API sources share (`kube`: layer 2, `kube_bgp`: BGP): the client,
the informer and its wiring, MetalLB's `metallb_k8s_client_*` metrics, the speaker's Pod as
the owner of what they write, and the loop that writes a status back.

Each source watches two sorts of kinds: those its input is made of (a change wakes the input
loop) and the status kind it writes back (a change wakes the report loop, so a status deleted by
someone else is written again). The report loop sleeps until woken: by such a change, by the
speaker saying what it announces changed, or every REPORT_SAFETY_S at the latest; after an API
error it tries again REPORT_RETRY_S later. No polling: each wake-up costs an idle speaker CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pikube.lb.kube.api import Kind, KubeClient, Obj, connect
from pikube.lb.kube.client_metrics import ClientMetrics, report_stale
from pikube.lb.kube.informer import Change, Informer, Watched

log = logging.getLogger("pikube.source")

# Statuses are reconciled when what the node announces or the statuses change, and at least
# this often.
REPORT_SAFETY_S = 10.0
REPORT_RETRY_S = 1.0  # after an API error


@dataclass
class InformedSource:
    """The common part of a speaker's source fed by the Kubernetes API."""

    # The kinds a source writes back; a change of one wakes the report loop, not the input.
    written_kinds: ClassVar[tuple[Kind, ...]] = ()
    written_what: ClassVar[str] = "status"  # for the log

    node: str
    kubeconfig: Path | None = None
    namespace: str = "metallb-system"
    load_balancer_class: str | None = None
    pod_name: str | None = field(default_factory=lambda: os.environ.get("POD_NAME") or None)
    api: KubeClient | None = None
    informer: Informer | None = None
    # At most one report round per this many seconds (a burst of changes makes one round).
    report_min_interval_s: float = 0.0
    report_errors: int = 0
    _client: ClientMetrics | None = None  # MetalLB's metallb_k8s_client_* metrics
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _report_wake: asyncio.Event = field(default_factory=asyncio.Event)

    # -- the informer -------------------------------------------------------------------------

    def _changed(self, kind: Kind, change: Change) -> None:
        if self._client is not None:
            self._client.updates.inc()
        if kind in self.written_kinds:
            self._report_wake.set()
        else:
            self._input_changed(kind, change)
            self._wake.set()

    def _input_changed(self, kind: Kind, change: Change) -> None:
        """One change of an input kind (before the input loop wakes)."""

    def _set_stale(self, stale: bool) -> None:
        report_stale(self._client, stale)

    async def _client_api(self) -> tuple[KubeClient, bool]:
        """The API client, and whether this source opened it (and so must close it)."""
        owned = self.api is None
        self.api = self.api or await connect(self.kubeconfig)
        return self.api, owned

    @staticmethod
    async def _close(api: KubeClient, owned: bool) -> None:
        if owned:
            with contextlib.suppress(Exception):
                await asyncio.shield(api.close())

    async def _start_informer(
        self, api: KubeClient, watched: Sequence[Watched], tasks: asyncio.TaskGroup
    ) -> Informer:
        """The informer running in `tasks`, once its caches are synced."""
        informer = self.informer = Informer(api, watched, self._changed, on_stale=self._set_stale)
        tasks.create_task(informer.run(), name="informer")
        await informer.ready.wait()
        log.info("Kubernetes API %s: caches synced", api.host)
        return informer

    def _loaded(self) -> None:
        """The speaker has taken its first input."""
        if self._client is not None:
            self._client.loaded.set(1)

    # -- writing back -------------------------------------------------------------------------

    def announcements_changed(self) -> None:
        """What the speaker announces (may have) changed: the report loop wakes."""
        self._report_wake.set()

    async def _pod(self, api: KubeClient) -> Obj | None:
        """The speaker's Pod (POD_NAME), the owner of what the source writes; None outside one."""
        if not self.pod_name:
            return None
        with contextlib.suppress(Exception):
            return await api.request(
                "GET", f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}"
            )
        log.warning("pod %s/%s not found: %s objects get no owner",
                    self.namespace, self.pod_name, self.written_what)  # fmt: skip
        return None

    async def _report_loop(self, report: Callable[[], Awaitable[None]]) -> None:
        """`report` now, then whenever woken (or every REPORT_SAFETY_S), REPORT_RETRY_S after
        an error."""
        loop = asyncio.get_running_loop()
        while True:
            self._report_wake.clear()
            started = loop.time()
            try:
                await report()
            except Exception as exc:
                self.report_errors += 1
                if self._client is not None:
                    self._client.update_errors.inc()
                log.debug("%s not updated: %s", self.written_what, exc)
                await asyncio.sleep(REPORT_RETRY_S)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._report_wake.wait(), REPORT_SAFETY_S)
            rest = self.report_min_interval_s - (loop.time() - started)
            if rest > 0:
                await asyncio.sleep(rest)
