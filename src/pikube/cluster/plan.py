"""The plan: per node, the changes the operations yield (pure; built from gathered facts).

`plan -o json` prints `Plan.to_json()`: {"hosts": {"<node>": {"changes": [...]}}}; a node that
could not be reached carries an "error" instead of a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pikube.cluster.facts import HostFacts
from pikube.cluster.operations import Change, changes_for
from pikube.cluster.spec import ClusterSpec


@dataclass(frozen=True)
class HostPlan:
    node: str
    changes: tuple[Change, ...] = ()
    error: str | None = None  # why there is no plan for this node (unreachable, ...)

    @property
    def commands(self) -> tuple[str, ...]:
        return tuple(command for change in self.changes for command in change.commands)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"changes": [c.to_json() for c in self.changes]}
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass(frozen=True)
class Plan:
    hosts: tuple[HostPlan, ...]

    def host(self, node: str) -> HostPlan:
        return next(h for h in self.hosts if h.node == node)

    @property
    def change_count(self) -> int:
        return sum(len(h.changes) for h in self.hosts)

    @property
    def errors(self) -> tuple[HostPlan, ...]:
        return tuple(h for h in self.hosts if h.error is not None)

    def to_json(self) -> dict[str, object]:
        return {"hosts": {h.node: h.to_json() for h in self.hosts}}


def plan_host(spec: ClusterSpec, node: str, facts: HostFacts) -> HostPlan:
    return HostPlan(node=node, changes=tuple(changes_for(spec, facts)))


def make_plan(spec: ClusterSpec, facts: Mapping[str, HostFacts], errors: Mapping[str, str]) -> Plan:
    """A plan for every node of the spec, in spec order."""
    hosts = []
    for node in spec.nodes:
        if node.name in errors:
            hosts.append(HostPlan(node=node.name, error=errors[node.name]))
        else:
            hosts.append(plan_host(spec, node.name, facts[node.name]))
    return Plan(hosts=tuple(hosts))
