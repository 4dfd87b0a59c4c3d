"""API objects -> the model, one object at a time: a bad object is set aside with a problem
naming it and its field, and the others keep working."""

from __future__ import annotations

from typing import Any

from pikube.lb.kube.convert import Converter, Problem


def pool(name: str, *addresses: str, created: str = "2026-01-01T00:00:00Z", **spec: Any) -> Any:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system", "uid": f"u-{name}",
                     "resourceVersion": "1", "creationTimestamp": created},
        "spec": {"addresses": list(addresses), **spec},
    }  # fmt: skip


def service(name: str, type_: str = "LoadBalancer") -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "uid": f"u-{name}",
                     "resourceVersion": "1"},
        "spec": {"type": type_, "ports": [{"port": 80}]},
    }  # fmt: skip


def node(name: str, *, cordoned: bool = False) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"unschedulable": True} if cordoned else {},
    }


def test_a_bad_cidr_sets_that_pool_aside_and_names_the_field() -> None:
    resources, problems = Converter().resources(
        pools=[pool("good", "198.51.100.230-198.51.100.250"), pool("bad", "198.51.100.0/33")]
    )
    assert [p.name for p in resources.pools] == ["good"]
    (problem,) = problems
    assert problem.kind == "IPAddressPool"
    assert problem.name == "bad"
    assert "spec.addresses[0]" in problem.message


def test_an_unknown_field_is_named() -> None:
    _, problems = Converter().resources(pools=[pool("p", "198.51.100.0/28", colour="blue")])
    assert "colour" in problems[0].message


def test_of_two_overlapping_pools_the_older_stays() -> None:
    resources, problems = Converter().resources(
        pools=[
            pool("newer", "198.51.100.240/28", created="2026-02-01T00:00:00Z"),
            pool("older", "198.51.100.224/27", created="2026-01-01T00:00:00Z"),
        ]
    )
    assert [p.name for p in resources.pools] == ["older"]
    assert [p.name for p in problems] == ["newer"]
    assert "overlap" in problems[0].message


def test_a_bad_service_does_not_hide_the_others() -> None:
    resources, problems = Converter().resources(
        services=[service("web"), service("odd", type_="Balanced")]
    )
    assert [s.name for s in resources.services] == ["web"]
    assert problems == (Problem("Service", "default", "odd", problems[0].message, uid="u-odd"),)
    assert "spec.type" in problems[0].message


def test_cordoned_nodes_are_unschedulable() -> None:
    resources, _ = Converter().resources(nodes=[node("node01"), node("node02", cordoned=True)])
    assert [(n.name, n.unschedulable) for n in resources.nodes] == [
        ("node01", False),
        ("node02", True),
    ]


def test_an_unchanged_object_is_parsed_once() -> None:
    converter = Converter()
    first = converter.parse(service("web"))
    assert converter.parse(service("web")) is first
