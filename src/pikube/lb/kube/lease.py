"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

MetalLB runs one controller with no election; pikube may run two replicas, the standby taking
over within the lease duration. The rules (pure, `lease_action`):
- no Lease: create it with ourselves as holder;
- we hold it: renew (spec.renewTime) every duration / 3;
- another holder: follow, unless the Lease record has not changed for a whole duration *as
  measured by our own monotonic clock since we saw it change* (client-go's rule: it does not
  trust the other node's wall clock), then take it over (one more leaseTransition);
- a leader that could not renew for 2/3 of the duration stops writing before anyone may take
  over, so two replicas never write at once.
Every write carries the resourceVersion it read: of two standbys taking over, one gets 409.

Must not: know what the leader does.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pikube.lb.kube.api import LEASES, ApiStatusError, KubeClient, Obj

log = logging.getLogger("pikube.lease")


class LeaseAction(enum.Enum):
    CREATE = "create"
    RENEW = "renew"
    TAKE_OVER = "take over"
    FOLLOW = "follow"


def lease_action(
    holder: str | None,
    exists: bool,
    unchanged_for_s: float,
    identity: str,
    duration_s: float,
) -> LeaseAction:
    """What a replica does with the Lease it just read. Pure."""
    if not exists:
        return LeaseAction.CREATE
    if holder == identity:
        return LeaseAction.RENEW
    if not holder or unchanged_for_s >= duration_s:
        return LeaseAction.TAKE_OVER
    return LeaseAction.FOLLOW


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: Mapping[str, Any]) -> tuple[object, ...]:
    spec = lease.get("spec") or {}
    return (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))


class LeaderElector:
    def __init__(
        self,
        api: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = duration_s
        self.clock = clock
        self.leading = False
        self._seen: tuple[object, ...] | None = None
        self._seen_at = 0.0
        self._renewed_at = -1e9

    def _body(self, current: Mapping[str, Any] | None, *, transition: bool) -> Obj:
        spec = dict((current or {}).get("spec") or {})
        now = _micro_time()
        if transition or current is None:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if current is not None else 0
            )
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = max(1, round(self.duration_s))
        spec["renewTime"] = now
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if current is not None:
            meta["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": spec,
        }

    async def try_once(self) -> bool:
        """Read the Lease and act on it; True if we hold it afterwards."""
        now = self.clock()
        current: Obj | None
        try:
            current = await self.api.request("GET", LEASES.path(self.namespace, self.name))
        except ApiStatusError as exc:
            if exc.status != 404:
                raise
            current = None
        holder = None
        if current is not None:
            record = _record(current)
            if record != self._seen:
                self._seen, self._seen_at = record, now
            holder = (current.get("spec") or {}).get("holderIdentity")
        action = lease_action(
            holder, current is not None, now - self._seen_at, self.identity, self.duration_s
        )
        if action is LeaseAction.FOLLOW:
            return False
        body = self._body(current, transition=action is LeaseAction.TAKE_OVER)
        if action is LeaseAction.CREATE:
            await self.api.request("POST", LEASES.path(self.namespace), body=body)
        else:
            await self.api.request("PUT", LEASES.path(self.namespace, self.name), body=body)
        if action is LeaseAction.TAKE_OVER:
            log.info("took over lease %s/%s from %s", self.namespace, self.name, holder)
        self._renewed_at = now
        return True

    async def release(self) -> None:
        """Give the Lease back (holderIdentity empty, as client-go's ReleaseOnCancel does): a
        standby takes a released Lease at once (`lease_action`)."""
        current = await self.api.request("GET", LEASES.path(self.namespace, self.name))
        if (current.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        body = self._body(current, transition=False)
        body["spec"]["holderIdentity"] = ""
        await self.api.request("PUT", LEASES.path(self.namespace, self.name), body=body)
        self.leading = False
        log.info("released lease %s/%s", self.namespace, self.name)

    async def release_on_stop(self, timeout_s: float) -> None:
        """`release` if leading, on a graceful stop: the standby then leads at its next look
        instead of after a whole duration (a rollout replaces the leader this way). Never
        raises: when the API is gone too, the Lease simply expires."""
        if not self.leading:
            return
        try:
            await asyncio.wait_for(self.release(), timeout_s)
        except Exception as exc:
            log.warning("lease %s not released (%s): it expires instead", self.name, exc)

    async def run(self, on_change: Callable[[bool], None]) -> None:
        """Hold or wait for the Lease until cancelled; `on_change(leading)` on every change."""
        period_s = self.duration_s / 3
        while True:
            try:
                holds = await self.try_once()
            except Exception as exc:
                log.debug("lease %s: %s", self.name, exc)
                holds = self.leading and self.clock() - self._renewed_at < self.duration_s * 2 / 3
            if holds != self.leading:
                self.leading = holds
                on_change(holds)
            await asyncio.sleep(period_s)
