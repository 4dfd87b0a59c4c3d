"""A real control plane without nodes: etcd and kube-apiserver as local processes on 127.0.0.1.

What controller-runtime's envtest does for Go operators, for pikube's tests and benches: the
etcd and kube-apiserver built here from their Go modules (pikube.lab.kubernetes.binaries; a
cache hit after the first build), each on a free loopback port, with their own temporary data
directory and certificates (a CA, the API server's serving certificate, an admin client
certificate in `system:masters`, a service-account signing key), `--authorization-mode=RBAC`,
and an admin kubeconfig for the clients. No kubelet, scheduler or controller-manager: Services
get cluster IPs and node ports (the API server allocates them), but no EndpointSlices appear
by themselves and a deleted Namespace stays Terminating.

Pure: `etcd_args`, `apiserver_args` (the command lines), `admin_kubeconfig`. The adapter is
`ControlPlane`: start, stop, restart the API server alone (etcd and its history stay, as when
kube-apiserver restarts on a real master), compact etcd's history.

Must not: touch the lab (no namespaces, no root needed beyond reading the build cache).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import http.client
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pikube.errors import PikubeError
from pikube.lab.kubeapi import pki

if TYPE_CHECKING:
    from pikube.lab.hosts.processes import ProcessRecord
    from pikube.lab.lab import Lab

SERVICE_CIDR = "10.96.0.0/12"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service's cluster IP, in the serving certificate
ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_GROUP = "system:masters"  # bypasses RBAC, as envtest's admin user does
HOST = "127.0.0.1"
BINARIES = ("etcd", "kube-apiserver")


@dataclass(frozen=True)
class Files:
    """Where one control plane keeps its state (one temporary directory)."""

    directory: Path

    @property
    def etcd_data(self) -> Path:
        return self.directory / "etcd"

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    def cert(self, name: str) -> Path:
        return self.pki / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.pki / f"{name}.key"

    @property
    def service_account_public(self) -> Path:
        return self.pki / "sa.pub"

    @property
    def service_account_private(self) -> Path:
        return self.pki / "sa.key"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "admin.conf"

    def log(self, name: str) -> Path:
        return self.directory / f"{name}.log"


def etcd_args(binary: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    """A single-member etcd on loopback, plain HTTP (only this machine's processes reach it),
    without fsync (a test cluster's data need not survive a power cut; envtest does the same)."""
    client = f"http://{HOST}:{client_port}"
    peer = f"http://{HOST}:{peer_port}"
    return [
        str(binary),
        "--name=default",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_args(
    binary: Path, files: Files, etcd_url: str, port: int, address: str = HOST
) -> list[str]:
    """kube-apiserver on address:port over that etcd, with RBAC and client certificates."""
    return [
        str(binary),
        f"--etcd-servers={etcd_url}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={port}",
        f"--cert-dir={files.pki}",
        f"--tls-cert-file={files.cert('apiserver')}",
        f"--tls-private-key-file={files.key('apiserver')}",
        f"--client-ca-file={files.cert('ca')}",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={files.service_account_public}",
        f"--service-account-signing-key-file={files.service_account_private}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        # No kube-controller-manager or nodes: the `kubernetes` Service's endpoint (loopback)
        # is of no use to anyone, and its reconciler would only log that it is invalid.
        "--endpoint-reconciler-type=none",
        "--v=1",
    ]


def admin_kubeconfig(url: str, ca: pki.KeyPair, admin: pki.KeyPair) -> str:
    """The admin kubeconfig (kubeadm's names: cluster `kubernetes`, user `kubernetes-admin`)."""
    return pki.kubeconfig(url, ca.cert_pem, admin)


def write_files(
    files: Files, now: datetime, addresses: Sequence[str] = ()
) -> tuple[pki.KeyPair, pki.KeyPair]:
    """Certificates (serving 127.0.0.1 and `addresses`) and the service-account key pair;
    returns (ca, admin)."""
    ca = pki.new_ca(now)
    serving = pki.issue(
        ca,
        now,
        "kube-apiserver",
        dns_names=["kubernetes", "kubernetes.default", "kubernetes.default.svc", "localhost"],
        ip_addresses=[SERVICE_IP, HOST, *addresses],
        server=True,
    )
    admin = pki.issue(ca, now, pki.ADMIN_USER, organizations=[ADMIN_GROUP])
    files.pki.mkdir(parents=True, exist_ok=True)
    for name, pair in (("ca", ca), ("apiserver", serving), ("admin", admin)):
        files.cert(name).write_bytes(pair.cert_pem)
        files.key(name).write_bytes(pair.key_pem)
        files.key(name).chmod(0o600)
    key = ec.generate_private_key(ec.SECP256R1())
    files.service_account_private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.service_account_private.chmod(0o600)
    files.service_account_public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ca, admin


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class ControlPlane:
    """etcd and kube-apiserver processes over one `Files` directory."""

    files: Files
    binaries: dict[str, Path]
    etcd_client_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    etcd: subprocess.Popen[bytes] | None = None
    apiserver: subprocess.Popen[bytes] | None = None
    startup_s: dict[str, float] = field(default_factory=dict)  # what each start took

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{HOST}:{self.etcd_client_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.files.kubeconfig

    def _spawn(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        log = self.files.log(name).open("ab")
        try:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.files.directory,
                start_new_session=True,  # a Ctrl-C of the caller is the caller's to handle
            )
        finally:
            log.close()

    def _wait(
        self, name: str, process: subprocess.Popen[bytes], ready: object, timeout_s: float
    ) -> None:
        assert callable(ready)
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None:
                raise PikubeError(
                    f"{name} exited with status {process.returncode}: {self._tail(name)}"
                )
            if time.monotonic() > deadline:
                raise PikubeError(f"{name} not ready in {timeout_s:g} s: {self._tail(name)}")
            time.sleep(0.05)

    def _tail(self, name: str) -> str:
        with contextlib.suppress(OSError):
            lines = self.files.log(name).read_text(errors="replace").strip().splitlines()
            return " | ".join(lines[-3:])[-600:] or "(no output)"
        return "(no log)"

    def start_etcd(self, timeout_s: float = 60.0) -> None:
        started = time.monotonic()
        argv = etcd_args(
            self.binaries["etcd"], self.files.etcd_data, self.etcd_client_port, self.etcd_peer_port
        )
        self.etcd = self._spawn("etcd", argv)
        self._wait("etcd", self.etcd, self._etcd_healthy, timeout_s)
        self.startup_s["etcd"] = time.monotonic() - started

    def start_apiserver(self, timeout_s: float = 120.0) -> None:
        started = time.monotonic()
        argv = apiserver_args(self.binaries["kube-apiserver"], self.files, self.etcd_url, self.port)
        self.apiserver = self._spawn("kube-apiserver", argv)
        self._wait("kube-apiserver", self.apiserver, self._apiserver_ready, timeout_s)
        self.startup_s["kube-apiserver"] = time.monotonic() - started

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver (SIGTERM, then SIGKILL); etcd keeps running."""
        _stop(self.apiserver)
        self.apiserver = None

    def kill_apiserver(self) -> None:
        """SIGKILL kube-apiserver: its connections are cut without a goodbye."""
        if self.apiserver is not None:
            self.apiserver.kill()
            self.apiserver.wait(30)
        self.apiserver = None

    def stop(self) -> None:
        _stop(self.apiserver)
        _stop(self.etcd)
        self.apiserver = self.etcd = None

    # -- probes ---------------------------------------------------------------------------

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=1) as answer:
                return bool(json.loads(answer.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def admin_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.files.cert("ca")))
        context.load_cert_chain(self.files.cert("admin"), self.files.key("admin"))
        return context

    def _apiserver_ready(self) -> bool:
        connection = http.client.HTTPSConnection(
            HOST, self.port, context=self.admin_context(), timeout=2
        )
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    # -- etcd's history -------------------------------------------------------------------

    def _etcd_call(self, path: str, body: object) -> dict[str, object]:
        request = urllib.request.Request(
            f"{self.etcd_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            decoded = json.loads(answer.read())
        return decoded if isinstance(decoded, dict) else {}

    def revision(self) -> int:
        """etcd's current revision (what kube-apiserver calls the resourceVersion)."""
        answer = self._etcd_call("/v3/kv/range", {"key": "AA==", "limit": 1})
        header = answer.get("header")
        assert isinstance(header, dict)
        return int(header["revision"])

    def delete_keys(self, prefix: str) -> int:
        """Delete etcd's keys under `prefix` (e.g. /registry/configmaps/ns/name) behind the
        API server's back, as another API server of the cluster would; returns how many."""
        start = prefix.encode()
        end = start[:-1] + bytes([start[-1] + 1])
        answer = self._etcd_call(
            "/v3/kv/deleterange",
            {"key": base64.b64encode(start).decode(), "range_end": base64.b64encode(end).decode()},
        )
        return int(str(answer.get("deleted", 0)))

    def compact(self) -> int:
        """Compact etcd's history up to now: watches from any older resourceVersion get 410
        Gone once the API server has no cache of it either. Returns the revision."""
        revision = self.revision()
        self._etcd_call("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision


def _stop(process: subprocess.Popen[bytes] | None, timeout_s: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def built_binaries() -> dict[str, Path]:
    """etcd and kube-apiserver from the build cache (built first when missing: minutes)."""
    from pikube.lab.kubernetes.binaries import built_binaries as built  # noqa: PLC0415

    return built(BINARIES)


@contextlib.contextmanager
def control_plane(directory: Path) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver running over `directory`, stopped afterwards."""
    files = Files(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca, admin = write_files(files, datetime.now(UTC))
    plane = ControlPlane(files, built_binaries())
    files.kubeconfig.write_text(admin_kubeconfig(plane.url, ca, admin))
    files.kubeconfig.chmod(0o600)
    atexit.register(plane.stop)  # also when the caller never gets to the `finally`
    try:
        plane.start_etcd()
        plane.start_apiserver()
        yield plane
    finally:
        plane.stop()
        atexit.unregister(plane.stop)


# -- in a lab: the control plane on `master`, reached over the lab's LAN ------------------------

LAB_HOST = "master"
LAB_PORT = 6443
LAB_ETCD_CLIENT_PORT = 2379
LAB_ETCD_PEER_PORT = 2380


@dataclass(frozen=True)
class LabControlPlane:
    """etcd and kube-apiserver running in a lab's `master` (no kubelet: nodes are registered
    as Node objects, as their kubelets would)."""

    kubeconfig: Path
    server_url: str
    files: Files
    apiserver: ProcessRecord
    apiserver_argv: tuple[str, ...]
    etcdctl: Path


def start_in_lab(lab: Lab, ready_timeout_s: float = 120.0) -> LabControlPlane:
    """etcd (on master's loopback) and kube-apiserver (on master's LAN address, port 6443)
    under the lab's supervisor, an admin kubeconfig for that address, and a Ready Node for
    master and each worker."""
    from pikube.lab import state  # noqa: PLC0415
    from pikube.lab.hosts.processes import TcpListening  # noqa: PLC0415

    master = lab.topology.host(LAB_HOST)
    address = str(master.ipv4)
    files = Files(state.lab_dir(lab.name) / "control-plane")
    files.directory.mkdir(parents=True, exist_ok=True)
    ca, admin = write_files(files, datetime.now(UTC), [address])
    url = f"https://{address}:{LAB_PORT}"
    files.kubeconfig.write_text(admin_kubeconfig(url, ca, admin))
    files.kubeconfig.chmod(0o600)
    binaries = built_binaries()
    etcd = etcd_args(binaries["etcd"], files.etcd_data, LAB_ETCD_CLIENT_PORT, LAB_ETCD_PEER_PORT)
    lab.start(LAB_HOST, "etcd", etcd, ready=TcpListening(LAB_ETCD_CLIENT_PORT),
              ready_timeout_s=60)  # fmt: skip
    argv = apiserver_args(
        binaries["kube-apiserver"],
        files,
        f"http://{HOST}:{LAB_ETCD_CLIENT_PORT}",
        LAB_PORT,
        address,
    )
    record = lab.start(LAB_HOST, "kube-apiserver", argv, ready=TcpListening(LAB_PORT),
                       ready_timeout_s=ready_timeout_s)  # fmt: skip
    etcdctl = binaries["etcd"].parent / "etcdctl"  # built with etcd (one component)
    plane = LabControlPlane(files.kubeconfig, url, files, record, tuple(argv), etcdctl)
    _wait_ready_in_lab(lab, plane, ready_timeout_s)
    register_nodes(lab, plane)
    return plane


def restart_apiserver_in_lab(
    lab: Lab, plane: LabControlPlane, *, compact: bool = True, ready_timeout_s: float = 120.0
) -> LabControlPlane:
    """kube-apiserver SIGKILLed (every watch cut), etcd's history compacted up to now (unless
    `compact` is False), kube-apiserver started again: a watch resumed from any earlier
    resourceVersion answers 410 Gone."""
    import signal  # noqa: PLC0415

    from pikube.lab.hosts.processes import TcpListening  # noqa: PLC0415

    lab.supervisor.signal(plane.apiserver, signal.SIGKILL)
    lab.supervisor.wait(plane.apiserver, 10)
    if compact:
        endpoint = f"--endpoints=http://{HOST}:{LAB_ETCD_CLIENT_PORT}"
        status = lab.run(
            LAB_HOST, [str(plane.etcdctl), endpoint, "endpoint", "status", "-w", "json"],
            check=True,
        )  # fmt: skip
        revision = int(json.loads(status.stdout)[0]["Status"]["header"]["revision"])
        lab.run(LAB_HOST, [str(plane.etcdctl), endpoint, "compact", str(revision), "--physical"],
                check=True)  # fmt: skip
    record = lab.start(
        LAB_HOST,
        "kube-apiserver",
        plane.apiserver_argv,
        ready=TcpListening(LAB_PORT),
        ready_timeout_s=ready_timeout_s,
    )
    restarted = dataclasses.replace(plane, apiserver=record)
    _wait_ready_in_lab(lab, restarted, ready_timeout_s)
    return restarted


def _kubectl(lab: Lab, plane: LabControlPlane, *args: str, stdin: str | None = None) -> str:
    argv = ["kubectl", "--kubeconfig", str(plane.kubeconfig), *args]
    result = lab.run("client", argv, timeout_s=60, input_text=stdin)
    if result.returncode != 0:
        raise PikubeError(f"kubectl {' '.join(args)} in lab {lab.name!r}: {result.stderr.strip()}")
    return str(result.stdout)


def _wait_ready_in_lab(lab: Lab, plane: LabControlPlane, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _kubectl(lab, plane, "get", "--raw", "/readyz").strip() == "ok":
                return
        except PikubeError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def register_nodes(lab: Lab, plane: LabControlPlane) -> list[str]:
    """Create the Node objects of master and the workers (status included, as a kubelet's
    registration carries it)."""
    from pikube.lab.kubeapi.seed import node  # noqa: PLC0415
    from pikube.lab.kubeapi.store import format_time  # noqa: PLC0415
    from pikube.lab.network.topology import Role  # noqa: PLC0415

    now = format_time(datetime.now(UTC))
    items = []
    for host in lab.topology.hosts:
        if host.is_kubernetes_node:
            items.append(
                node(
                    host.name,
                    [str(host.ipv4), str(host.ipv6)],
                    control_plane=host.role is Role.CONTROL_PLANE,
                    kernel_version=os.uname().release,
                    now=now,
                )
            )
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    _kubectl(lab, plane, "apply", "-f", "-", stdin=text)
    return [str(i["metadata"]["name"]) for i in items]
