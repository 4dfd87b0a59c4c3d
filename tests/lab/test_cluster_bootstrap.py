"""The README's "Your first real cluster" followed literally on four fresh lab Pis booted as
Kubernetes nodes, from `pikube cluster init` to an empty second plan: the seed's whole flow by
`pikube cluster apply` alone (host preparation, kubeadm init, flannel, three concurrent joins,
pikube's load balancer with the spec's pool, nginx answering HTTP 200 at its LoadBalancer IP),
the kubeconfig merged on the "PC" (the lab's client) and used by kubectl. Then, on the same
cluster: a second apply with nothing to do, a named credential, and the faults of a join (a
worker unreachable, Ctrl-C while a worker joins), each completed by the next apply.

What differs from a user at a terminal, and only this: the `$EDITOR` step is done here (the
lab's Pis, the SSH user and key, the lab's copy of pkgs.k8s.io and flannel's manifest, since the
lab has no Internet, and what the lab's shared disk and registry need), `apply` gets `--yes`
(no terminal to answer its question), the seed's LAN 192.168.68.0/24 is the lab's
198.51.100.0/24 in `curl`'s address, and the test reads between the steps (`plan -o json`
before apply, to hold the apply's log against).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pikube.lab.hosts import sshhosts
from pikube.lab.kubernetes import builder, gobuild
from pikube.lab.kubernetes.seedcluster import KUBECTL, ready_nodes, ssh
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from tests.conftest import new_lab_name

pytestmark = pytest.mark.lab

NODES = ("master", "node01", "node02", "node03")
TOKEN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")
README = Path(__file__).parents[2] / "README.md"


def walkthrough() -> list[str]:
    """The command lines of the README's walk-through, comments taken off."""
    text = README.read_text()
    section = text.split("### Your first real cluster", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the walk-through has no ```sh block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_walkthrough_is_what_this_test_follows() -> None:
    assert walkthrough() == [
        "pikube cluster init",
        "$EDITOR cluster.yaml",
        "pikube cluster doctor",
        "pikube cluster plan",
        "pikube cluster apply",
        "pikube cluster kubeconfig --merge",
        "kubectl get nodes",
        "curl http://192.168.68.230/",
        "pikube cluster plan",
    ]


@dataclass
class Built:
    lab: Lab
    spec: Path
    home: Path
    outputs: list[tuple[str, int, str]]  # (README line, exit status, stdout + stderr)
    plan: dict[str, Any]  # `plan -o json` just before apply
    log: Path  # apply's command log (its default place under $HOME)

    def output(self, line: str, nth: int = 0) -> tuple[int, str]:
        found = [(status, out) for ran, status, out in self.outputs if ran == line]
        return found[nth]


def _merge(base: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in edits.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _edit(spec: Path, lab_spec: Path) -> None:
    """What the user does in their editor: make init's spec describe their Pis. Every value
    the lab needs is taken from the lab's own spec; the rest stays as init wrote it (the SSH
    known hosts stay the user's own file)."""
    edits = yaml.safe_load(lab_spec.read_text())
    del edits["ssh"]["known_hosts"]
    spec.write_text(yaml.safe_dump(_merge(yaml.safe_load(spec.read_text()), edits)))


def _in_the_lab(line: str) -> str:
    if line == "pikube cluster apply":
        return line + " --yes"
    return line.replace("192.168.68.", "198.51.100.")


def _shell(lab: Lab, workdir: Path, home: Path, command: str) -> subprocess.CompletedProcess[str]:
    """A command as the workstation's user runs it, in the directory of cluster.yaml."""
    argv = ["env", f"HOME={home}", "sh", "-c", f"cd {workdir} && {command}"]
    return lab.run("client", argv, timeout_s=900.0)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    lab = Lab(new_lab_name())
    try:
        lab.up()
        lab_spec = builder.up_for_builder(lab, say=lambda _line: None)
        workdir = tmp_path_factory.mktemp("pc")
        home = workdir / "home"
        home.mkdir()
        outputs: list[tuple[str, int, str]] = []
        plan: dict[str, Any] = {}
        for line in walkthrough():
            if line.startswith("$EDITOR"):
                _edit(workdir / "cluster.yaml", lab_spec)
                continue
            if line == "pikube cluster apply":
                planned = _shell(lab, workdir, home, "pikube cluster plan -o json")
                assert planned.returncode == 0, planned.stdout + planned.stderr
                plan = json.loads(planned.stdout)
            result = _shell(lab, workdir, home, _in_the_lab(line))
            outputs.append((line, result.returncode, result.stdout + result.stderr))
        (log,) = (home / ".local/state/pikube/logs").glob("apply-*.jsonl")
        yield Built(lab, workdir / "cluster.yaml", home, outputs, plan, log)
    finally:
        lab.down()


def test_the_walkthrough_builds_the_seeds_cluster_and_nginx_answers(built: Built) -> None:
    status, out = built.output("pikube cluster init")
    assert status == 0, out
    assert (built.spec.parent / "cluster.schema.json").exists()
    # Fresh Raspberry Pi OS: swap on and the memory cgroup off fail the doctor; apply fixes them.
    status, out = built.output("pikube cluster doctor")
    assert status in (0, 1), out
    assert "unreachable" not in out
    assert re.search(r"\(apply\s+does\s+this\)", out), out
    status, out = built.output("pikube cluster plan")
    assert status == 0, out
    assert "cluster: " in out
    assert "kubeadm init: a new control plane" in out
    status, out = built.output("pikube cluster apply")
    assert status == 0, out
    assert "nginx answers HTTP 200 at http://198.51.100.230:80/" in out  # the pool's first IP
    status, out = built.output("pikube cluster kubeconfig --merge")
    assert status == 0, out
    assert (built.home / ".kube/config").stat().st_mode & 0o777 == 0o600
    status, out = built.output("kubectl get nodes")
    assert status == 0, out
    assert sorted(re.findall(r"^(\S+)\s+Ready\s", out, re.MULTILINE)) == list(NODES), out
    status, out = built.output("curl http://192.168.68.230/")
    assert status == 0, out
    assert "Welcome to nginx!" in out
    status, out = built.output("pikube cluster plan", 1)
    assert status == 0, out
    for node in NODES:
        assert f"{node}: no changes" in out, out
    assert "cluster: no changes" in out, out
    # The spec's networks and cluster name reached kubeadm.
    config = ssh(built.lab, "master", f"{KUBECTL} -n kube-system get cm kubeadm-config -o json")
    cluster_config = json.loads(config.stdout)["data"]["ClusterConfiguration"]
    assert "podSubnet: 10.244.0.0/16" in cluster_config
    assert "clusterName: kubeadm-orenge-cloud-playground" in cluster_config


def _entries(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_apply_ran_exactly_the_plan_and_no_secret_reached_a_log(built: Built) -> None:
    ran = [e for e in _entries(built.log) if "read_only" not in e]
    done = {f"{e['node']}/{e['change']}" for e in ran}
    assert {"master/init", "master/addon-flannel", "master/token"} <= done
    assert {"master/addon-load-balancer", "master/addon-pool", "master/addon-demo-app"} <= done
    assert {f"{n}/join" for n in NODES[1:]} <= done
    for node in NODES:
        host = [c for change in built.plan["hosts"][node]["changes"] for c in change["commands"]]
        steps = [s for s in built.plan["cluster"]["steps"] if s["node"] == node]
        cluster = [c for step in steps for c in step["commands"]]
        assert [e["command"] for e in ran if e["node"] == node] == host + cluster, node
    assert all(e["exit_status"] == 0 for e in ran)
    assert not TOKEN.search(built.log.read_text())
    assert not TOKEN.search(built.output("pikube cluster apply")[1])
    # The join configuration lived on the worker only while kubeadm read it.
    leftovers = ssh(built.lab, "node01", "ls /run | grep -c pikube-join || true").stdout
    assert leftovers.strip() == "0"


def _pikube(built: Built, *args: str) -> tuple[int, str]:
    result = _shell(built.lab, built.spec.parent, built.home, "pikube " + " ".join(args))
    return result.returncode, result.stdout + result.stderr


def test_a_second_apply_has_nothing_to_do_and_reads_each_node_once(built: Built) -> None:
    log = built.spec.parent / "again.jsonl"
    status, out = _pikube(built, "cluster", "apply", "--yes", "--log", str(log))
    assert status == 0, out
    assert "0 changes applied" in out
    assert "nginx answers HTTP 200 at http://198.51.100.230:80/" in out
    entries = _entries(log)
    assert all(e.get("read_only") for e in entries), entries
    # One round trip per node (host facts and kubeadm's traces), one read of the API; no wait.
    reads = sorted(f"{e['node']}/{e['change']}" for e in entries)
    assert reads == ["master/api-facts", *(f"{n}/facts" for n in NODES)]


def test_the_kubeconfig_is_merged_on_the_pc_and_works(built: Built, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: home\n  cluster: {server: https://h}\n"
        "contexts:\n- name: home\n  context: {cluster: home, user: me}\nusers:\n- name: me\n"
        "  user: {token: t}\ncurrent-context: home\n"
    )
    for _ in range(2):  # twice: the same cluster's entries are replaced, not added
        status, out = _pikube(built, "cluster", "kubeconfig", "--merge", "-o", str(config))
        assert status == 0, out
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
    status, out = _pikube(built, "cluster", "kubeconfig", "--user", "alice", "--role", "view",
                          "-o", str(alice))  # fmt: skip
    assert status == 0, out
    base = [str(kubectl), "--kubeconfig", str(alice)]
    assert built.lab.run("client", [*base, "get", "deployment", "nginx"]).returncode == 0
    denied = built.lab.run("client", [*base, "delete", "deployment", "nginx", "--dry-run=server"])
    assert denied.returncode != 0
    assert "alice" in denied.stderr


def _kubeadm_joins(lab: Lab, host: str) -> bool:
    return any(
        argv and argv[0].rsplit("/", 1)[-1] == "kubeadm" and "join" in argv
        for _pid, argv in sshhosts.host_processes(lab.name, host)
    )


def test_a_join_cut_short_by_an_unreachable_worker_or_ctrl_c_is_finished_by_the_next_apply(
    built: Built,
) -> None:
    lab = built.lab
    status, out = _pikube(built, "cluster", "reset", "--node", "node02", "--node", "node03",
                          "--yes")  # fmt: skip
    assert status == 0, out
    left = ssh(lab, "node03", "ls /etc/kubernetes/kubelet.conf /etc/cni/net.d; ip link show cni0")
    assert "No such file" in left.stderr
    assert "cni0" not in left.stdout
    nodes = ready_nodes(ssh(lab, "master", f"{KUBECTL} get nodes -o json").stdout)
    assert set(nodes) == {"master", "node01"}  # drained and deleted first
    status, out = _pikube(built, "cluster", "plan", "-o", "json")
    steps = [f"{s['node']}/{s['id']}" for s in json.loads(out)["cluster"]["steps"]]
    assert steps == ["node02/images", "node03/images", "master/token", "node02/join", "node03/join"]

    # node03's cable is pulled: node02 joins, the run ends naming node03.
    port = lab.topology.bridge_port("node03")
    netns.set_link_state(lab.topology.lan_namespace, port, up=False)
    try:
        status, out = _pikube(built, "cluster", "apply", "--yes")
    finally:
        netns.set_link_state(lab.topology.lan_namespace, port, up=True)
    assert status == 1, out
    assert "node03: unreachable" in out
    assert "cluster: node03 skipped" in out
    assert "apply again once the nodes named above are fixed or back" in out
    nodes = ready_nodes(ssh(lab, "master", f"{KUBECTL} get nodes -o json").stdout)
    assert set(nodes) == {"master", "node01", "node02"}

    # Back on the LAN, node03 joins; Ctrl-C while kubeadm join runs there lets it finish.
    argv = [sys.executable, "-m", "pikube", "cluster", "apply", "-f", str(built.spec), "--yes"]
    apply = subprocess.Popen(
        lab.command("client", argv),
        env=lab.environment({"HOME": str(built.home)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300.0
    while not _kubeadm_joins(lab, "node03") and apply.poll() is None:
        assert time.monotonic() < deadline, "kubeadm join never ran on node03"
        time.sleep(0.05)
    apply.send_signal(signal.SIGINT)
    out, _ = apply.communicate(timeout=600)
    assert apply.returncode == 130, out
    assert "cluster: interrupted (each command started ran to its end); apply again" in out
    assert "failed" not in out  # the join ran to its end
    status, out = _pikube(built, "cluster", "apply", "--yes")
    assert status == 0, out
    assert "nginx answers HTTP 200" in out
    nodes = ready_nodes(ssh(lab, "master", f"{KUBECTL} get nodes -o json").stdout)
    assert nodes == dict.fromkeys(NODES, (True, "v1.31.5"))
