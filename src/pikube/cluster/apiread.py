"""The control plane's API in one read (pure: the script, and a parser of its output).

One SSH command on the control plane runs two kubectl reads side by side: every Node, and every
object of the add-ons the spec wants plus the builder's record (kube-system/pikube-addons), each
in full (`kubectl get -f - -o json`, the manifests on stdin). From that one answer come the
plan's decisions (which Nodes exist and are Ready, which add-on objects exist, the recorded
digests) and the run's "already there" verdict (flannel's DaemonSet and nginx's Deployment
rolled out, as `kubectl rollout status` judges it; nginx's Service and its address), so a second
apply with nothing to do waits for nothing and reads the API once.

A kind the API does not know yet (the load balancer's CRDs before it is installed) makes
kubectl print no object at all: then every add-on counts as gone and is applied, which is
what such a cluster needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from pikube.cluster import kubeadm
from pikube.cluster.addons import (
    DEMO_NAME,
    DEMO_NAMESPACE,
    FLANNEL_DAEMONSET,
    RECORD_NAME,
    RECORD_NAMESPACE,
    Addon,
)
from pikube.cluster.kubeadm import ApiFacts

KUBECTL = f"kubectl --kubeconfig {kubeadm.ADMIN_CONF} --request-timeout=20s"
FLANNEL = f"daemonset/{FLANNEL_DAEMONSET}"
DEMO = f"deployment/{DEMO_NAME}"

# Read-only; its temporary directory holds the manifests (no secret) and both answers.
SCRIPT = f"""d=$(mktemp -d /tmp/pikube-api.XXXXXX) && cat > "$d/in" || exit 1
K="{KUBECTL}"
$K get nodes -o json > "$d/nodes" 2>/dev/null &
$K get -f "$d/in" -o json --ignore-not-found > "$d/objects" 2>/dev/null &
wait
echo @@nodes; cat "$d/nodes"; echo
echo @@objects; cat "$d/objects"; echo
echo @@end
rm -rf "$d"
true
"""


def record_stub() -> str:
    """The record's name and namespace, for `kubectl get -f` to fetch it with the add-ons."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": RECORD_NAME, "namespace": RECORD_NAMESPACE},
        },
        sort_keys=False,
    )


def script_input(wanted: Sequence[Addon]) -> str:
    """The script's stdin: every wanted add-on's manifest, then the record's stub."""
    return "---\n".join([*(a.manifest for a in wanted), record_stub()])


@dataclass(frozen=True)
class ApiView:
    """What the one read showed."""

    api: ApiFacts = field(default_factory=ApiFacts)
    recorded: Mapping[str, str] = field(default_factory=dict)  # add-on -> digest
    existing: frozenset[str] = frozenset()  # "kind/name", kind in lower case
    rolled_out: frozenset[str] = frozenset()  # FLANNEL and DEMO when rolled out
    service: Mapping[str, Any] | None = None  # nginx's Service

    def settled(self, members: Iterable[str], demo_app: bool) -> bool:
        """Every member Node Ready, flannel rolled out, and nginx too when the spec has it:
        what the run's waits would find on their first look."""
        nodes = self.api.nodes
        if not all(n in nodes and nodes[n].ready for n in members):
            return False
        wanted = {FLANNEL, DEMO} if demo_app else {FLANNEL}
        return wanted <= self.rolled_out


def _sections(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in output.splitlines():
        if line.startswith("@@"):
            current = sections.setdefault(line[2:], [])
        else:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def parse(output: str) -> ApiView:
    """The view from the script's output; an API that did not answer gives `reachable` False
    (and no objects)."""
    sections = _sections(output)
    nodes_json = _json(sections.get("nodes", ""))
    if not isinstance(nodes_json, dict) or not isinstance(nodes_json.get("items"), list):
        return ApiView()
    api = ApiFacts(True, kubeadm.parse_nodes(nodes_json))
    objects = _json(sections.get("objects", ""))
    if isinstance(objects, dict) and objects.get("kind") != "List":
        objects = {"items": [objects]}  # a single object is printed as itself
    items = objects.get("items", []) if isinstance(objects, dict) else []
    existing: set[str] = set()
    rolled: set[str] = set()
    recorded: dict[str, str] = {}
    service = None
    for item in items if isinstance(items, list) else []:
        kind = str(item.get("kind", ""))
        meta = item.get("metadata") or {}
        name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
        if kind == "ConfigMap" and (namespace, name) == (RECORD_NAMESPACE, RECORD_NAME):
            recorded = {str(k): str(v) for k, v in (item.get("data") or {}).items()}
            continue
        key = f"{kind.lower()}/{name}"
        existing.add(key)
        if key in (FLANNEL, DEMO) and rolled_out(item):
            rolled.add(key)
        if kind == "Service" and (namespace, name) == (DEMO_NAMESPACE, DEMO_NAME):
            service = item
    return ApiView(api, recorded, frozenset(existing), frozenset(rolled), service)


def rolled_out(obj: Mapping[str, Any]) -> bool:
    """`kubectl rollout status`'s verdict for a Deployment or a DaemonSet, from the object."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if int(meta.get("generation", 0)) > int(status.get("observedGeneration", -1)):
        return False
    if obj.get("kind") == "Deployment":
        for condition in status.get("conditions") or []:
            if condition.get("reason") == "ProgressDeadlineExceeded":
                return False
        wanted = int(spec.get("replicas", 1))
        updated = int(status.get("updatedReplicas", 0))
        return (
            updated >= wanted
            and int(status.get("replicas", 0)) <= updated
            and int(status.get("availableReplicas", 0)) >= updated
        )
    if obj.get("kind") == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled", 0))
        return (
            int(status.get("updatedNumberScheduled", 0)) >= desired
            and int(status.get("numberAvailable", 0)) >= desired
        )
    return False
