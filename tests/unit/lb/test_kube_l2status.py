"""The ServiceL2Status a kube-fed speaker writes back: written again when someone deletes it."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

import pytest

from pikube.lb.kube.api import SERVICE_L2_STATUSES, KubeClient
from pikube.lb.kube.events import EventRecorder
from pikube.lb.kube.informer import Change, ChangeType, Informer
from pikube.lb.metrics import Registry
from pikube.lb.sources.kube import KubeSource

Obj = dict[str, Any]


class FakeApi:
    def __init__(self) -> None:
        self.created: list[str] = []
        self.paths: list[str] = []

    async def request(self, method: str, path: str, body: Obj | None = None, **_: Any) -> Obj:
        self.paths.append(path)
        if method == "POST":
            assert body is not None
            created = copy.deepcopy(body)
            created["metadata"]["name"] = f"l2-{len(self.created) + 1}"
            self.created.append(created["metadata"]["name"])
            return created
        return {}


class FakeInformer:
    def __init__(self) -> None:
        self.statuses: dict[str, Obj] = {}

    def objects(self, kind: object) -> dict[str, Obj]:
        return self.statuses if kind is SERVICE_L2_STATUSES else {}


class FakeRecorder:
    def record(self, obj: Obj, event: object) -> None:
        pass


def status(name: str, node: str) -> Obj:
    labels = {
        "metallb.io/node": node,
        "metallb.io/service-name": "nginx",
        "metallb.io/service-namespace": "default",
    }
    return {"metadata": {"name": name, "namespace": "metallb-system", "labels": labels}}


def test_a_status_deleted_by_someone_else_is_written_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MetalLB's speaker, stopping on the same node during a migration, deletes the statuses
    labelled with its node, pikube's too: pikube's speaker must write it again (it kept
    believing it had one, and the Service had none)."""
    api, informer = FakeApi(), FakeInformer()
    source = KubeSource(node="node01", informer=cast(Informer, informer))
    monkeypatch.setattr(source, "announced_services", lambda: {"default/nginx"})

    def report() -> None:
        recorder = cast(EventRecorder, FakeRecorder())
        asyncio.run(source._report(cast(KubeClient, api), recorder, None))

    report()
    assert api.created == ["l2-1"]
    report()  # not seen yet by the informer: not written twice
    informer.statuses = {"metallb-system/l2-1": status("l2-1", "node01")}
    report()
    assert api.created == ["l2-1"]
    informer.statuses = {}  # deleted by the other speaker
    report()
    assert api.created == ["l2-1", "l2-2"]


def test_what_the_node_announces_or_a_status_change_wakes_the_report() -> None:
    """No polling: the ServiceL2Status loop sleeps until the announced gauge or a status
    changes (a 0.1 s poll cost the idle speaker pod a third of its 1 % CPU budget)."""
    registry = Registry()
    announced = registry.gauge("metallb_speaker_announced", "", "service", "protocol", "node", "ip")

    class Metrics:
        def __init__(self) -> None:
            self.registry = registry
            self.announced = announced

    source = KubeSource(node="node01")
    source.bind(Metrics())
    wake = source._report_wake
    announced.set(1, "default/nginx", "layer2", "node01", "198.51.100.230")
    assert wake.is_set()
    wake.clear()
    announced.set(1, "default/nginx", "layer2", "node01", "198.51.100.230")  # no change
    assert not wake.is_set()
    announced.remove("default/nginx", "layer2", "node01", "198.51.100.230")
    assert wake.is_set()
    wake.clear()
    source._changed(SERVICE_L2_STATUSES, Change(ChangeType.ADDED, "metallb-system/l2-1", {}))
    assert wake.is_set()
