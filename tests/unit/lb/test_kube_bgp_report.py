"""The BGP speaker's kube source writes ServiceBGPStatus back when something changed, not on a
timer: an idle speaker makes no report round (a 0.1 s poll made ten a second)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from pikube.lb.kube.api import SERVICE_BGP_STATUSES, SERVICES, KubeClient
from pikube.lb.kube.informer import Change, ChangeType, Informer
from pikube.lb.metrics import Registry
from pikube.lb.sources.kube_bgp import KubeBgpSource

Obj = dict[str, Any]


class FakeApi:
    async def request(self, *_: Any, **__: Any) -> Obj:
        return {}


class FakeInformer:
    def objects(self, _kind: object) -> dict[str, Obj]:
        return {}


class Advertised:
    """Nothing advertised; counts how often the source asks (once per report round)."""

    def __init__(self) -> None:
        self.asked = 0

    def __call__(self) -> dict[str, frozenset[str]]:
        self.asked += 1
        return {}


async def settle(until: Callable[[], bool] = lambda: False, rounds: int = 50) -> None:
    """Let the event loop run (at most `rounds` short sleeps, fewer once `until` holds)."""
    for _ in range(rounds):
        if until():
            return
        await asyncio.sleep(0.01)


def test_the_status_is_written_back_when_sessions_updates_or_statuses_change_only() -> None:
    registry = Registry()
    up = registry.gauge("metallb_bgp_session_up", "", "peer")
    updates = registry.counter("metallb_bgp_updates_total", "", "peer")
    source = KubeBgpSource(
        node="node01", informer=cast(Informer, FakeInformer()), report_min_interval_s=0.0
    )
    advertised = Advertised()
    source.bind(advertised, registry, (up, updates))

    async def scenario() -> None:
        task = asyncio.create_task(source._report_back(cast(KubeClient, FakeApi())))
        await settle(lambda: advertised.asked == 1)
        await settle()  # half a second with nothing changed: no round (a 0.1 s poll: five)
        assert advertised.asked == 1
        up.set(1, "router")  # the session comes up
        await settle(lambda: advertised.asked == 2)
        assert advertised.asked == 2
        up.set(1, "router")  # no change
        await settle(rounds=10)
        assert advertised.asked == 2
        updates.inc("router")  # routes sent: what is advertised changed
        await settle(lambda: advertised.asked == 3)
        assert advertised.asked == 3
        # Someone changed a ServiceBGPStatus: written again if it must be.
        source._changed(SERVICE_BGP_STATUSES, Change(ChangeType.DELETED, "ns/bgp-1", {}))
        await settle(lambda: advertised.asked == 4)
        assert advertised.asked == 4
        # An input object changed: the input loop wakes, not the report.
        source._changed(SERVICES, Change(ChangeType.ADDED, "default/nginx", {}))
        assert source._wake.is_set()
        await settle(rounds=10)
        assert advertised.asked == 4
        task.cancel()

    asyncio.run(scenario())


def test_a_burst_of_changes_makes_one_round_per_minimum_interval() -> None:
    registry = Registry()
    updates = registry.counter("metallb_bgp_updates_total", "", "peer")
    source = KubeBgpSource(node="node01", informer=cast(Informer, FakeInformer()))
    advertised = Advertised()
    source.bind(advertised, None, (updates,))

    async def scenario() -> None:
        task = asyncio.create_task(source._report_back(cast(KubeClient, FakeApi())))
        await settle(lambda: advertised.asked == 1)
        for _ in range(100):
            updates.inc("router")
            await asyncio.sleep(0)
        await settle(lambda: advertised.asked >= 2)
        assert advertised.asked == 2  # the hundred UPDATEs, one round
        task.cancel()

    asyncio.run(scenario())
