"""The seed's cluster for real in the lab: kubeadm init on master, flannel, three joins.

Owns the seed's sections 2 and 3 as a user types them, over SSH from the lab's client, on lab
Pis booted as Kubernetes nodes (pihost.HostConfig.kubernetes_node) with the real packages and
images the lab serves (debs.py, registry.py): host preparation by `pikube cluster apply`, then
`kubeadm init --pod-network-cidr=10.244.0.0/16`, the admin kubeconfig, flannel's own manifest
applied unmodified, the join command init printed run on node01-03 at once, and the wait for
four Ready nodes. Nothing here edits a command or a manifest of the seed to make the lab work.

The pure part (reading init's output, the nodes' readiness) is `join_command` and
`ready_nodes`; the rest is the thin adapter that runs the commands.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pikube.errors import PikubeError
from pikube.lab import state
from pikube.lab.hosts import pihost, sshhosts
from pikube.lab.kubernetes import registry
from pikube.lab.lab import Lab
from pikube.system import require_commands

POD_NETWORK_CIDR = "10.244.0.0/16"  # the seed's, and flannel's default
INIT_COMMAND = f"kubeadm init --pod-network-cidr={POD_NETWORK_CIDR}"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBECTL = f"kubectl --kubeconfig {ADMIN_CONF}"
_INIT_TIMEOUT_S = 600.0
_JOIN_TIMEOUT_S = 600.0
_READY_TIMEOUT_S = 600.0
_APPLY_TIMEOUT_S = 900.0


# -- the pure part ---------------------------------------------------------------------------


def join_command(init_output: str) -> str:
    """The worker join command `kubeadm init` printed (its lines joined), or an error."""
    text = init_output.replace("\\\n", " ")
    for line in text.splitlines():
        words = line.split()
        if words[:2] == ["kubeadm", "join"] and "--control-plane" not in words:
            return " ".join(words)
    raise PikubeError("kubeadm init printed no join command; see its output above")


def ready_nodes(nodes_json: str) -> dict[str, tuple[bool, str]]:
    """Each node's readiness and kubelet version from `kubectl get nodes -o json`."""
    result: dict[str, tuple[bool, str]] = {}
    for item in json.loads(nodes_json).get("items", []):
        name = item["metadata"]["name"]
        conditions = item.get("status", {}).get("conditions", [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        version = item.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
        result[name] = (ready, version)
    return result


def kube_proxy_conntrack_max(cpus: int, per_core: int = 32768, minimum: int = 131072) -> int:
    """The nf_conntrack_max kube-proxy v1.31 insists on with kubeadm's defaults
    (conntrack.maxPerCore 32768, min 131072): it writes it whenever it differs, and exits when
    it cannot (a network namespace cannot)."""
    return max(per_core * cpus, minimum)


def redact_join(command: str) -> str:
    """A join command fit for a log: the token and the CA hash hidden."""
    command = re.sub(r"(--token\s+)\S+", r"\1<token>", command)
    return re.sub(r"(--discovery-token-ca-cert-hash\s+)\S+", r"\1<hash>", command)


# -- the adapter -----------------------------------------------------------------------------


@dataclass
class Stages:
    """How long each stage took (seconds), in order."""

    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, step: Callable[[], None], say: Callable[[str], None]) -> None:
        say(f"{name} ...")
        started = time.monotonic()
        step()
        self.seconds[name] = round(time.monotonic() - started, 1)
        say(f"{name}: {self.seconds[name]:.1f} s")


def kubeconfig_path(lab_name: str) -> Path:
    """Where the lab keeps a copy of the real cluster's admin.conf."""
    return state.lab_dir(lab_name) / "kubernetes" / "admin.conf"


def ssh(
    lab: Lab, host: str, command: str, *, timeout_s: float = 120.0, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `command` on a lab Pi as the seed's user would: ssh from the client."""
    key = sshhosts.client_key_path(lab.name)
    known = sshhosts.known_hosts_path(lab.name)
    argv = [
        "ssh",
        "-i",
        str(key),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "LogLevel=ERROR",
        f"root@{lab.topology.host(host).ipv4}",
        command,
    ]
    return lab.run("client", argv, timeout_s=timeout_s, input_text=input_text)


def _checked(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise PikubeError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout


CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")


def set_conntrack_max(say: Callable[[str], None]) -> None:
    """Set the machine's nf_conntrack_max to what kube-proxy asks of the lab's nodes, since a
    node's kube-proxy cannot (the setting is the machine's, not a namespace's; decision 0047)."""
    cpus = min(len(os.sched_getaffinity(0)), max(b.cores for b in pihost.BOARDS.values()))
    wanted = kube_proxy_conntrack_max(cpus)
    current = int(CONNTRACK_MAX.read_text())
    if current != wanted:
        CONNTRACK_MAX.write_text(f"{wanted}\n")
        say(f"machine: net.netfilter.nf_conntrack_max {current} -> {wanted} (kube-proxy's value)")


def prepare_hosts(lab: Lab) -> None:
    """The seed's section 2 by pikube's builder: `pikube cluster apply` from the client."""
    spec = state.lab_dir(lab.name) / "kubernetes" / "cluster.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(sshhosts.cluster_spec_yaml(lab))
    argv = [sys.executable, "-m", "pikube", "cluster", "apply", "-f", str(spec), "--yes"]
    result = lab.run("client", argv, timeout_s=_APPLY_TIMEOUT_S)
    _checked(result, "pikube cluster apply (host preparation)")


def kubeadm_init(lab: Lab) -> str:
    """`kubeadm init` on master, the admin kubeconfig copied to the lab; the join command."""
    output = _checked(
        ssh(lab, "master", INIT_COMMAND, timeout_s=_INIT_TIMEOUT_S), f"master: {INIT_COMMAND}"
    )
    conf = _checked(ssh(lab, "master", f"cat {ADMIN_CONF}"), f"master: cat {ADMIN_CONF}")
    path = kubeconfig_path(lab.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(conf)
    return join_command(output)


def apply_flannel(lab: Lab, manifest: str) -> None:
    _checked(
        ssh(lab, "master", f"{KUBECTL} apply -f -", input_text=manifest),
        "master: kubectl apply -f kube-flannel.yml",
    )


def join_workers(lab: Lab, command: str, workers: Iterable[str]) -> None:
    """The join command on every worker at once; every failure is named."""
    names = list(workers)
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        results = list(pool.map(lambda h: ssh(lab, h, command, timeout_s=_JOIN_TIMEOUT_S), names))
    failed = [(h, r) for h, r in zip(names, results, strict=True) if r.returncode != 0]
    if failed:
        lines = []
        for host, result in failed:
            tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
            lines.append(f"{host}: {redact_join(command)} failed:\n  " + "\n  ".join(tail))
        raise PikubeError("\n".join(lines))


def wait_ready(lab: Lab, expected: Iterable[str], timeout_s: float = _READY_TIMEOUT_S) -> None:
    wanted = set(expected)
    deadline = time.monotonic() + timeout_s
    seen: dict[str, tuple[bool, str]] = {}
    while time.monotonic() < deadline:
        result = ssh(lab, "master", f"{KUBECTL} get nodes -o json")
        if result.returncode == 0:
            seen = ready_nodes(result.stdout)
            if wanted <= {n for n, (ready, _) in seen.items() if ready}:
                return
        time.sleep(2.0)
    missing = sorted(n for n in wanted if not seen.get(n, (False, ""))[0])
    raise PikubeError(
        f"nodes not Ready after {timeout_s:g} s: {', '.join(missing)} "
        f"(see `kubectl describe node` on master)"
    )


# What "every component Ready" means after the joins: kubeadm's and flannel's workloads.
SYSTEM_ROLLOUTS = (
    "-n kube-flannel rollout status daemonset/kube-flannel-ds",
    "-n kube-system rollout status daemonset/kube-proxy",
    "-n kube-system rollout status deployment/coredns",
)


def wait_system_pods(lab: Lab, timeout_s: float = _READY_TIMEOUT_S) -> None:
    for rollout in SYSTEM_ROLLOUTS:
        command = f"{KUBECTL} {rollout} --timeout={timeout_s:.0f}s"
        _checked(ssh(lab, "master", command, timeout_s=timeout_s + 30), f"master: {command}")


def up_kubernetes(lab: Lab, say: Callable[[str], None] = print) -> Stages:
    """The lab's top rung: real Kubernetes v1.31.5 on master and node01-03 (see the module
    docstring). The lab must be up without the API stand-in."""
    require_commands("ssh")
    lab.require_up()
    stages = Stages()
    workers = [h.name for h in lab.topology.hosts if h.is_kubernetes_node and h.name != "master"]
    manifest = ""

    def parts() -> None:
        nonlocal manifest
        registry.up_registry(lab)
        manifest = flannel_manifest()

    stages.run("packages and images", parts, say)

    def boot() -> None:
        sshhosts.up_ssh_hosts(lab, kubernetes_nodes=True)

    stages.run("boot the Pis", boot, say)
    stages.run("prepare hosts (pikube cluster apply)", lambda: prepare_hosts(lab), say)
    join: list[str] = []
    set_conntrack_max(say)
    stages.run("kubeadm init", lambda: join.append(kubeadm_init(lab)), say)
    stages.run("flannel", lambda: apply_flannel(lab, manifest), say)
    stages.run("kubeadm join", lambda: join_workers(lab, join[0], workers), say)
    stages.run("four Ready nodes", lambda: wait_ready(lab, ["master", *workers]), say)
    stages.run("flannel, kube-proxy and CoreDNS ready", lambda: wait_system_pods(lab), say)
    return stages


def flannel_manifest() -> str:
    """flannel's own kube-flannel.yml, from the module of the flannel version the lab builds."""
    from pikube.lab.kubernetes import gobuild  # noqa: PLC0415

    return gobuild.module_file("flannel", "Documentation/kube-flannel.yml").decode()
