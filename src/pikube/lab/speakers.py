"""Running pikube's speaker in a lab: the seed's manifests, a shared key, one speaker per node.

Lab glue only: it writes the files a user would write (a directory of Kubernetes YAML and a key
file), starts `pikube lb speaker` on each node through the lab supervisor, reads a speaker's
/status, and finds which node the client currently sends a service IP to.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pikube.errors import PikubeError
from pikube.lab import netns, state
from pikube.lab.lab import Lab
from pikube.lab.processes import ProcessRecord, TcpListening
from pikube.lab.topology import DEFAULT_POOL_FIRST, DEFAULT_POOL_LAST

METRICS_PORT = 7472
SEED_VIP = "198.51.100.230"
SEED_VIP6 = "2001:db8:68::230"
WORKERS = ("node01", "node02", "node03")


def seed_manifests(
    *,
    service_ips: Sequence[str] = (SEED_VIP,),
    endpoint_nodes: Sequence[str] = ("node02",),
    nodes: Sequence[str] = WORKERS,
    extra: Sequence[Mapping[str, object]] = (),
    external_traffic_policy: str = "Cluster",
) -> list[dict[str, object]]:
    """The seed's MetalLB setup: pool .230-.250 (and an IPv6 pool), an L2Advertisement, the
    nginx Service asking for .230, its EndpointSlice (the single replica on node02), Nodes."""
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "default-pool", "namespace": "metallb-system"},
            "spec": {
                "addresses": [
                    f"{DEFAULT_POOL_FIRST}-{DEFAULT_POOL_LAST}",
                    "2001:db8:68::230-2001:db8:68::250",
                ]
            },
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": "default", "namespace": "metallb-system"},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "nginx",
                "namespace": "default",
                "annotations": {"metallb.io/loadBalancerIPs": ",".join(service_ips)},
            },
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "nginx"},
                "externalTrafficPolicy": external_traffic_policy,
                "ipFamilyPolicy": "PreferDualStack" if len(service_ips) > 1 else "SingleStack",
                "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "nginx-1",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "nginx"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [f"10.244.{i + 1}.10"], "nodeName": n, "conditions": {"ready": True}}
                for i, n in enumerate(endpoint_nodes)
            ],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    ]
    docs += [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}},
        }
        for n in nodes
    ]
    docs += [dict(d) for d in extra]
    return docs


def write_manifests(directory: Path, docs: Iterable[Mapping[str, object]]) -> Path:
    """Write the documents as one multi-document YAML file (atomically replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "metallb.yaml"
    tmp = directory / ".metallb.yaml.tmp"
    tmp.write_text(yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False))
    tmp.replace(path)
    return path


@dataclass
class SpeakerFleet:
    """Speakers on lab nodes sharing one manifest directory and key."""

    lab: Lab
    directory: Path
    nodes: tuple[str, ...] = WORKERS
    interval_ms: int = 40
    multiplier: int = 3
    extra_args: tuple[str, ...] = ()
    records: dict[str, ProcessRecord] = field(default_factory=dict)

    @property
    def manifests(self) -> Path:
        return self.directory / "manifests"

    @property
    def key_file(self) -> Path:
        return self.directory / "speaker.key"

    def prepare(self, docs: Iterable[Mapping[str, object]] | None = None) -> None:
        if not self.key_file.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self.key_file.write_text(secrets.token_urlsafe(32) + "\n")
            self.key_file.chmod(0o600)
        write_manifests(self.manifests, docs if docs is not None else seed_manifests())

    def argv(self, node: str) -> list[str]:
        return [
            sys.executable, "-m", "pikube", "lb", "speaker",
            "--node", node,
            "--source", f"dir:{self.manifests}",
            "--interface", "eth0",
            "--key-file", str(self.key_file),
            "--metrics-port", str(METRICS_PORT),
            "--interval-ms", str(self.interval_ms),
            "--multiplier", str(self.multiplier),
            "--state-dir", str(self.directory / "state"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, node: str) -> ProcessRecord:
        record = self.lab.start(
            node, "speaker", self.argv(node), ready=TcpListening(METRICS_PORT), ready_timeout_s=20
        )
        self.records[node] = record
        return record

    def start_all(self) -> None:
        for node in self.nodes:
            self.start(node)

    def status(self, node: str) -> dict[str, object]:
        return speaker_status(self.lab, node)

    def settled(self) -> bool:
        """Every speaker has joined and hears all the others."""
        for node in self.nodes:
            status = self.status(node)
            peers = status["peers"]
            assert isinstance(peers, dict)
            if status["joining"] or set(peers) != set(self.nodes) - {node}:
                return False
        return True

    def owners(self, ip: str = SEED_VIP) -> list[str]:
        """Nodes whose speaker says it announces `ip` right now."""
        found = []
        for node in self.nodes:
            try:
                announcing = self.status(node)["announcing"]
            except (OSError, PikubeError):
                continue
            assert isinstance(announcing, list)
            if ip in announcing:
                found.append(node)
        return found


def http_get(lab: Lab, host: str, port: int, path: str, timeout_s: float = 2.0) -> bytes:
    """GET http://127.0.0.1:PORT/PATH inside a lab host (the socket is opened in its namespace)."""
    with netns.entered(lab.namespace(host)):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise PikubeError(f"GET {path} on {host}:{port}: {head.splitlines()[0]!r}")
    return body


def speaker_status(lab: Lab, node: str) -> dict[str, object]:
    data = json.loads(http_get(lab, node, METRICS_PORT, "/status"))
    assert isinstance(data, dict)
    return data


def speaker_metrics(lab: Lab, node: str) -> str:
    return http_get(lab, node, METRICS_PORT, "/metrics").decode()


def lab_dir(lab: Lab, name: str) -> Path:
    """A directory for lab files, removed with the lab."""
    return state.lab_dir(lab.name) / name


def answering_host(lab: Lab, ip: str, source: str = "client") -> str | None:
    """The lab host whose MAC answers ARP (IPv4) or NDP (IPv6) for `ip`, asked from `source`."""
    if ":" in ip:
        argv = ["ndisc6", "-1", "-r", "1", "-w", "300", ip, "eth0"]
    else:
        argv = ["arping", "-c", "1", "-w", "1", "-I", "eth0", ip]
    out = lab.run(source, argv, timeout_s=5).stdout.lower()
    by_mac = {h.mac: h.name for h in lab.topology.hosts}
    for mac, name in by_mac.items():
        if mac in out:
            return name
    return None
