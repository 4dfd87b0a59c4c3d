"""The seed's service in the lab: nginx behind a LoadBalancer IP, and what the client sees.

Owns the pieces of the seed's story that do not depend on who announces the IP:
- `publish`: real nginx on one host (the seed's single replica on node02, or a backend that
  survives every failover, such as master) and the kube-proxy rules for VIP:80 on every
  Kubernetes node, so whichever node receives the VIP's traffic forwards it to the backend;
- `look_from_client`: one HTTP GET to the VIP from the client and the client's neighbour entry
  for it (the seed's `curl` and `arp -a` moments), with the lab host owning that MAC;
- `manifests`: the seed's objects as Kubernetes YAML (pool, L2 advertisement, the nginx
  Service, its EndpointSlice, the Nodes), the desired state a speaker reads from a directory.

It starts no announcer: without one (pikube's speaker, or keepalived) nobody answers ARP for
the VIP and the client cannot reach it, which is the point of the story.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pikube.lab.hosts.processes import ProcessRecord
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.network.probe import (
    NeighbourEntry,
    ProbeResult,
    host_of_mac,
    parse_response,
    probe_once,
    read_neighbour,
)
from pikube.lab.network.topology import (
    DEFAULT_POOL_FIRST,
    DEFAULT_POOL_LAST,
    LAN_IPV6,
    Host,
    Role,
    Topology,
)
from pikube.lab.services import kubeproxy, web

SEED_VIP = DEFAULT_POOL_FIRST  # the seed's 192.168.68.230
SEED_PORT = 80
SEED_SERVICE = "default/nginx"
SEED_BACKEND = "node02"  # where the seed's single nginx replica ran
CLIENT = "client"


@dataclass(frozen=True)
class PublishedService:
    """nginx on one host behind VIP:port, with kube-proxy rules on `nodes`."""

    vip: ipaddress.IPv4Address
    port: int
    backend_host: str
    nginx: ProcessRecord
    nodes: tuple[str, ...]


def kubernetes_nodes(lab: Lab) -> tuple[str, ...]:
    return tuple(h.name for h in lab.topology.hosts if h.is_kubernetes_node)


def service_rules(
    lab: Lab, backend_host: str, vip: ipaddress.IPv4Address = SEED_VIP, port: int = SEED_PORT
) -> list[kubeproxy.LoadBalancerService]:
    backend = lab.topology.host(backend_host)
    return [
        kubeproxy.LoadBalancerService(
            name=SEED_SERVICE,
            vip=vip,
            port=port,
            backends=(kubeproxy.Backend(backend.ipv4, port),),
        )
    ]


def publish(
    lab: Lab,
    backend_host: str = SEED_BACKEND,
    vip: ipaddress.IPv4Address = SEED_VIP,
    port: int = SEED_PORT,
    nodes: Sequence[str] | None = None,
) -> PublishedService:
    """Start nginx on `backend_host` and forward VIP:port to it from every Kubernetes node."""
    chosen = tuple(nodes) if nodes is not None else kubernetes_nodes(lab)
    record = web.start(lab, web.site_for(lab, backend_host, port))
    rules = service_rules(lab, backend_host, vip, port)
    for node in chosen:
        kubeproxy.apply(lab, node, rules)
    return PublishedService(
        vip=vip, port=port, backend_host=backend_host, nginx=record, nodes=chosen
    )


def unpublish(lab: Lab, service: PublishedService) -> None:
    for node in service.nodes:
        kubeproxy.remove(lab, node)
    web.stop(lab, service.nginx)


@dataclass(frozen=True)
class ClientView:
    """What the client sees of the service: an HTTP answer and its ARP table entry."""

    http: ProbeResult
    neighbour: NeighbourEntry | None
    owner: Host | None  # the lab host whose MAC the VIP resolves to


def http_from(lab: Lab, host: str, address: str, port: int, timeout_s: float) -> ProbeResult:
    """One prober-style GET from inside a lab host (the socket is opened in its namespace)."""
    with netns.entered(lab.namespace(host)):
        return asyncio.run(probe_once(address, port, timeout_s))


def http_body(lab: Lab, host: str, port: int, path: str, timeout_s: float = 1.0) -> bytes:
    """GET http://127.0.0.1:PORT/PATH inside a lab host; the body of a 200, else OSError."""
    with netns.entered(lab.namespace(host)):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    with sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    parsed = parse_response(data)
    if parsed is None or parsed[0] != 200:
        raise OSError(f"GET {path} on {host}:{port} answered {data[:40]!r}")
    return data.partition(b"\r\n\r\n")[2]


def look_from_client(
    lab: Lab, service: PublishedService, client: str = CLIENT, timeout_s: float = 1.0
) -> ClientView:
    """GET http://VIP:port/ from the client, then read the client's neighbour entry for the VIP."""
    result = http_from(lab, client, str(service.vip), service.port, timeout_s)
    entry = read_neighbour(lab.namespace(client), str(service.vip))
    owner = host_of_mac(lab.topology.hosts, entry.mac if entry else None)
    return ClientView(http=result, neighbour=entry, owner=owner)


# -- the seed's objects as Kubernetes manifests ------------------------------------------------


def manifests(
    topology: Topology,
    backend_host: str = SEED_BACKEND,
    vip: ipaddress.IPv4Address = SEED_VIP,
    port: int = SEED_PORT,
    *,
    vip6: ipaddress.IPv6Address | None = None,
    endpoint_hosts: Sequence[str] | None = None,
    external_traffic_policy: str = "Cluster",
    extra: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The seed's MetalLB pool and L2 advertisement, the nginx Service, its endpoints, the Nodes.

    With `vip6` the service is dual-stack (both IPs requested with metallb.io/loadBalancerIPs,
    and the pool gets the IPv6 twin of .230-.250). `endpoint_hosts` places the ready endpoints
    (default: the backend host); `extra` objects are appended as they are.
    """
    namespace, name = SEED_SERVICE.split("/")
    addresses = [f"{DEFAULT_POOL_FIRST}-{DEFAULT_POOL_LAST}"]
    service_metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app": "nginx"},
    }
    service_spec: dict[str, Any] = {"type": "LoadBalancer"}
    if vip6 is None:
        service_spec["loadBalancerIP"] = str(vip)
    else:
        addresses.append(f"{LAN_IPV6.network_address + 0x230}-{LAN_IPV6.network_address + 0x250}")
        service_metadata["annotations"] = {"metallb.io/loadBalancerIPs": f"{vip},{vip6}"}
        service_spec["ipFamilyPolicy"] = "PreferDualStack"
        service_spec["ipFamilies"] = ["IPv4", "IPv6"]
    if external_traffic_policy != "Cluster":
        service_spec["externalTrafficPolicy"] = external_traffic_policy
    service_spec["selector"] = {"app": "nginx"}
    service_spec["ports"] = [{"name": "http", "port": port, "targetPort": 80, "protocol": "TCP"}]
    endpoints = [
        {
            "addresses": [str(topology.host(h).ipv4)],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": h,
        }
        for h in (endpoint_hosts if endpoint_hosts is not None else (backend_host,))
    ]
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "seed-pool", "namespace": "metallb-system"},
            "spec": {"addresses": addresses},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": "seed-l2", "namespace": "metallb-system"},
            "spec": {"ipAddressPools": ["seed-pool"]},
        },
        {"apiVersion": "v1", "kind": "Service", "metadata": service_metadata, "spec": service_spec},
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-seed",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    ]
    objects.extend(_node(host) for host in topology.hosts if host.is_kubernetes_node)
    objects.extend(extra)
    return objects


def _node(host: Host) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": host.name, "kubernetes.io/os": "linux"}
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": host.name, "labels": labels},
        "spec": {},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": str(host.ipv4)},
                {"type": "InternalIP", "address": str(host.ipv6)},
                {"type": "Hostname", "address": host.name},
            ],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    if host.role is Role.CONTROL_PLANE:
        # What kubeadm sets on a control-plane node: no workloads, never a LB announcer.
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        node["spec"]["taints"] = [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
        ]
    return node


def write_manifests(directory: Path, objects: Sequence[dict[str, Any]]) -> list[Path]:
    """One YAML file per object (kind-name.yaml), as `kubectl get -o yaml` would give them.

    Each file is replaced atomically, so a speaker reading the directory never sees half a file;
    files of objects no longer given are removed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for obj in objects:
        path = directory / f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        tmp = directory / f".{path.name}.tmp"
        tmp.write_text(yaml.safe_dump(obj, sort_keys=False))
        tmp.replace(path)
        written.append(path)
    for stale in set(directory.glob("*.yaml")) - set(written):
        stale.unlink()
    return written
