"""pikube's load balancer on the lab's Kubernetes API: the controller on `master`, speakers on
the workers, kubectl from the client, and the EndpointSlices the lab publishes.

Lab glue only. It starts what a cluster would run (the controller Deployment, the speaker
DaemonSet) through the lab supervisor with the lab's admin kubeconfig, and stands in for the
one thing the API stand-in has no component for: the EndpointSlice controller (the lab runs
nginx itself, so it says where). Against a real cluster (the lab's real Kubernetes, later) the
EndpointSlice comes from kube-controller-manager instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pikube.errors import PikubeError
from pikube.lab.hosts.processes import ProcessRecord, TcpListening, is_running, log_tail
from pikube.lab.kubeapi.launch import admin_request
from pikube.lab.lab import Lab
from pikube.lab.services.seed_service import CLIENT, http_body

CONTROLLER_HOST = "master"
CONTROLLER_METRICS_PORT = 7472
SPEAKER_METRICS_PORT = 7472
WORKERS = ("node01", "node02", "node03")
CRD_DIR = Path(__file__).resolve().parents[2] / "data" / "crds"
NAMESPACE = "metallb-system"


def seed_configuration(namespace: str = NAMESPACE) -> str:
    """The seed's IPAddressPool (.230-.250) and L2Advertisement, as the user applies them."""
    return f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: {namespace}
spec:
  addresses:
  - 198.51.100.230-198.51.100.250
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: {namespace}
spec:
  ipAddressPools:
  - first-pool
"""


def nginx_manifests(name: str = "nginx", namespace: str = "default") -> str:
    """The seed's nginx Deployment and its `type: LoadBalancer` Service (no IP asked for)."""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{app: {name}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  type: LoadBalancer
  selector: {{app: {name}}}
  ports:
  - name: http
    port: 80
    targetPort: 80
"""


def endpoint_slice(
    service: str, namespace: str, address: str, node: str, port: int = 80, ready: bool = True
) -> dict[str, Any]:
    """What the EndpointSlice controller would write for one ready pod on `node`."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-lab",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "pikube-lab",
            },
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [address],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "nodeName": node,
            }
        ],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


@dataclass
class KubeLoadBalancer:
    """The controller and speakers of one lab, fed by the API at `kubeconfig`."""

    lab: Lab
    kubeconfig: Path
    directory: Path
    nodes: tuple[str, ...] = WORKERS
    speaker_args: tuple[str, ...] = ()
    # The API stand-in has no EndpointSlice controller, so the lab writes the slices of what it
    # runs; a real cluster's kube-controller-manager does that itself.
    lab_publishes_endpoints: bool = True
    # The stand-in takes the lab's own writes over its admin socket; any other API (the real
    # kube-apiserver on master) gets them through kubectl from the client.
    stand_in: bool = True
    controller: ProcessRecord | None = None
    speakers: dict[str, ProcessRecord] = field(default_factory=dict)
    cache: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cache = self.directory / "kubectl-cache"

    # -- kubectl from the client, as the user --

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, host: str = CLIENT
    ) -> subprocess.CompletedProcess[str]:
        argv = ["env", f"KUBECACHEDIR={self.cache}", "kubectl", "--kubeconfig",
                str(self.kubeconfig), *args]  # fmt: skip
        if stdin is not None:
            argv = [*argv, "-f", "-"]
        result = self.lab.run(host, argv, timeout_s=60, input_text=stdin)
        if check and result.returncode != 0:
            raise PikubeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply(self, text: str) -> None:
        self.kubectl("apply", stdin=text)

    def apply_crds(self) -> None:
        self.kubectl("apply", "-f", str(CRD_DIR))

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def external_ips(self, service: str = "nginx", namespace: str = "default") -> list[str]:
        obj = self.get_json("service", service, "-n", namespace)
        entries = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return [e["ip"] for e in entries]

    def l2_owners(self, service: str = "nginx", namespace: str = "default") -> list[str]:
        """Nodes named by the ServiceL2Status objects of `service` (`kubectl get
        servicel2statuses -A`)."""
        listed = self.get_json("servicel2statuses", "-A")
        return sorted(
            (i.get("status") or {}).get("node", "")
            for i in listed.get("items") or []
            if (i.get("status") or {}).get("serviceName") == service
            and (i.get("status") or {}).get("serviceNamespace") == namespace
        )

    # -- what the lab stands in for --

    def publish_endpoints(
        self, service: str, namespace: str, backend: str, port: int = 80, ready: bool = True
    ) -> None:
        """Write (or replace) the EndpointSlice of `service`: one pod on `backend`."""
        if not self.lab_publishes_endpoints:
            return
        host = self.lab.topology.host(backend)
        body = endpoint_slice(service, namespace, str(host.ipv4), backend, port, ready)
        if not self.stand_in:
            self.kubectl("apply", stdin=json.dumps(body))
            return
        path = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        status, answer = admin_request(self.lab.name, "POST", path, body)
        if status == 409:
            status, answer = admin_request(
                self.lab.name, "PUT", f"{path}/{body['metadata']['name']}", body
            )
        if status not in (200, 201):
            raise PikubeError(f"publishing the EndpointSlice of {service} failed: {answer}")

    # -- the daemons --

    def controller_argv(self) -> list[str]:
        return [sys.executable, "-m", "pikube", "lb", "controller",
                "--kubeconfig", str(self.kubeconfig),
                "--metrics-port", str(CONTROLLER_METRICS_PORT)]  # fmt: skip

    def speaker_argv(self, node: str) -> list[str]:
        return [sys.executable, "-m", "pikube", "lb", "speaker",
                "--node", node, "--source", "kube", "--kubeconfig", str(self.kubeconfig),
                "--interface", "eth0", "--metrics-port", str(SPEAKER_METRICS_PORT),
                "--state-dir", str(self.directory / "state"), *self.speaker_args]  # fmt: skip

    def start_controller(self, timeout_s: float = 60.0) -> ProcessRecord:
        self.controller = self.lab.start(
            CONTROLLER_HOST,
            "lb-controller",
            self.controller_argv(),
            env={"PYTHONUNBUFFERED": "1"},
            ready=TcpListening(CONTROLLER_METRICS_PORT),
            ready_timeout_s=timeout_s,
        )
        return self.controller

    def start_speakers(self, nodes: Sequence[str] | None = None, timeout_s: float = 40.0) -> None:
        """Start speakers at once (as a DaemonSet would), then wait until each listens."""
        chosen = tuple(nodes) if nodes is not None else self.nodes
        for node in chosen:
            self.speakers[node] = self.lab.start(
                node, "speaker", self.speaker_argv(node), env={"PYTHONUNBUFFERED": "1"}
            )
        ready = TcpListening(SPEAKER_METRICS_PORT)
        deadline = time.monotonic() + timeout_s
        for node in chosen:
            record = self.speakers[node]
            while not ready(record):
                if not is_running(record.pid, record.start_ticks):
                    raise PikubeError(
                        f"the speaker on {node} exited while starting; its log ends with:\n"
                        f"{log_tail(record)}"
                    )
                if time.monotonic() > deadline:
                    raise PikubeError(f"the speaker on {node} did not start in {timeout_s:g} s")
                time.sleep(0.02)

    def speaker_status(self, node: str) -> dict[str, Any]:
        data = json.loads(http_body(self.lab, node, SPEAKER_METRICS_PORT, "/status"))
        assert isinstance(data, dict)
        return data

    def settled(self) -> bool:
        """Every speaker has joined, hears all the others, and has its first state."""
        for node in self.speakers:
            try:
                status = self.speaker_status(node)
            except (OSError, ValueError):
                return False
            peers = status["peers"]
            if status["joining"] or set(peers) != set(self.speakers) - {node}:
                return False
            # ... and has its first state from the API (a restarted speaker syncs its caches
            # after it joins the heartbeats).
            loaded = "metallb_k8s_client_config_loaded_bool 1"
            if loaded not in self.metrics(node, SPEAKER_METRICS_PORT):
                return False
        return True

    def announcers(self, ip: str) -> list[str]:
        """Nodes whose speaker says it announces `ip` now."""
        found = []
        for node, record in self.speakers.items():
            if not is_running(record.pid, record.start_ticks):
                continue
            try:
                announcing = self.speaker_status(node)["announcing"]
            except (OSError, ValueError):
                continue
            if ip in announcing:
                found.append(node)
        return found

    def metrics(self, host: str, port: int) -> str:
        return http_body(self.lab, host, port, "/metrics").decode()
