"""The Event recorder: held while statuses are written, identical Events folded into one (and
counted up later), a per-object rate limit, and no Event lost without a log line."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from pikube.lb.assignment import Event, EventType
from pikube.lb.kube.api import Backend, KubeClient, Obj
from pikube.lb.kube.events import Correlator, EventRecorder, Written


class FakeApi(KubeClient):
    def __init__(self) -> None:
        super().__init__(cast(Backend, None))
        self.calls: list[tuple[str, str, Obj]] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> Obj:
        self.calls.append((method, path, kwargs["body"]))
        return {}


def service(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
    }


ALLOCATED = Event(EventType.NORMAL, "IPAllocated", "Assigned IP [198.51.100.230]")


async def settle(recorder: EventRecorder) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
        if recorder.idle:
            return


def test_held_events_wait_for_the_status_writes_and_identical_ones_fold() -> None:
    async def scenario() -> FakeApi:
        api = FakeApi()
        recorder = EventRecorder(api, "metallb-controller")
        task = asyncio.create_task(recorder.run())
        with recorder.held():
            recorder.record(service("a"), ALLOCATED)
            recorder.record(service("a"), ALLOCATED)  # identical, still queued: folded
            recorder.record(service("b"), ALLOCATED)
            for _ in range(20):
                await asyncio.sleep(0)
            assert api.calls == []  # nothing sent while held
        await settle(recorder)
        task.cancel()
        assert recorder.aggregated == 1
        return api

    api = asyncio.run(scenario())
    posts = {body["involvedObject"]["name"]: body["count"] for _, _, body in api.calls}
    assert posts == {"a": 2, "b": 1}
    assert all(method == "POST" for method, _, _ in api.calls)


def test_a_repeat_of_a_written_event_counts_it_up_with_a_patch() -> None:
    async def scenario() -> FakeApi:
        api = FakeApi()
        recorder = EventRecorder(api, "metallb-controller")
        task = asyncio.create_task(recorder.run())
        recorder.record(service("a"), ALLOCATED)
        await settle(recorder)
        recorder.record(service("a"), ALLOCATED)
        await settle(recorder)
        task.cancel()
        return api

    api = asyncio.run(scenario())
    assert [method for method, _, _ in api.calls] == ["POST", "PATCH"]
    name = api.calls[0][2]["metadata"]["name"]
    assert api.calls[1][1].endswith(f"/events/{name}")
    assert api.calls[1][2]["count"] == 2


def test_the_per_object_bucket_allows_a_burst_then_one_per_refill() -> None:
    correlator = Correlator(burst=3, refill_s=300.0)
    assert [correlator.allow("x", 0.0) for _ in range(4)] == [True, True, True, False]
    assert correlator.allow("y", 0.0)  # another object has its own bucket
    assert not correlator.allow("x", 299.0)
    assert correlator.allow("x", 301.0)


def test_a_series_is_forgotten_after_ten_minutes() -> None:
    correlator = Correlator()
    key = ("uid", "Normal", "IPAllocated", "m")
    correlator.wrote(key, Written("default", "a.1", 1, 0.0))
    assert correlator.series(key, 599.0) is not None
    assert correlator.series(key, 601.0) is None


def test_lost_events_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> EventRecorder:
        recorder = EventRecorder(FakeApi(), "metallb-controller", limit=1)
        recorder.record(service("a"), ALLOCATED)
        recorder.record(service("b"), ALLOCATED)  # the queue is full
        with recorder.held():
            await recorder.drain(timeout_s=0.05)  # a stop while one is still queued
        return recorder

    with caplog.at_level(logging.WARNING, logger="pikube.kube"):
        recorder = asyncio.run(scenario())
    assert recorder.dropped == 2
    text = caplog.text
    assert "event IPAllocated on Service default/b not written: the queue is full" in text
    assert "stopping: 1 events not written" in text
