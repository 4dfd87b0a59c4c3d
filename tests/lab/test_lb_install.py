"""pikube installed on the lab's real Kubernetes v1.31.5 as a user installs it.

pikube's image (built without a container engine, appimage.py) is served by the router's app
registry as ghcr.io/pikube/pikube; `kubectl apply -k deploy/` from the lab's client installs
the CRDs, RBAC, the controller Deployment and the speaker DaemonSet; the seed's pool and
L2Advertisement, `kubectl create deployment nginx` and a LoadBalancer Service give the client
HTTP 200 from 198.51.100.230; a power cut of the announcing node moves the IP. The speaker
pods' resident memory and idle CPU are measured and printed (goals: under 60 MB, under 1 %).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from pikube.lab.hosts import sshhosts
from pikube.lab.kubernetes import appimage, binaries, seedcluster
from pikube.lab.kubernetes.seedcluster import KUBECTL, ssh
from pikube.lab.lab import Lab
from pikube.lab.network.probe import host_of_mac, read_neighbour
from pikube.lab.services import seed_service
from tests.conftest import new_lab_name

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parents[2]
VIP = "198.51.100.230"
WORKERS = ("node01", "node02", "node03")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Lab]:
    lab = Lab(new_lab_name())
    try:
        lab.up()
        image = appimage.ensure_image()
        seedcluster.up_kubernetes(lab, say=lambda _line: None)
        appimage.serve_image(lab, image)
        yield lab
    finally:
        lab.down()


def kubectl(lab: Lab, args: str, timeout_s: float = 120.0, stdin: str | None = None) -> str:
    result = ssh(lab, "master", f"{KUBECTL} {args}", timeout_s=timeout_s, input_text=stdin)
    assert result.returncode == 0, f"kubectl {args}:\n{result.stdout}{result.stderr}"
    return result.stdout


def client_kubectl(lab: Lab, *args: str) -> str:
    """The built kubectl v1.31.5 from the lab's client, as a user's workstation runs it."""
    built = binaries.built_binaries(["kubectl"])["kubectl"]
    conf = seedcluster.kubeconfig_path(lab.name)
    result = lab.run("client", [str(built), "--kubeconfig", str(conf), *args], timeout_s=180)
    assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:g} s"
        time.sleep(0.5)


def pods(lab: Lab, component: str) -> list[dict[str, object]]:
    out = kubectl(
        lab, f"-n metallb-system get pods -l app.kubernetes.io/component={component} -o json"
    )
    items: list[dict[str, object]] = json.loads(out)["items"]
    # Not the ones on their way out (the toleration patch below rolls the controller once).
    return [p for p in items if "deletionTimestamp" not in p["metadata"]]  # type: ignore[operator]


def owner(lab: Lab) -> str | None:
    entry = read_neighbour(lab.namespace(seed_service.CLIENT), VIP)
    host = host_of_mac(lab.topology.hosts, entry.mac if entry and entry.mac else None)
    return host.name if host else None


def http_ok(lab: Lab) -> bool:
    return seed_service.http_from(lab, seed_service.CLIENT, VIP, 80, 1.0).ok


def tolerate_disk_pressure(lab: Lab, workload: str) -> None:
    """The lab's nodes share this machine's disk, whose free space can sit at the kubelet's
    image-filesystem threshold (15 %) while other labs run: every node is then tainted
    disk-pressure and no Deployment schedules. pikube's controller (system-cluster-critical, so
    the kubelet admits it under pressure) tolerates it here; the speaker, a system-node-critical
    DaemonSet, needs nothing. nginx cannot be helped: the kubelet refuses a non-critical pod
    under disk pressure whatever it tolerates (a toleration only makes it evicted in a loop)."""
    patch = (
        '{"spec":{"template":{"spec":{"tolerations":[{"key":"node.kubernetes.io/disk-pressure",'
        '"operator":"Exists","effect":"NoSchedule"}]}}}}'
    )
    namespace, _, name = workload.rpartition(" ")
    kubectl(lab, f"{namespace} patch {name} -p '{patch}'".strip())


@pytest.fixture(scope="module")
def installed(cluster: Lab) -> Lab:
    client_kubectl(cluster, "apply", "-k", str(ROOT / "deploy"))
    tolerate_disk_pressure(cluster, "-n metallb-system deployment/pikube-controller")
    for workload in ("daemonset/pikube-speaker", "deployment/pikube-controller"):
        kubectl(cluster, f"-n metallb-system rollout status {workload} --timeout=240s", 270)
    pool_and_l2 = yaml.safe_dump_all(seed_service.manifests(cluster.topology)[:2])

    def applied() -> bool:  # the webhook's Service may route a moment after it is ready
        result = ssh(cluster, "master", f"{KUBECTL} apply -f -", input_text=pool_and_l2)
        assert result.returncode == 0 or "failed calling webhook" in result.stderr, result.stderr
        return result.returncode == 0

    wait_for("the seed's pool applied through the webhook", applied, 60)
    kubectl(cluster, "create deployment nginx --image=nginx")
    kubectl(cluster, "expose deployment nginx --type=LoadBalancer --port=80")
    kubectl(cluster, "rollout status deployment/nginx --timeout=240s", 270)
    return cluster


def test_speakers_run_on_every_worker_and_the_controller_on_a_worker(installed: Lab) -> None:
    speakers = {p["spec"]["nodeName"] for p in pods(installed, "speaker")}  # type: ignore[index]
    assert set(WORKERS) <= speakers
    controllers = pods(installed, "controller")
    assert len(controllers) == 2
    for pod in controllers:
        assert pod["spec"]["nodeName"] in WORKERS  # type: ignore[index]
    lease = json.loads(kubectl(installed, "-n metallb-system get lease pikube-controller -o json"))
    assert lease["spec"]["holderIdentity"] in {p["metadata"]["name"] for p in controllers}  # type: ignore[index]


def test_the_service_gets_the_pools_first_ip_and_the_client_gets_200(installed: Lab) -> None:
    def assigned() -> bool:
        out = kubectl(installed, "get svc nginx -o jsonpath={.status.loadBalancer.ingress[0].ip}")
        return out.strip() == VIP

    wait_for("nginx's LoadBalancer IP", assigned)
    wait_for("HTTP 200 from the client", lambda: http_ok(installed), 60)
    announcer = owner(installed)
    assert announcer in WORKERS
    statuses = json.loads(kubectl(installed, "-n metallb-system get servicel2statuses -o json"))
    assert [s["status"]["node"] for s in statuses["items"]] == [announcer]


def test_a_bad_pool_is_refused_at_apply_naming_the_field(installed: Lab) -> None:
    def attempt(namespace: str, address: str) -> str:
        pool = {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "bad", "namespace": namespace},
            "spec": {"addresses": [address]},
        }
        command = f"{KUBECTL} apply -f -"
        result = ssh(installed, "master", command, input_text=yaml.safe_dump(pool))
        assert result.returncode != 0, result.stdout
        return result.stderr

    overlapping = attempt("metallb-system", "198.51.100.240/29")
    assert "denied the request: IPAddressPool 'bad': spec.addresses[0]: " in overlapping
    assert "IPAddressPool 'seed-pool'" in overlapping
    invalid = attempt("metallb-system", "198.51.100.300/32")
    assert "spec.addresses[0]: '198.51.100.300/32' is not a valid CIDR" in invalid
    elsewhere = attempt("default", "10.9.0.0/24")
    assert "resource must be created in metallb-system namespace" in elsewhere
    kubectl(installed, "-n metallb-system get secret pikube-webhook-cert")


def test_speaker_memory_and_idle_cpu_are_measured(installed: Lab) -> None:
    """Resident memory and CPU over 10 idle seconds of each worker's speaker process."""
    figures = {}
    clock = os.sysconf("SC_CLK_TCK")
    for node in WORKERS:
        (pid,) = [
            pid
            for pid, argv in sshhosts.host_processes(installed.name, node)
            if argv[1:5] == ("-m", "pikube", "lb", "speaker")
        ]

        def ticks(pid: int = pid) -> int:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime

        before, started = ticks(), time.monotonic()
        time.sleep(10)
        cpu = (ticks() - before) / clock / (time.monotonic() - started) * 100
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])
        figures[node] = {"rss_mb": round(rss_kb / 1024, 1), "idle_cpu_percent": round(cpu, 2)}
    print("\nspeaker pods:", json.dumps(figures))
    assert all(f["rss_mb"] > 0 for f in figures.values())


def test_a_power_cut_of_the_announcing_node_moves_the_ip(installed: Lab) -> None:
    # One nginx replica per worker: the cut node may run one, and the IP's new owner must
    # have a live endpoint to answer (with one replica on the cut node, nothing answers until
    # Kubernetes evicts it, minutes later: not the load balancer's doing).
    kubectl(installed, "scale deployment nginx --replicas=3")
    kubectl(installed, "rollout status deployment/nginx --timeout=240s", 270)
    wait_for("HTTP 200 from the client", lambda: http_ok(installed), 60)
    before = owner(installed)
    assert before in WORKERS
    sshhosts.power_cut(installed, before)
    started = time.monotonic()

    def moved() -> bool:
        return http_ok(installed) and owner(installed) not in (None, before)

    wait_for(f"the IP to move off {before}", moved, 60)
    print(f"\nIP moved {before} -> {owner(installed)} ({time.monotonic() - started:.2f} s)")
