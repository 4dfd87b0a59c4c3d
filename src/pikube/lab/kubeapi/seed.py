"""Objects a fresh kubeadm cluster has, as plain manifests. Pure.

- The `kubernetes` Service, Endpoints and EndpointSlice in `default`, which the real API server
  maintains for itself.
- Node objects for the lab's hosts, as a kubelet would register them (the lab has no kubelet:
  `launch` registers them, and marks them Ready, explicitly). The master carries kubeadm's
  control-plane role label and taint.

Must not: do I/O or know about HTTP.
"""

from __future__ import annotations

from typing import Any

from pikube.lab.kubeapi.store import Store

KUBELET_VERSION = "v1.31.5"
OS_IMAGE = "Debian GNU/Linux 12 (bookworm)"
RUNTIME = "pikube-lab://none"  # no container runtime: the lab's hosts are network namespaces
CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"


def kubernetes_service(cluster_ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
            "sessionAffinity": "None",
        },
    }


def kubernetes_endpoints(address: str, port: int) -> list[dict[str, Any]]:
    """The Endpoints and EndpointSlice of the `kubernetes` Service."""
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": address}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        ],
    }
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": "IPv6" if ":" in address else "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    return [endpoints, endpoint_slice]


def node(
    name: str,
    addresses: list[str],
    *,
    control_plane: bool,
    kernel_version: str,
    now: str,
    arch: str = "arm64",
) -> dict[str, Any]:
    """A Node as its kubelet registers it, Ready since `now`."""
    labels = {
        "beta.kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    }
    spec: dict[str, Any] = {}
    if control_plane:
        labels[CONTROL_PLANE_ROLE] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        spec["taints"] = [{"key": CONTROL_PLANE_ROLE, "effect": "NoSchedule"}]
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": node_status(
            name, addresses, kernel_version=kernel_version, arch=arch, ready_since=now
        ),
    }
    return obj


def node_status(
    name: str, addresses: list[str], *, kernel_version: str, arch: str, ready_since: str = ""
) -> dict[str, Any]:
    capacity = {"cpu": "4", "memory": "8008856Ki", "pods": "110", "ephemeral-storage": "30787492Ki"}
    conditions = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "registered and marked ready by the pikube lab (no kubelet)",
        }
    ]
    if ready_since:
        for condition in conditions:
            condition["lastHeartbeatTime"] = ready_since
            condition["lastTransitionTime"] = ready_since
    return {
        "addresses": [{"type": "InternalIP", "address": a} for a in addresses]
        + [{"type": "Hostname", "address": name}],
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": conditions,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": arch,
            "bootID": "",
            "containerRuntimeVersion": RUNTIME,
            "kernelVersion": kernel_version,
            "kubeProxyVersion": KUBELET_VERSION,
            "kubeletVersion": KUBELET_VERSION,
            "machineID": "",
            "operatingSystem": "linux",
            "osImage": OS_IMAGE,
            "systemUUID": "",
        },
    }


def seed_cluster(store: Store, address: str, port: int) -> None:
    """Create what the real API server creates for itself: the `kubernetes` Service et al."""
    registry = store.registry
    for manifest in [
        kubernetes_service(store.allocator.first_ip),
        *kubernetes_endpoints(address, port),
    ]:
        group, _, version = manifest["apiVersion"].rpartition("/")
        plural = {"Service": "services", "Endpoints": "endpoints"}.get(
            manifest["kind"], "endpointslices"
        )
        rt = registry.lookup(group, version, plural)
        assert rt is not None
        store.create(rt, "default", manifest)
