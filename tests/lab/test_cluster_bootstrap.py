"""The seed's whole flow by `pikube cluster apply` alone on four fresh lab Pis booted as
Kubernetes nodes: host preparation, kubeadm init from the rendered configuration, flannel,
three concurrent joins, pikube's load balancer from its install manifest with the spec's pool,
nginx answering HTTP 200 at its LoadBalancer IP; then a second apply with nothing to do, the
kubeconfig merged on the "PC" (the lab's client) and used by kubectl, a named credential, and
a worker reset and joined again.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pikube.lab.kubernetes import builder, gobuild
from pikube.lab.kubernetes.seedcluster import KUBECTL, ready_nodes, ssh
from pikube.lab.lab import Lab
from tests.conftest import new_lab_name

pytestmark = pytest.mark.lab

NODES = ("master", "node01", "node02", "node03")
TOKEN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")


@dataclass
class Built:
    lab: Lab
    spec: Path
    plan: dict[str, Any]
    report: dict[str, Any]
    log: Path
    output: str


def _pikube(lab: Lab, *args: str, timeout_s: float = 900.0) -> tuple[int, str, str]:
    result = lab.run("client", [sys.executable, "-m", "pikube", *args], timeout_s=timeout_s)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    lab = Lab(new_lab_name())
    try:
        lab.up()
        spec = builder.up_for_builder(lab, say=lambda _line: None)
        status, planned, err = _pikube(lab, "cluster", "plan", "-f", str(spec), "-o", "json")
        assert status == 0, planned + err
        log = tmp_path_factory.mktemp("apply") / "apply.jsonl"
        args = ("cluster", "apply", "-f", str(spec), "--yes", "--log", str(log), "-o", "json")
        status, out, err = _pikube(lab, *args)
        assert status == 0, out + err
        yield Built(lab, spec, json.loads(planned), json.loads(out), log, out + err)
    finally:
        lab.down()


def test_one_apply_builds_the_seeds_cluster_and_nginx_answers(built: Built) -> None:
    report = built.report
    assert report["ok"] is True, report
    cluster = report["cluster"]
    assert cluster["http_status"] == 200
    assert cluster["url"] == "http://198.51.100.230:80/"  # the pool's first IP, as in the seed
    done = set(cluster["done"])
    assert {"master/init", "master/addon-flannel", "master/token"} <= done
    assert {"master/addon-load-balancer", "master/addon-pool", "master/addon-demo-app"} <= done
    assert {f"{n}/join" for n in NODES[1:]} <= done
    nodes = ready_nodes(ssh(built.lab, "master", f"{KUBECTL} get nodes -o json").stdout)
    assert nodes == dict.fromkeys(NODES, (True, "v1.31.5"))
    # The spec's networks and proxy mode reached the cluster.
    config = ssh(built.lab, "master", f"{KUBECTL} -n kube-system get cm kubeadm-config -o json")
    cluster_config = json.loads(config.stdout)["data"]["ClusterConfiguration"]
    assert "podSubnet: 10.244.0.0/16" in cluster_config
    assert "clusterName: kubeadm-orenge-cloud-playground" in cluster_config


def test_apply_ran_exactly_the_plan_and_no_secret_reached_a_log(built: Built) -> None:
    entries = [json.loads(line) for line in built.log.read_text().splitlines()]
    ran = [e for e in entries if "read_only" not in e]
    for node in NODES:
        host = [c for change in built.plan["hosts"][node]["changes"] for c in change["commands"]]
        steps = [s for s in built.plan["cluster"]["steps"] if s["node"] == node]
        cluster = [c for step in steps for c in step["commands"]]
        assert [e["command"] for e in ran if e["node"] == node] == host + cluster, node
    assert all(e["exit_status"] == 0 for e in ran)
    assert not TOKEN.search(built.log.read_text())
    assert not TOKEN.search(built.output)
    # The join configuration lived on the worker only while kubeadm read it.
    leftovers = ssh(built.lab, "node01", "ls /run | grep -c pikube-join || true").stdout
    assert leftovers.strip() == "0"


def test_a_second_apply_has_nothing_to_do(built: Built) -> None:
    status, out, err = _pikube(built.lab, "cluster", "plan", "-f", str(built.spec), "-o", "json")
    assert status == 0, err
    plan = json.loads(out)
    assert {n: h["changes"] for n, h in plan["hosts"].items()} == {n: [] for n in NODES}
    assert plan["cluster"]["steps"] == []
    status, out, err = _pikube(built.lab, "cluster", "apply", "-f", str(built.spec), "--yes")
    assert status == 0, out + err
    assert "0 changes applied" in out
    assert "nginx answers HTTP 200 at http://198.51.100." in out


def test_the_kubeconfig_is_merged_on_the_pc_and_works(built: Built, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: home\n  cluster: {server: https://h}\n"
        "contexts:\n- name: home\n  context: {cluster: home, user: me}\nusers:\n- name: me\n"
        "  user: {token: t}\ncurrent-context: home\n"
    )
    args = ("cluster", "kubeconfig", "-f", str(built.spec), "--merge", "-o", str(config))
    for _ in range(2):  # twice: the same cluster's entries are replaced, not added
        status, out, err = _pikube(built.lab, *args)
        assert status == 0, out + err
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert len(list(tmp_path.glob("config.*.bak"))) == 2
    kubectl = gobuild.ensure_built("kubernetes") / "kubectl"
    get = [str(kubectl), "--kubeconfig", str(config), "get", "nodes", "-o", "name"]
    result = built.lab.run("client", get, timeout_s=60.0)
    assert sorted(result.stdout.split()) == [f"node/{n}" for n in NODES], result.stderr
    contexts = built.lab.run(
        "client",
        [str(kubectl), "--kubeconfig", str(config), "config", "get-contexts", "-o", "name"],
    )
    assert sorted(contexts.stdout.split()) == ["home", "kubeadm-orenge-cloud-playground"]
    # A named, revocable credential: alice may read, not write.
    alice = tmp_path / "alice"
    user = ("--user", "alice", "--role", "view", "-o", str(alice))
    status, out, err = _pikube(built.lab, "cluster", "kubeconfig", "-f", str(built.spec), *user)
    assert status == 0, out + err
    base = [str(kubectl), "--kubeconfig", str(alice)]
    assert built.lab.run("client", [*base, "get", "deployment", "nginx"]).returncode == 0
    denied = built.lab.run("client", [*base, "delete", "deployment", "nginx", "--dry-run=server"])
    assert denied.returncode != 0
    assert "alice" in denied.stderr


def test_a_worker_reset_joins_again_on_the_next_apply(built: Built) -> None:
    lab, spec = built.lab, str(built.spec)
    status, out, err = _pikube(lab, "cluster", "reset", "-f", spec, "--node", "node03", "--yes")
    assert status == 0, out + err
    left = ssh(lab, "node03", "ls /etc/kubernetes/kubelet.conf /etc/cni/net.d; ip link show cni0")
    assert "No such file" in left.stderr
    assert "cni0" not in left.stdout
    nodes = ready_nodes(ssh(lab, "master", f"{KUBECTL} get nodes -o json").stdout)
    assert "node03" not in nodes  # drained and deleted first
    status, out, err = _pikube(lab, "cluster", "plan", "-f", spec, "-o", "json")
    steps = [f"{s['node']}/{s['id']}" for s in json.loads(out)["cluster"]["steps"]]
    assert steps == ["node03/images", "master/token", "node03/join"]
    status, out, err = _pikube(lab, "cluster", "apply", "-f", spec, "--yes")
    assert status == 0, out + err
    nodes = ready_nodes(ssh(lab, "master", f"{KUBECTL} get nodes -o json").stdout)
    assert nodes == dict.fromkeys(NODES, (True, "v1.31.5"))
