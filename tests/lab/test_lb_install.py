"""pikube installed on the lab's real Kubernetes v1.31.5 as a user installs it, over MetalLB.

MetalLB v0.14.9 first, as the seed installs it: its own metallb-native.yaml, unmodified from its
Go module, with its images built from that module (served as quay.io/metallb/...); the seed's
pool, L2Advertisement and nginx Service; HTTP 200 from 198.51.100.230. Then the documented
migration to pikube while the client probes the IP (the IP stays; the outage is printed), and
later back to MetalLB and to pikube again.

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

from pikube.bench import kube_lb
from pikube.lab.hosts import sshhosts
from pikube.lab.kubernetes import appimage, binaries, metallb, seedcluster
from pikube.lab.kubernetes.seedcluster import KUBECTL, ssh
from pikube.lab.lab import Lab
from pikube.lab.network.probe import host_of_mac, read_neighbour
from pikube.lab.services import seed_service
from tests.lab.conftest import SeedKubernetes

pytestmark = pytest.mark.lab

ROOT = Path(__file__).parents[2]
VIP = "198.51.100.230"
WORKERS = ("node01", "node02", "node03")


@pytest.fixture(scope="module")
def cluster(seed_kubernetes: SeedKubernetes) -> Iterator[Lab]:
    """The session's seed cluster (tests/lab/conftest.py, after test_kubernetes_seed), with
    pikube's and MetalLB's images served; discarded at the end (MetalLB and pikube installed,
    a node powered off)."""
    try:
        image = appimage.ensure_image()
        lab = seed_kubernetes.lab()
        appimage.serve_image(lab, image)
        metallb.serve_images(lab)
        yield lab
    finally:
        seed_kubernetes.discard()


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


def pods(
    lab: Lab, component: str, label: str = "app.kubernetes.io/component"
) -> list[dict[str, object]]:
    """pikube's Pods of a component (MetalLB's with label="component")."""
    out = kubectl(lab, f"-n metallb-system get pods -l {label}={component} -o json")
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


def apply_pool_and_l2(lab: Lab) -> None:
    pool_and_l2 = yaml.safe_dump_all(seed_service.manifests(lab.topology)[:2])

    def applied() -> bool:  # the webhook's Service may route a moment after it is ready
        result = ssh(lab, "master", f"{KUBECTL} apply -f -", input_text=pool_and_l2)
        assert result.returncode == 0 or "webhook" in result.stderr, result.stderr
        return result.returncode == 0

    wait_for("the seed's pool applied through the webhook", applied, 90)


def assigned_ip(lab: Lab) -> str:
    return kubectl(lab, "get svc nginx -o jsonpath={.status.loadBalancer.ingress[0].ip}").strip()


@pytest.fixture(scope="module")
def with_metallb(cluster: Lab) -> Lab:
    """MetalLB as the seed installs it: its release manifest, the pool and L2Advertisement,
    `kubectl create deployment nginx` and `kubectl expose ... --type=LoadBalancer`."""
    kubectl(cluster, "apply -f -", stdin=metallb.manifest())
    for workload in ("daemonset/speaker", "deployment/controller"):
        kubectl(cluster, f"-n metallb-system rollout status {workload} --timeout=240s", 270)
    apply_pool_and_l2(cluster)
    kubectl(cluster, "create deployment nginx --image=nginx")
    kubectl(cluster, "expose deployment nginx --type=LoadBalancer --port=80")
    kubectl(cluster, "rollout status deployment/nginx --timeout=240s", 270)
    wait_for("nginx's LoadBalancer IP", lambda: assigned_ip(cluster) == VIP)
    wait_for("HTTP 200 from the client", lambda: http_ok(cluster), 60)
    return cluster


def apply_pikube(lab: Lab) -> None:
    """`kubectl apply -k deploy/` from the client, as a user installs pikube."""
    client_kubectl(lab, "apply", "-k", str(ROOT / "deploy"))
    tolerate_disk_pressure(lab, "-n metallb-system deployment/pikube-controller")
    for workload in ("daemonset/pikube-speaker", "deployment/pikube-controller"):
        kubectl(lab, f"-n metallb-system rollout status {workload} --timeout=240s", 270)


SWITCHES: list[kube_lb.Switch] = []


@pytest.fixture(scope="module")
def installed(with_metallb: Lab) -> Lab:
    """pikube, switched to from MetalLB as docs/install.md says while the client probes."""
    done = kube_lb.switch(
        with_metallb, "metallb", "pikube", "switch-to-pikube", lambda: apply_pikube(with_metallb)
    )
    SWITCHES.append(done)
    return with_metallb


def test_metallb_from_its_own_manifest_serves_the_seed_service(with_metallb: Lab) -> None:
    manifest = metallb.manifest()
    for image in metallb.IMAGES:
        assert f"image: {image.reference}" in manifest
    speakers = {p["spec"]["nodeName"] for p in pods(with_metallb, "speaker", "component")}  # type: ignore[index]
    assert set(WORKERS) <= speakers
    assert owner(with_metallb) in WORKERS
    assert http_ok(with_metallb)


def print_switch(done: kube_lb.Switch) -> None:
    print(
        f"\nswitch {done.old} -> {done.new}: client outage {done.outage_ms:.0f} ms "
        f"({done.failed_probes} failed probes), owner {done.owner_before} -> "
        f"{done.owner_after}, settled after {done.seconds:.1f} s"
    )


def test_switching_from_metallb_to_pikube_keeps_the_ip(installed: Lab) -> None:
    (done,) = SWITCHES
    print_switch(done)
    assert assigned_ip(installed) == VIP
    assert done.outage_ms >= 0  # the client was served before and after
    assert not pods(installed, "speaker", "component")  # MetalLB's speakers are gone
    assert http_ok(installed)


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
    assert owner(installed) in WORKERS


def test_the_announcer_writes_its_servicel2status_after_the_switch(installed: Lab) -> None:
    announcer = owner(installed)

    def status_nodes() -> list[str]:
        out = kubectl(installed, "-n metallb-system get servicel2statuses -o json")
        return [s.get("status", {}).get("node") for s in json.loads(out)["items"]]

    # MetalLB's speaker left one of its own (owned by its Pod): gone with it, then pikube's.
    wait_for("one ServiceL2Status, the announcer's", lambda: status_nodes() == [announcer], 15)


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


SETTLED_S, WINDOW_S = 60.0, 30.0  # idle: a speaker past its start (informers, joining, GC)


def test_speaker_memory_and_idle_cpu_are_measured(installed: Lab) -> None:
    """Resident memory, and CPU over the same idle 30 s of each worker's speaker process once
    every one has run for a minute (goals: under 60 MB, under 1 % of a core)."""
    clock = os.sysconf("SC_CLK_TCK")
    speakers = {}
    for node in WORKERS:
        (speakers[node],) = [
            pid
            for pid, argv in sshhosts.host_processes(installed.name, node)
            if argv[1:5] == ("-m", "pikube", "lb", "speaker")
        ]

    def stat(pid: int) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    def ticks(pid: int) -> int:
        fields = stat(pid)
        return int(fields[11]) + int(fields[12])  # utime + stime

    uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    youngest_s = min(uptime_s - int(stat(pid)[19]) / clock for pid in speakers.values())
    time.sleep(max(0.0, SETTLED_S - youngest_s))
    before, started = {node: ticks(pid) for node, pid in speakers.items()}, time.monotonic()
    time.sleep(WINDOW_S)
    after, seconds = (
        {node: ticks(pid) for node, pid in speakers.items()},
        time.monotonic() - started,
    )
    figures: dict[str, object] = {}
    for node, pid in speakers.items():
        cpu = (after[node] - before[node]) / clock / seconds * 100
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])
        figures[node] = {"rss_mb": round(rss_kb / 1024, 1), "idle_cpu_percent": round(cpu, 2)}
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)
    print("\nspeaker pods:", json.dumps(figures))
    assert all(f["rss_mb"] > 0 for f in figures.values() if isinstance(f, dict))


def test_switching_back_to_metallb_and_again_to_pikube_keeps_the_ip(installed: Lab) -> None:
    back = kube_lb.switch(installed, "pikube", "metallb", "switch-to-metallb")
    print_switch(back)
    assert assigned_ip(installed) == VIP
    assert not pods(installed, "speaker")  # pikube's speakers are gone
    again = kube_lb.switch(
        installed, "metallb", "pikube", "switch-again", lambda: apply_pikube(installed)
    )
    print_switch(again)
    assert assigned_ip(installed) == VIP
    assert http_ok(installed)


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
