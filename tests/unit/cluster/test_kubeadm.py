"""kubeadm's configuration from the spec, the CA pin, and kubeadm's traces on a node."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from pikube.cluster import kubeadm
from pikube.cluster.spec import ClusterSpec, KubeProxyMode, SwapPolicy


def _docs(text: str) -> dict[str, dict[str, object]]:
    return {d["kind"]: d for d in yaml.safe_load_all(text)}


def test_the_init_file_has_the_specs_networks_name_version_and_proxy_mode(
    spec: ClusterSpec,
) -> None:
    docs = _docs(kubeadm.init_config(spec))
    assert list(docs) == [
        "InitConfiguration",
        "ClusterConfiguration",
        "KubeletConfiguration",
        "KubeProxyConfiguration",
    ]
    assert docs["InitConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert docs["InitConfiguration"]["localAPIEndpoint"] == {
        "bindPort": 6443,
        "advertiseAddress": "192.168.68.200",
    }
    cluster = docs["ClusterConfiguration"]
    assert cluster["networking"] == {
        "podSubnet": "10.244.0.0/16",
        "serviceSubnet": "10.96.0.0/12",
        "dnsDomain": "cluster.local",
    }
    assert cluster["kubernetesVersion"] == "v1.31.5"
    assert cluster["clusterName"] == "kubeadm-orenge-cloud-playground"
    assert cluster["controlPlaneEndpoint"] == "192.168.68.200:6443"
    assert docs["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    assert "failSwapOn" not in docs["KubeletConfiguration"]
    assert docs["KubeProxyConfiguration"]["mode"] == "iptables"


def test_the_init_file_follows_the_spec(spec: ClusterSpec) -> None:
    changed = spec.model_copy(
        update={
            "networking": spec.networking.model_copy(
                update={"kube_proxy_mode": KubeProxyMode.IPVS, "pod_cidr": "10.32.0.0/16"}
            ),
            "swap": SwapPolicy.KEEP,
        }
    )
    docs = _docs(kubeadm.init_config(changed))
    assert docs["KubeProxyConfiguration"]["mode"] == "ipvs"
    assert docs["KubeletConfiguration"]["failSwapOn"] is False
    networking = docs["ClusterConfiguration"]["networking"]
    assert isinstance(networking, dict)
    assert networking["podSubnet"] == "10.32.0.0/16"


def test_the_join_file_pins_the_ca_and_carries_the_token(spec: ClusterSpec) -> None:
    node = spec.node("node02")
    (doc,) = yaml.safe_load_all(
        kubeadm.join_config(spec, node, "abcdef.0123456789abcdef", "sha256:00")
    )
    assert doc["kind"] == "JoinConfiguration"
    assert doc["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "192.168.68.200:6443",
        "token": "abcdef.0123456789abcdef",
        "caCertHashes": ["sha256:00"],
    }
    assert doc["nodeRegistration"]["name"] == "node02"


def test_the_ca_hash_is_kubeadms_public_key_pin(tmp_path: Path) -> None:
    key, crt = tmp_path / "ca.key", tmp_path / "ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(crt), "-subj", "/CN=kubernetes", "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    # The way kubeadm's documentation computes it.
    pipeline = (
        f"openssl x509 -pubkey -noout -in {crt} | openssl rsa -pubin -outform der 2>/dev/null"
        " | sha256sum"
    )
    expected = subprocess.run(pipeline, shell=True, check=True, capture_output=True, text=True)
    assert kubeadm.ca_cert_hash(crt.read_text()) == "sha256:" + expected.stdout.split()[0]


def test_tokens_are_recognised() -> None:
    assert kubeadm.valid_token("abcdef.0123456789abcdef")
    assert not kubeadm.valid_token("ABCDEF.0123456789abcdef")
    assert not kubeadm.valid_token("")
    assert not kubeadm.valid_token("abcdef.0123456789abcdef\nmore")


def _facts(*present: str, config: str = "") -> str:
    lines = "\n".join(present)
    return f"\n@@pikube-kube present\n{lines}\n@@pikube-kube config\n{config}\n@@pikube-kube end\n"


def test_kubeadms_traces_decide_init_half_init_and_join() -> None:
    fresh = kubeadm.parse_kube_facts(_facts())
    assert not fresh.initialised
    assert not fresh.half_initialised
    assert not fresh.joined
    assert fresh.config is None
    plane = kubeadm.parse_kube_facts(
        _facts("admin-conf", "apiserver-manifest", "kubelet-config", config="a: 1")
    )
    assert plane.initialised
    assert not plane.half_initialised
    assert plane.config == "a: 1\n"
    cut_short = kubeadm.parse_kube_facts(_facts("apiserver-manifest", "kubelet-config"))
    assert cut_short.half_initialised
    worker = kubeadm.parse_kube_facts(_facts("kubelet-conf", "kubelet-config", "link-cni0"))
    assert worker.joined
    assert worker.leftovers
    assert kubeadm.parse_kube_facts(_facts("kubeadm-running")).kubeadm_running


def test_the_facts_script_reads_the_files_it_checks() -> None:
    result = subprocess.run(
        ["sh", "-c", kubeadm.kube_facts_script()], capture_output=True, text=True, check=True
    )
    facts = kubeadm.parse_kube_facts(result.stdout)
    assert "admin-conf" not in facts.present  # this machine is no control plane


def test_nodes_from_the_api() -> None:
    nodes = kubeadm.parse_nodes(
        {
            "items": [
                {
                    "metadata": {
                        "name": "master",
                        "labels": {"node-role.kubernetes.io/control-plane": ""},
                    },
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "nodeInfo": {"kubeletVersion": "v1.31.5"},
                    },
                },
                {"metadata": {"name": "node01"}, "status": {"conditions": []}},
            ]
        }
    )
    assert nodes["master"] == kubeadm.NodeStatus(True, True, "v1.31.5")
    assert nodes["node01"] == kubeadm.NodeStatus(False, False, "")


def test_kubelets_eviction_thresholds_come_whole_from_the_spec(spec: ClusterSpec) -> None:
    assert "evictionHard" not in _docs(kubeadm.init_config(spec))["KubeletConfiguration"]
    thresholds = {"imagefs.available": "5%", "memory.available": "100Mi"}
    changed = spec.model_copy(
        update={"kubelet": spec.kubelet.model_copy(update={"eviction_hard": thresholds})}
    )
    assert _docs(kubeadm.init_config(changed))["KubeletConfiguration"]["evictionHard"] == thresholds
