"""Starting the Kubernetes API stand-in in a lab: PKI, process, admin kubeconfig, Node objects.

`start_in_lab(lab)` writes the cluster's PKI and kubeadm-style admin kubeconfig under the lab's
run directory (`<run>/labs/<lab>/kubernetes/`: pki/, admin.conf), starts the server in the
`master` host through the lab's supervisor (ready once it listens on 198.51.100.20:6443), and
registers a Ready Node for master and each worker, as their kubelets would. It is idempotent.
`Lab.up()` does not call it (labs stay network-only and fast); `pikube lab up` does.

The lab's tooling talks to the server over a Unix socket in that directory (mode 0600, trusted
as an administrator), since the server's address lives inside the lab's namespaces.

Must not: decide API semantics (see store) or change the lab's network.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pikube.errors import PikubeError
from pikube.helpers import write_atomic
from pikube.lab import state
from pikube.lab.hosts.processes import ProcessRecord, TcpListening
from pikube.lab.kubeapi import openapi_source, pki
from pikube.lab.kubeapi.defaults import DEFAULT_SERVICE_CIDR, ServiceAllocator
from pikube.lab.kubeapi.seed import node
from pikube.lab.kubeapi.store import format_time
from pikube.lab.lab import Lab, ProcessStatus, lab_command
from pikube.lab.network.topology import Role

API_PORT = 6443
API_HOST = "master"
PROCESS_NAME = "api-stand-in"  # not kube-apiserver: `lab status` says what it is


@dataclass(frozen=True)
class KubeApi:
    """A running stand-in: its process, where it serves, and the admin kubeconfig."""

    process: ProcessRecord
    server_url: str
    kubeconfig: Path
    admin_socket: Path


def kubernetes_dir(lab_name: str) -> Path:
    return state.lab_dir(lab_name) / "kubernetes"


def kubeconfig_path(lab_name: str) -> Path:
    """Where the lab's admin kubeconfig lives (kubeadm's admin.conf)."""
    return kubernetes_dir(lab_name) / "admin.conf"


def admin_socket_path(lab_name: str) -> Path:
    return kubernetes_dir(lab_name) / "admin.sock"


def _write(path: Path, data: bytes, mode: int) -> None:
    write_atomic(path, data, mode)


def write_pki(lab: Lab) -> Path:
    """Create the lab's CA, serving and admin certificates and admin.conf (once per lab)."""
    directory = kubernetes_dir(lab.name)
    pki_dir = directory / "pki"
    config = kubeconfig_path(lab.name)
    if (pki_dir / "apiserver.crt").exists() and config.exists():
        return pki_dir
    master = lab.topology.host(API_HOST)
    service_ip = ServiceAllocator(DEFAULT_SERVICE_CIDR).first_ip
    bundle = pki.new_cluster_pki(
        datetime.now(UTC),
        host_name=API_HOST,
        addresses=[str(master.ipv4), str(master.ipv6)],
        service_ip=service_ip,
    )
    _write(pki_dir / "ca.crt", bundle.ca.cert_pem, 0o644)
    _write(pki_dir / "ca.key", bundle.ca.key_pem, 0o600)
    _write(pki_dir / "apiserver.crt", bundle.apiserver.cert_pem, 0o644)
    _write(pki_dir / "apiserver.key", bundle.apiserver.key_pem, 0o600)
    _write(pki_dir / "admin.crt", bundle.admin.cert_pem, 0o644)
    _write(pki_dir / "admin.key", bundle.admin.key_pem, 0o600)
    text = pki.kubeconfig(server_url(lab), bundle.ca.cert_pem, bundle.admin)
    _write(config, text.encode(), 0o600)
    return pki_dir


def server_url(lab: Lab) -> str:
    return f"https://{lab.topology.host(API_HOST).ipv4}:{API_PORT}"


def running(lab: Lab) -> ProcessRecord | None:
    for record in lab.status().processes:
        if record.record.host == API_HOST and record.record.name == PROCESS_NAME and record.running:
            return record.record
    return None


def start_in_lab(
    lab: Lab,
    *,
    ready_timeout_s: float = 20.0,
    extra_args: tuple[str, ...] = (),
) -> KubeApi:
    """Start the API stand-in in `master` (unless running) and register the lab's Nodes."""
    lab.require_up()
    record = running(lab)
    sock = admin_socket_path(lab.name)
    if record is None:
        openapi_source.fetch()  # the stand-in, inside the lab, cannot fetch Kubernetes' schemas
        pki_dir = write_pki(lab)
        master = lab.topology.host(API_HOST)
        argv = [
            sys.executable,
            "-m",
            "pikube.lab.kubeapi",
            "--listen",
            f"{master.ipv4}:{API_PORT}",
            "--pki-dir",
            str(pki_dir),
            "--unix-socket",
            str(sock),
            *extra_args,
        ]
        record = lab.start(
            API_HOST,
            PROCESS_NAME,
            argv,
            env={"PYTHONUNBUFFERED": "1"},
            ready=TcpListening(API_PORT),
            ready_timeout_s=ready_timeout_s,
        )
    register_nodes(lab)
    return KubeApi(record, server_url(lab), kubeconfig_path(lab.name), sock)


@dataclass(frozen=True)
class ApiDescription:
    """What serves the lab's Kubernetes API, for `lab status`: the stand-in or real Kubernetes."""

    kind: str  # "stand-in" or "kubernetes"
    what: str
    server_url: str
    kubeconfig: Path
    running: bool

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "what": self.what,
            "server": self.server_url,
            "kubeconfig": str(self.kubeconfig),
            "running": self.running,
        }


STAND_IN_WHAT = "in-memory API stand-in (pikube's own, in Python)"
KUBERNETES_WHAT = "real Kubernetes v1.31.5 (kube-apiserver on master, kubeadm)"


def describe(lab: Lab, processes: Sequence[ProcessStatus]) -> ApiDescription | None:
    """The lab's Kubernetes API: the stand-in if the lab started one, real Kubernetes if
    `lab up --kubernetes` made its cluster (its spec and admin.conf are in the lab's
    directory), else None."""
    stand_in = [p for p in processes if p.record.host == API_HOST and p.record.name == PROCESS_NAME]
    config = kubeconfig_path(lab.name)
    if stand_in:
        running_now = any(p.running for p in stand_in)
        return ApiDescription("stand-in", STAND_IN_WHAT, server_url(lab), config, running_now)
    if config.exists() and (kubernetes_dir(lab.name) / "cluster.yaml").exists():
        return ApiDescription("kubernetes", KUBERNETES_WHAT, server_url(lab), config, True)
    return None


def stop_in_lab(lab: Lab) -> None:
    record = running(lab)
    if record is not None:
        lab.stop(record)


# -- the admin socket -----------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def admin_request(
    lab_name: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    timeout_s: float = 10.0,
) -> tuple[int, Any]:
    """One request to the lab's API stand-in as administrator; (status, decoded JSON body)."""
    sock = admin_socket_path(lab_name)
    connection = _UnixConnection(sock, timeout_s)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if payload is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
    except OSError as exc:
        raise PikubeError(
            f"the Kubernetes API of lab {lab_name!r} does not answer on {sock}: {exc}; "
            f"start it with `{lab_command(lab_name, 'up')}`"
        ) from exc
    finally:
        connection.close()
    try:
        decoded = json.loads(data) if data else None
    except ValueError:
        decoded = data.decode(errors="replace")
    return response.status, decoded


def register_nodes(lab: Lab) -> list[str]:
    """Create (or leave as they are) the Node objects of master and the workers."""
    kernel = os.uname().release
    now = format_time(datetime.now(UTC))
    names = []
    for host in lab.topology.hosts:
        if not host.is_kubernetes_node:
            continue
        manifest = node(
            host.name,
            [str(host.ipv4), str(host.ipv6)],
            control_plane=host.role is Role.CONTROL_PLANE,
            kernel_version=kernel,
            now=now,
        )
        status, body = admin_request(lab.name, "POST", "/api/v1/nodes", manifest)
        if status not in (201, 409):
            raise PikubeError(f"registering Node {host.name} in lab {lab.name!r} failed: {body}")
        names.append(host.name)
    return names
