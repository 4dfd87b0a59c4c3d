"""Small helpers to run allocation scenarios written as YAML, as a user would write them."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from pikube.lb.config import documents_from_text, parse_documents
from pikube.lb.ipam import AllocationResult, allocate
from pikube.lb.model import ClusterResources


@dataclass(frozen=True)
class Err:
    """An expected per-service error containing `text`."""

    text: str


# What a service should get: "ip[,ip] @ pool", an Err, or None (not handled: in neither map).
Expected = str | Err | None


def resources(yaml_text: str) -> ClusterResources:
    return parse_documents(documents_from_text(textwrap.dedent(yaml_text), "scenario.yaml"))


def outcome(result: AllocationResult, key: str) -> Expected:
    if key in result.allocations:
        allocation = result.allocations[key]
        return ",".join(str(ip) for ip in allocation.ips) + f" @ {allocation.pool}"
    if key in result.errors:
        return Err(result.errors[key])
    return None


def check(yaml_text: str, expected: dict[str, Expected], lb_class: str | None = None) -> None:
    result = allocate(resources(yaml_text), load_balancer_class=lb_class)
    for key, want in expected.items():
        got = outcome(result, key)
        if isinstance(want, Err):
            assert isinstance(got, Err), f"{key}: expected an error, got {got!r}"
            assert want.text in got.text, f"{key}: {got.text!r} does not say {want.text!r}"
        else:
            assert got == want, f"{key}: expected {want!r}, got {got!r}"
    handled = set(result.allocations) | set(result.errors)
    assert handled <= set(expected), f"unexpected services in the result: {handled - set(expected)}"
