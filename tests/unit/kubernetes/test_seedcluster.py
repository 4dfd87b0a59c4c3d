"""The seed's cluster in the lab: reading kubeadm's and kubectl's output (no root needed)."""

from __future__ import annotations

import json

import pytest

from pikube.errors import PikubeError
from pikube.lab.kubernetes.seedcluster import (
    join_command,
    kube_proxy_conntrack_max,
    ready_nodes,
    redact_join,
)

INIT_TAIL = """\
Your Kubernetes control-plane has initialized successfully!

To start using your cluster, you need to run the following as a regular user:

  mkdir -p $HOME/.kube
  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config

Then you can join any number of worker nodes by running the following on each as root:

kubeadm join 198.51.100.20:6443 --token abcdef.0123456789abcdef \\
\t--discovery-token-ca-cert-hash sha256:{HASH}
""".format(HASH="0f1e2d3c4b5a6978" * 4)


def test_the_join_command_is_read_across_its_continuation_line() -> None:
    assert join_command(INIT_TAIL) == (
        "kubeadm join 198.51.100.20:6443 --token abcdef.0123456789abcdef "
        "--discovery-token-ca-cert-hash "
        "sha256:" + "0f1e2d3c4b5a6978" * 4
    )


def test_a_control_plane_join_command_is_not_the_workers() -> None:
    text = (
        "kubeadm join 198.51.100.20:6443 --token t --discovery-token-ca-cert-hash h "
        "--control-plane --certificate-key k\n"
    )
    with pytest.raises(PikubeError, match="no join command"):
        join_command(text)


def test_a_join_command_in_a_log_hides_the_token_and_hash() -> None:
    redacted = redact_join(join_command(INIT_TAIL))
    assert "abcdef" not in redacted
    assert "sha256" not in redacted
    assert redacted.startswith("kubeadm join 198.51.100.20:6443 --token <token>")


def test_ready_nodes_reads_the_ready_condition_and_kubelet_version() -> None:
    def node(name: str, ready: str) -> dict[str, object]:
        return {
            "metadata": {"name": name},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": ready},
                ],
                "nodeInfo": {"kubeletVersion": "v1.31.5"},
            },
        }

    listing = json.dumps({"items": [node("master", "True"), node("node01", "False")]})
    assert ready_nodes(listing) == {"master": (True, "v1.31.5"), "node01": (False, "v1.31.5")}


def test_kube_proxy_wants_its_minimum_conntrack_table_on_a_pi() -> None:
    assert kube_proxy_conntrack_max(cpus=4) == 131072  # a Raspberry Pi 4
    assert kube_proxy_conntrack_max(cpus=8) == 262144
