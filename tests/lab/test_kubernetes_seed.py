"""The seed's sections 2 and 3 with real Kubernetes v1.31.5 in the lab, end to end.

Host preparation by `pikube cluster apply`, `kubeadm init --pod-network-cidr=10.244.0.0/16` on
master (preflight with nothing ignored), flannel's own manifest, node01-03 joined with the
command init printed, four Ready nodes at v1.31.5, CoreDNS answering, the seed's nginx as a
NodePort answering the client through kube-proxy's iptables rules, and `kubectl port-forward`
to 8080 as in the seed. Every binary and image is the real one built from its Go module.
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
from collections.abc import Iterator

import pytest

from pikube.lab.kubernetes import gobuild, seedcluster
from pikube.lab.kubernetes.seedcluster import KUBECTL, ssh
from pikube.lab.lab import Lab
from tests.helpers import run_pikube
from tests.lab.conftest import SeedKubernetes

pytestmark = pytest.mark.lab

CLUSTER_DNS = "10.96.0.10"  # kubeadm's default: the tenth address of 10.96.0.0/12


@pytest.fixture(scope="module")
def cluster(seed_kubernetes: SeedKubernetes) -> Iterator[Lab]:
    """The session's seed cluster (tests/lab/conftest.py), given back without the seed's
    nginx: test_lb_install creates its own under the same name."""
    yield seed_kubernetes.lab()
    seed_kubernetes.clean(
        lambda lab: kubectl(
            lab, "delete deployment,service nginx --ignore-not-found --cascade=foreground", 300
        )
    )


def kubectl(lab: Lab, args: str, timeout_s: float = 120.0) -> str:
    result = ssh(lab, "master", f"{KUBECTL} {args}", timeout_s=timeout_s)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def dns_query(name: str) -> bytes:
    header = struct.pack("!HHHHHH", secrets.randbelow(65536), 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return header + labels + struct.pack("!HH", 1, 1)  # A, IN


def test_four_ready_nodes_at_v1_31_5(cluster: Lab) -> None:
    listed = kubectl(cluster, "get nodes -o json")
    nodes = seedcluster.ready_nodes(listed)
    assert nodes == dict.fromkeys(("master", "node01", "node02", "node03"), (True, "v1.31.5"))
    # The seed's containerd, from the lab's Debian mirror: 1.7.25 built here, not Debian's 1.6.
    runtimes = {
        n["metadata"]["name"]: n["status"]["nodeInfo"]["containerRuntimeVersion"]
        for n in json.loads(listed)["items"]
    }
    assert set(runtimes.values()) == {"containerd://1.7.25"}, runtimes
    system = json.loads(kubectl(cluster, "get pods -n kube-system -o json"))
    pods = {p["metadata"]["name"] for p in system["items"]}
    control_plane = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    assert {f"{name}-master" for name in control_plane} <= pods


def test_coredns_answers_for_the_kubernetes_service(cluster: Lab) -> None:
    kubectl(cluster, "-n kube-system rollout status deployment/coredns --timeout=300s", 330)
    script = (
        "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(5);"
        f"s.sendto(bytes.fromhex(sys.argv[1]),('{CLUSTER_DNS}',53));"
        "sys.stdout.write(s.recv(512).hex())"
    )
    query = dns_query("kubernetes.default.svc.cluster.local").hex()
    result = cluster.run("master", ["python3", "-c", script, query], check=True)
    answer = bytes.fromhex(result.stdout)
    assert answer[3] & 0x0F == 0  # NOERROR
    assert struct.unpack("!H", answer[6:8])[0] >= 1  # one answer at least
    assert answer.endswith(socket.inet_aton("10.96.0.1"))  # the kubernetes Service


def test_the_seeds_nginx_answers_through_a_nodeport_and_port_forward(cluster: Lab) -> None:
    kubectl(cluster, "create deployment nginx --image=nginx")
    kubectl(cluster, "expose deployment nginx --type=NodePort --port=80")
    kubectl(cluster, "rollout status deployment/nginx --timeout=300s", 330)
    port = kubectl(cluster, "get svc nginx -o jsonpath={.spec.ports[0].nodePort}").strip()
    for node in ("198.51.100.21", "198.51.100.22", "198.51.100.23"):
        # kube-proxy programs a new Service within its sync period (1 s): a bounded retry.
        get = (
            f"curl -s -o /dev/null -w %{{http_code}} --retry 20 --retry-connrefused "
            f"--retry-delay 1 http://{node}:{port}/"
        )
        result = cluster.run("client", get.split(), timeout_s=60.0)
        assert result.stdout == "200", f"{node}:{port}: {result.stdout} {result.stderr}"
    # The seed then connects from the PC with the admin kubeconfig: kubectl v1.31.5 on the client.
    kubectl_bin = gobuild.ensure_built("kubernetes") / "kubectl"
    conf = seedcluster.kubeconfig_path(cluster.name)
    forward = (
        f"{kubectl_bin} --kubeconfig {conf} port-forward deployment/nginx 8080:80 "
        ">/dev/null 2>&1 </dev/null & pid=$!; "
        "for i in $(seq 100); do "
        "code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/) && break; "
        "sleep 0.2; done; "
        "kill $pid; echo $code"
    )
    result = cluster.run("client", ["sh", "-c", forward], timeout_s=60.0)
    assert result.stdout.strip() == "200", (result.stdout, result.stderr)


def test_lab_status_says_the_api_is_real_kubernetes(cluster: Lab) -> None:
    table = run_pikube("lab", "status", "--name", cluster.name).stdout
    assert "Kubernetes API: real Kubernetes v1.31.5 (kube-apiserver on master, kubeadm)" in table
    assert "stand-in" not in table
    status = json.loads(run_pikube("lab", "status", "--name", cluster.name, "-o", "json").stdout)
    assert status["kubernetes_api"]["kind"] == "kubernetes"
