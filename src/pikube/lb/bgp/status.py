"""ServiceBGPStatus: what this node tells the cluster about the services it advertises. Pure.

MetalLB (v0.15 and later) keeps one ServiceBGPStatus per (node, service) in the speaker's
namespace: generateName `bgp-`, labels metallb.io/node, metallb.io/service-name and
metallb.io/service-namespace, status node, serviceName, serviceNamespace and peers (BGPPeer
names), owned by the speaker's Pod. pikube writes the same objects; `status.peers` names the
peers whose session is Established and carries one of the service's prefixes (decision 0160),
so the list follows sessions going up and down, and a service advertised to no peer has no
object.

`plan` compares what the node advertises with the objects the informer has and says what to
create, update and delete: a missing object is created, one with other peers (or labels not
in MetalLB's shape) is updated, an object of this node for a service it no longer advertises
is deleted (at start too: what a previous run left behind), and of several objects for one
service all but the oldest go. Other nodes' objects are never touched.

Must not: talk to the API; decide what is advertised (the speaker's sessions do).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NODE_LABEL = "metallb.io/node"
SERVICE_NAME_LABEL = "metallb.io/service-name"
SERVICE_NAMESPACE_LABEL = "metallb.io/service-namespace"
API_VERSION = "metallb.io/v1beta1"
KIND = "ServiceBGPStatus"
GENERATE_NAME = "bgp-"


@dataclass(frozen=True)
class Create:
    service: str  # namespace/name
    peers: tuple[str, ...]


@dataclass(frozen=True)
class Update:
    name: str
    service: str
    peers: tuple[str, ...]


@dataclass(frozen=True)
class Delete:
    name: str


Action = Create | Update | Delete


def labels(node: str, service: str) -> dict[str, str]:
    namespace, _, name = service.partition("/")
    return {NODE_LABEL: node, SERVICE_NAME_LABEL: name, SERVICE_NAMESPACE_LABEL: namespace}


def status(node: str, service: str, peers: Iterable[str]) -> dict[str, Any]:
    namespace, _, name = service.partition("/")
    return {
        "node": node,
        "serviceName": name,
        "serviceNamespace": namespace,
        "peers": sorted(peers),
    }


def new_object(
    node: str, service: str, namespace: str, owner: Mapping[str, str] | None
) -> dict[str, Any]:
    """A ServiceBGPStatus to POST (its status goes in by a second write, to /status).

    `owner`: the speaker's Pod (apiVersion, kind, name, uid), or None outside a Pod."""
    meta: dict[str, Any] = {
        "generateName": GENERATE_NAME,
        "namespace": namespace,
        "labels": labels(node, service),
    }
    if owner is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": owner["name"], "uid": owner["uid"]}
        ]
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta}


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def service_of(obj: Mapping[str, Any]) -> str | None:
    """`namespace/name` of the service a ServiceBGPStatus is about (from its labels)."""
    found = _meta(obj).get("labels") or {}
    name, namespace = found.get(SERVICE_NAME_LABEL), found.get(SERVICE_NAMESPACE_LABEL)
    if not isinstance(name, str) or not isinstance(namespace, str) or not name or not namespace:
        return None
    return f"{namespace}/{name}"


def node_of(obj: Mapping[str, Any]) -> str | None:
    node = (_meta(obj).get("labels") or {}).get(NODE_LABEL)
    return node if isinstance(node, str) else None


def _age(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(obj)
    return (str(meta.get("creationTimestamp", "")), str(meta.get("name", "")))


def plan(
    node: str,
    advertised: Mapping[str, Iterable[str]],
    existing: Iterable[Mapping[str, Any]],
) -> list[Action]:
    """What to write so that this node's ServiceBGPStatus objects match `advertised`
    (service key -> the peers it is advertised to; a service with no peer has no object)."""
    wanted = {key: tuple(sorted(set(peers))) for key, peers in advertised.items()}
    wanted = {key: peers for key, peers in wanted.items() if peers}
    mine: dict[str, list[Mapping[str, Any]]] = {}
    actions: list[Action] = []
    for obj in sorted(existing, key=_age):
        if node_of(obj) != node:
            continue
        name = str(_meta(obj).get("name", ""))
        key = service_of(obj)
        if key is None or key not in wanted or key in mine:
            actions.append(Delete(name))
            continue
        mine[key] = [obj]
    for key in sorted(wanted):
        peers = wanted[key]
        found = mine.get(key)
        if not found:
            actions.append(Create(key, peers))
            continue
        obj = found[0]
        current = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
        in_shape = dict(_meta(obj).get("labels") or {}) == labels(node, key)
        if current != status(node, key, peers) or not in_shape:
            actions.append(Update(str(_meta(obj).get("name", "")), key, peers))
    return actions


def advertised_services(
    services_by_prefix: Mapping[Any, Iterable[str]],
    advertised_by_peer: Mapping[str, Iterable[Any]],
) -> dict[str, frozenset[str]]:
    """service key -> the peers one of its prefixes is advertised to, from each Established
    session's advertised prefixes and the services behind each prefix."""
    out: dict[str, set[str]] = {}
    for peer, prefixes in advertised_by_peer.items():
        for prefix in prefixes:
            for service in services_by_prefix.get(prefix, ()):
                out.setdefault(service, set()).add(peer)
    return {service: frozenset(peers) for service, peers in out.items()}
