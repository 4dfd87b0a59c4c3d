"""kubeadm from the spec: its configuration files, the CA pin, and the facts that say whether
a cluster (or a node's membership in it) already exists. Pure: text in, text or decisions out.

The files are kubeadm.k8s.io/v1beta4 (new in Kubernetes 1.31): InitConfiguration and
ClusterConfiguration (the spec's pod and service subnets, its cluster name), the kubelet's
KubeletConfiguration (systemd cgroup driver; swap tolerated only when the spec keeps swap) and
KubeProxyConfiguration (the spec's mode). The init file is written to the control plane, where
`plan` shows it as a diff; the JoinConfiguration carries a bootstrap token, so it is never
written by a command: it reaches each worker on the command's stdin (see stages.py).

Whether a cluster exists is read from the files kubeadm leaves (admin.conf, the static pod
manifests, kubelet's config.yaml, kubelet.conf on a joined node), as kubespray and k0sctl do,
never by running `kubeadm init` to see whether it fails.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from pikube.cluster.spec import ClusterSpec, Node, Role, SwapPolicy

KUBEADM_API = "kubeadm.k8s.io/v1beta4"
CONFIG_DIR = "/etc/kubernetes/pikube"
INIT_CONFIG = f"{CONFIG_DIR}/kubeadm.yaml"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
CA_CERT = "/etc/kubernetes/pki/ca.crt"
APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
CRI_SOCKET = "unix:///var/run/containerd/containerd.sock"
API_PORT = 6443
# A bootstrap token lives long enough for the joins of one apply, not a day (kubeadm's default).
TOKEN_TTL = "15m"
# Pi-sized: a Raspberry Pi 3/4 on an SD card may take minutes to start etcd and the API server.
TIMEOUT = "10m0s"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def control_plane(spec: ClusterSpec) -> Node:
    return next(n for n in spec.nodes if n.role is Role.CONTROL_PLANE)


def workers(spec: ClusterSpec) -> list[Node]:
    return [n for n in spec.nodes if n.role is Role.WORKER]


def endpoint(spec: ClusterSpec) -> str:
    address = control_plane(spec).address
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{API_PORT}"


def _dump(documents: list[dict[str, object]]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in documents)


def init_config(spec: ClusterSpec) -> str:
    """/etc/kubernetes/pikube/kubeadm.yaml on the control plane: what `kubeadm init --config`
    and `kubeadm kubeconfig user --config` read."""
    plane = control_plane(spec)
    local: dict[str, object] = {"bindPort": API_PORT}
    if _is_ip(plane.address):
        local["advertiseAddress"] = plane.address
    init: dict[str, object] = {
        "apiVersion": KUBEADM_API,
        "kind": "InitConfiguration",
        "localAPIEndpoint": local,
        "nodeRegistration": {"name": plane.name, "criSocket": CRI_SOCKET},
        "timeouts": {"controlPlaneComponentHealthCheck": TIMEOUT, "kubeletHealthCheck": TIMEOUT},
    }
    cluster: dict[str, object] = {
        "apiVersion": KUBEADM_API,
        "kind": "ClusterConfiguration",
        "clusterName": spec.cluster.name,
        "kubernetesVersion": f"v{spec.versions.kubernetes}",
        "controlPlaneEndpoint": endpoint(spec),
        "networking": {
            "podSubnet": spec.networking.pod_cidr,
            "serviceSubnet": spec.networking.service_cidr,
            "dnsDomain": "cluster.local",
        },
    }
    kubelet: dict[str, object] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
    }
    if spec.swap is SwapPolicy.KEEP:
        kubelet["failSwapOn"] = False
    if spec.kubelet.eviction_hard is not None:
        kubelet["evictionHard"] = dict(spec.kubelet.eviction_hard)
    proxy: dict[str, object] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": spec.networking.kube_proxy_mode.value,
    }
    header = "# pikube: kubeadm's configuration, rendered from the cluster spec\n"
    return header + _dump([init, cluster, kubelet, proxy])


def join_config(spec: ClusterSpec, node: Node, token: str, ca_hash: str) -> str:
    """The JoinConfiguration of one worker. It holds a secret (the token): send it on stdin,
    never in a command line or a file left behind."""
    return _dump(
        [
            {
                "apiVersion": KUBEADM_API,
                "kind": "JoinConfiguration",
                "discovery": {
                    "bootstrapToken": {
                        "apiServerEndpoint": endpoint(spec),
                        "token": token,
                        "caCertHashes": [ca_hash],
                    }
                },
                "nodeRegistration": {"name": node.name, "criSocket": CRI_SOCKET},
                "timeouts": {"tlsBootstrap": TIMEOUT, "discovery": TIMEOUT},
            }
        ]
    )


def ca_cert_hash(ca_pem: str) -> str:
    """kubeadm's discovery pin: sha256 of the CA certificate's SubjectPublicKeyInfo."""
    from cryptography import x509  # noqa: PLC0415 (only when joining)
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    cert = x509.load_pem_x509_certificate(ca_pem.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def valid_token(text: str) -> bool:
    """`kubeadm token create` prints one token: [a-z0-9]{6}.[a-z0-9]{16}."""
    parts = text.split(".")
    return (
        len(parts) == 2
        and len(parts[0]) == 6
        and len(parts[1]) == 16
        and all(c.isdigit() or "a" <= c <= "z" for c in parts[0] + parts[1])
    )


# -- what a node shows of kubeadm ---------------------------------------------------------------

KUBE_MARK = "@@pikube-kube "
_PRESENCE = {
    "admin-conf": ADMIN_CONF,
    "kubelet-conf": KUBELET_CONF,
    "apiserver-manifest": APISERVER_MANIFEST,
    "kubelet-config": KUBELET_CONFIG,
    "ca-crt": CA_CERT,
    "cni-conf": "/etc/cni/net.d/10-flannel.conflist",
}
LINKS = ("cni0", "flannel.1")


def kube_facts_script() -> str:
    """Read-only: which of kubeadm's files exist, pikube's kubeadm.yaml, a kubeadm still
    running (an interrupted apply's), the links flannel made."""
    checks = "\n".join(f"[ -e {path} ] && echo {name}" for name, path in _PRESENCE.items())
    links = "\n".join(f"[ -e /sys/class/net/{link} ] && echo link-{link}" for link in LINKS)
    return f"""s() {{ printf '\\n{KUBE_MARK}%s\\n' "$1"; }}
s present
{checks}
{links}
pgrep -x kubeadm >/dev/null && echo kubeadm-running
s config; cat {INIT_CONFIG} 2>/dev/null
s end
true
"""


@dataclass(frozen=True)
class KubeFacts:
    """kubeadm's traces on one node."""

    present: frozenset[str] = frozenset()
    config: str | None = None  # pikube's kubeadm.yaml, if written

    @property
    def initialised(self) -> bool:
        return "admin-conf" in self.present and "apiserver-manifest" in self.present

    @property
    def half_initialised(self) -> bool:
        """kubeadm init started and did not finish (Ctrl-C, power cut, a failed phase)."""
        traces = {"apiserver-manifest", "kubelet-config", "admin-conf"} & self.present
        return bool(traces) and not self.initialised

    @property
    def joined(self) -> bool:
        return "kubelet-conf" in self.present

    @property
    def kubeadm_running(self) -> bool:
        return "kubeadm-running" in self.present

    @property
    def leftovers(self) -> bool:
        """What kubeadm reset leaves behind (CNI configuration, flannel's links)."""
        return bool({"cni-conf", "link-cni0", "link-flannel.1"} & self.present)


def parse_kube_facts(output: str) -> KubeFacts:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(KUBE_MARK):
            current = sections.setdefault(line[len(KUBE_MARK) :], [])
        elif current is not None:
            current.append(line)
    if "end" not in sections:
        raise ValueError("the kubeadm facts stopped early")
    config_lines = sections.get("config", [])
    config = "\n".join(config_lines).strip("\n")
    return KubeFacts(
        present=frozenset(w for w in sections.get("present", []) if w),
        config=config + "\n" if config else None,
    )


@dataclass(frozen=True)
class NodeStatus:
    ready: bool
    control_plane: bool
    version: str = ""


@dataclass(frozen=True)
class ApiFacts:
    """What the control plane's API shows (empty before init)."""

    reachable: bool = False
    nodes: Mapping[str, NodeStatus] = field(default_factory=dict)


def parse_nodes(nodes_json: Mapping[str, object]) -> dict[str, NodeStatus]:
    result: dict[str, NodeStatus] = {}
    items = nodes_json.get("items", [])
    for item in items if isinstance(items, list) else []:
        name = item["metadata"]["name"]
        labels = item["metadata"].get("labels", {}) or {}
        conditions = item.get("status", {}).get("conditions", []) or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        version = item.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
        plane = "node-role.kubernetes.io/control-plane" in labels
        result[name] = NodeStatus(ready, plane, version)
    return result
