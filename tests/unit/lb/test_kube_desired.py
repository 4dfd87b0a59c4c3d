"""The speaker's incremental desired state equals the full recomputation, over random changes
to Services, EndpointSlices, Nodes and pools; and a change recomputes only its group."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pikube.lb.kube.api import (
    ENDPOINT_SLICES,
    IP_ADDRESS_POOLS,
    L2_ADVERTISEMENTS,
    NODES,
    SERVICES,
    Kind,
)
from pikube.lb.kube.desired import DesiredStateBuilder, full_desired_state

IPS = ["198.51.100.230", "198.51.100.231", "198.51.100.232", "198.51.100.99"]
NODE_NAMES = ["node01", "node02", "node03"]


class World:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rv = 0
        self.objects: dict[Kind, dict[str, dict[str, Any]]] = {
            IP_ADDRESS_POOLS: {}, L2_ADVERTISEMENTS: {}, NODES: {}, SERVICES: {},
            ENDPOINT_SLICES: {},
        }  # fmt: skip
        self.put(IP_ADDRESS_POOLS, "pool", {"spec": {"addresses": ["198.51.100.230/30"]}})
        self.put(L2_ADVERTISEMENTS, "l2", {})
        for name in NODE_NAMES:
            self.put(NODES, name, {"spec": {}})

    def put(self, kind: Kind, name: str, body: dict[str, Any], **meta: Any) -> None:
        self.rv += 1
        api = kind.api_version
        namespaced = kind in (SERVICES, ENDPOINT_SLICES)
        metadata = {"name": name, "uid": f"{kind.plural}-{name}", "resourceVersion": str(self.rv),
                    **({"namespace": "default"} if namespaced else {}), **meta}  # fmt: skip
        self.objects[kind][name] = {"apiVersion": api, "kind": kind.kind, "metadata": metadata,
                                    **body}  # fmt: skip

    def change(self) -> None:
        rng = self.rng
        what = rng.choice(["service", "service", "slice", "slice", "slice", "node", "delete",
                           "pool"])  # fmt: skip
        name = f"s{rng.randrange(5)}"
        if what == "service":
            ips = rng.sample(IPS if rng.random() < 0.2 else IPS[:2], rng.choice([0, 1, 1, 1, 2]))
            spec = {"type": "LoadBalancer" if rng.random() < 0.85 else "ClusterIP",
                    "ports": [{"port": 80}],
                    "externalTrafficPolicy": rng.choice(["Cluster", "Local"])}  # fmt: skip
            status = {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}
            self.put(SERVICES, name, {"spec": spec, "status": status})
        elif what == "slice":
            endpoints = [
                {"addresses": ["10.244.0.1"], "nodeName": rng.choice(NODE_NAMES),
                 "conditions": {"ready": rng.random() < 0.8}}
                for _ in range(rng.choice([0, 1, 1, 2]))
            ]  # fmt: skip
            self.put(ENDPOINT_SLICES, f"{name}-x",
                     {"addressType": "IPv4", "endpoints": endpoints},
                     labels={"kubernetes.io/service-name": name})  # fmt: skip
        elif what == "node":
            node = rng.choice(NODE_NAMES)
            labels = {"node.kubernetes.io/exclude-from-external-load-balancers": ""} if (
                rng.random() < 0.3) else {}  # fmt: skip
            self.put(NODES, node, {"spec": {"unschedulable": rng.random() < 0.3}}, labels=labels)
        elif what == "delete":
            kind = rng.choice([SERVICES, ENDPOINT_SLICES])
            key = name if kind is SERVICES else f"{name}-x"
            self.objects[kind].pop(key, None)
        else:
            cidr = rng.choice(["198.51.100.230/30", "198.51.100.230/31"])
            self.put(IP_ADDRESS_POOLS, "pool", {"spec": {"addresses": [cidr]}})

    def lists(self) -> dict[Kind, list[dict[str, Any]]]:
        return {kind: list(objs.values()) for kind, objs in self.objects.items()}


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_incremental_equals_full_over_random_changes(seed: int) -> None:
    world = World(random.Random(seed))
    builder = DesiredStateBuilder()
    for _ in range(40):
        world.change()
        lists = world.lists()
        assert builder.build(lists) == full_desired_state(lists, None)


def test_a_slice_change_recomputes_only_its_service() -> None:
    world = World(random.Random(1))
    for i in range(5):
        status = {"loadBalancer": {"ingress": [{"ip": f"198.51.100.{230 + i}"}]}}
        world.put(SERVICES, f"s{i}", {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                                      "status": status})  # fmt: skip
    world.put(IP_ADDRESS_POOLS, "pool", {"spec": {"addresses": ["198.51.100.224/27"]}})
    builder = DesiredStateBuilder()
    builder.build(world.lists())
    before = builder.recomputed_groups
    world.put(ENDPOINT_SLICES, "s3-x", {"addressType": "IPv4", "endpoints": [
        {"addresses": ["10.244.0.1"], "nodeName": "node01", "conditions": {"ready": True}}]},
        labels={"kubernetes.io/service-name": "s3"})  # fmt: skip
    state = builder.build(world.lists())
    assert builder.recomputed_groups == before + 1
    assert [a.target.key for a in state.announcements] == ["198.51.100.233"]


def test_a_slice_update_that_changes_no_serving_node_recomputes_nothing() -> None:
    """A new Pod IP in an EndpointSlice (the common update) leaves the state as it was: no
    group recomputed, the same state object returned, through `apply` as the informer calls it."""
    world = World(random.Random(2))
    status = {"loadBalancer": {"ingress": [{"ip": "198.51.100.230"}]}}
    world.put(SERVICES, "s0", {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                               "status": status})  # fmt: skip

    def slice_with(address: str, node: str) -> None:
        world.put(ENDPOINT_SLICES, "s0-x", {"addressType": "IPv4", "endpoints": [
            {"addresses": [address], "nodeName": node, "conditions": {"ready": True}}]},
            labels={"kubernetes.io/service-name": "s0"})  # fmt: skip

    slice_with("10.244.0.1", "node01")
    builder = DesiredStateBuilder()
    first = builder.build(world.lists())
    before = builder.recomputed_groups
    slice_with("10.244.0.2", "node01")
    builder.apply(ENDPOINT_SLICES, "default/s0-x", world.objects[ENDPOINT_SLICES]["s0-x"])
    assert builder.state() is first
    assert builder.recomputed_groups == before
    slice_with("10.244.0.2", "node02")  # moved node: recomputed
    builder.apply(ENDPOINT_SLICES, "default/s0-x", world.objects[ENDPOINT_SLICES]["s0-x"])
    moved = builder.state()
    assert builder.recomputed_groups == before + 1
    assert moved == full_desired_state(world.lists(), None)
