"""The seed's flow through the Kubernetes API, in a lab: kubectl applies pikube's CRDs, the
seed's pool and L2Advertisement, nginx and its LoadBalancer Service; pikube's controller (on
master) writes 198.51.100.230 into the Service's status; the speakers (node01-03, fed by the
API) announce it; the client gets HTTP 200 and its ARP table names the owner; the owner
crashes and `kubectl get servicel2statuses -A` names the new one. Then the faults.

The API is a real etcd + kube-apiserver v1.31.5 running on master (the `lab_api` fixture;
pikube.lab.kubernetes.apiserver.start_in_lab), without kubelets or kube-controller-manager: the
lab registers the Nodes and publishes the EndpointSlices of the nginx it runs. On the lab's
full real Kubernetes (`pikube lab up --kubernetes`) the EndpointSlices would come from
kube-controller-manager instead.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pikube.lab import state
from pikube.lab.kubernetes import apiserver as control_plane
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.network.probe import (
    ProberConfig,
    ProbeResult,
    host_of_mac,
    read_neighbour,
    start_prober,
    stop_prober,
)
from pikube.lab.network.topology import HOST_INTERFACE
from pikube.lab.services import seed_service
from pikube.lab.services.demo import get_from_client
from pikube.lab.services.lb_kube import (
    CONTROLLER_METRICS_PORT,
    KubeLoadBalancer,
    nginx_manifests,
    seed_configuration,
)

pytestmark = pytest.mark.lab

VIP = "198.51.100.230"


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class LabApi:
    """The Kubernetes API the lab's load balancer talks to: a kubeconfig, whether it is the
    stand-in, and the control plane running on master."""

    kubeconfig: Path
    stand_in: bool
    plane: control_plane.LabControlPlane


@pytest.fixture
def lab_api(lab: Lab) -> LabApi:
    """The lab's API: a real etcd + kube-apiserver on master (no kubelets: the lab registers
    the Nodes and publishes the EndpointSlices of the nginx it runs)."""
    plane = control_plane.start_in_lab(lab)
    return LabApi(plane.kubeconfig, stand_in=False, plane=plane)


@pytest.fixture
def balancer(lab: Lab, lab_api: LabApi) -> KubeLoadBalancer:
    found = KubeLoadBalancer(
        lab, lab_api.kubeconfig, state.lab_dir(lab.name) / "lb", stand_in=lab_api.stand_in
    )
    found.apply_crds()
    found.apply(seed_configuration())
    found.start_controller()
    found.start_speakers()
    return found


def sole_announcer(balancer: KubeLoadBalancer, ip: str = VIP) -> str | None:
    owners = balancer.announcers(ip)
    return owners[0] if len(owners) == 1 else None


def test_kubectl_apply_gives_the_service_its_ip_and_the_client_http_200(
    lab: Lab, balancer: KubeLoadBalancer
) -> None:
    seed_service.publish(lab, backend_host="node02")
    balancer.apply(nginx_manifests())
    balancer.publish_endpoints("nginx", "default", "node02")
    wait_for(lambda: balancer.external_ips() == [VIP], 20, "EXTERNAL-IP 198.51.100.230")
    shown = balancer.kubectl("get", "svc", "nginx").stdout
    assert VIP in shown.splitlines()[1].split()
    service = balancer.get_json("service", "nginx")
    assert service["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"] == "first-pool"
    wait_for(lambda: sole_announcer(balancer), 20, "one speaker to announce the IP")
    owner = sole_announcer(balancer)
    status, body, _ = get_from_client(lab, f"http://{VIP}/")
    assert status == 200
    assert b"Welcome to nginx!" in body
    entry = read_neighbour(lab.namespace(seed_service.CLIENT), VIP)
    arp_owner = host_of_mac(lab.topology.hosts, entry.mac if entry else None)
    assert arp_owner is not None
    assert arp_owner.name == owner
    wait_for(lambda: balancer.l2_owners() == [owner], 10, "a ServiceL2Status naming the owner")
    events = balancer.get_json("events", "-n", "default")["items"]
    reasons = {(e["reason"], e["source"]["component"]) for e in events}
    assert ("IPAllocated", "metallb-controller") in reasons
    assert ("nodeAssigned", "metallb-speaker") in reasons

    # The owner crashes (speaker killed, cable pulled): another node takes the IP over and the
    # ServiceL2Status says so.
    assert owner is not None
    if owner == "node02":  # keep the single replica alive: move it off the owner first
        seed_service.publish(lab, backend_host="node03")
        balancer.publish_endpoints("nginx", "default", "node03")
    lab.supervisor.signal(balancer.speakers[owner], signal.SIGKILL)
    netns.set_link_state(lab.namespace(owner), HOST_INTERFACE, up=False)
    wait_for(
        lambda: (new := sole_announcer(balancer)) is not None and new != owner,
        10,
        "the IP to move",
    )
    new_owner = sole_announcer(balancer)
    wait_for(
        lambda: balancer.l2_owners() == [new_owner], 10, "the ServiceL2Status of the new owner"
    )
    assert balancer.external_ips() == [VIP]  # the IP itself never moved to another address


def test_a_deleted_service_is_withdrawn(balancer: KubeLoadBalancer) -> None:
    balancer.apply(nginx_manifests())
    balancer.publish_endpoints("nginx", "default", "node02")
    wait_for(lambda: sole_announcer(balancer), 20, "the IP announced")
    balancer.kubectl("delete", "service", "nginx")
    wait_for(lambda: not balancer.announcers(VIP), 10, "the IP withdrawn")
    wait_for(lambda: not balancer.l2_owners(), 10, "the ServiceL2Status deleted")
    # A speaker stopped by SIGTERM leaves cleanly (its API client closed, nothing left open).
    record = balancer.speakers["node01"]
    balancer.lab.stop(record)
    log = Path(record.log_path).read_text()
    assert "speaker node01 stopped" in log
    assert "Unclosed" not in log


def test_a_killed_controller_restarts_without_moving_or_doubling_ips(
    lab: Lab, balancer: KubeLoadBalancer
) -> None:
    names = [f"web{i}" for i in range(8)]
    text = "---\n".join(
        nginx_manifests(name).split("---\n", 1)[1] for name in names
    )  # the Services only
    balancer.apply(text)
    # Killed while it works through them (some have IPs, some not yet), then started again.
    assert balancer.controller is not None
    lab.supervisor.signal(balancer.controller, signal.SIGKILL)
    before = {n: balancer.external_ips(n) for n in names}
    balancer.start_controller()
    wait_for(lambda: all(balancer.external_ips(n) for n in names), 20, "every service an IP")
    after = {n: balancer.external_ips(n) for n in names}
    for name, ips in before.items():
        if ips:
            assert after[name] == ips, f"{name} moved from {ips} to {after[name]}"
    flat = [ip for ips in after.values() for ip in ips]
    assert len(flat) == len(set(flat)) == len(names)


def test_a_malformed_pool_is_named_in_an_event_and_the_rest_keeps_working(
    balancer: KubeLoadBalancer,
) -> None:
    bad = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: broken
  namespace: metallb-system
spec:
  addresses:
  - 198.51.100.0/33
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: overlapping
  namespace: metallb-system
spec:
  addresses:
  - 198.51.100.240-198.51.100.245
"""
    balancer.apply(bad)
    balancer.apply(nginx_manifests())
    wait_for(lambda: balancer.external_ips() == [VIP], 20, "the good pool to keep working")

    def named() -> bool:
        events = balancer.get_json("events", "-n", "metallb-system")["items"]
        messages = {(e["involvedObject"]["name"], e["reason"]): e["message"] for e in events}
        broken = messages.get(("broken", "InvalidConfiguration"), "")
        overlapping = messages.get(("overlapping", "InvalidConfiguration"), "")
        return "spec.addresses[0]" in broken and "overlap" in overlapping

    wait_for(named, 10, "Events naming both bad pools and their fields")


def test_with_the_api_unreachable_nothing_moves_and_the_client_sees_no_gap(
    lab: Lab, balancer: KubeLoadBalancer
) -> None:
    seed_service.publish(lab, backend_host="node02")
    balancer.apply(nginx_manifests())
    balancer.publish_endpoints("nginx", "default", "node02")
    wait_for(lambda: sole_announcer(balancer), 20, "the IP announced")
    owner = sole_announcer(balancer)
    out = state.lab_dir(lab.name) / "api-away-probe.json"
    config = ProberConfig(address=VIP, port=80, max_duration_s=60)
    prober = start_prober(lab, seed_service.CLIENT, "api-away-probe", config, out)
    try:
        time.sleep(0.3)
        # master (the API server and the controller) drops off the LAN.
        netns.set_link_state(lab.namespace("master"), HOST_INTERFACE, up=False)
        stale = "metallb_k8s_client_config_stale_bool 1"
        wait_for(
            lambda: all(stale in balancer.metrics(n, 7472) for n in balancer.nodes),
            20,
            "every speaker to say its state is stale",
        )
        assert balancer.announcers(VIP) == [owner]
        netns.set_link_state(lab.namespace("master"), HOST_INTERFACE, up=True)
        fresh = "metallb_k8s_client_config_stale_bool 0"
        wait_for(
            lambda: all(fresh in balancer.metrics(n, 7472) for n in balancer.nodes),
            30,
            "the speakers to see the API again",
        )
        time.sleep(0.3)
    finally:
        measured = stop_prober(lab, prober, out)
    assert measured.probes
    assert all(p.ok for p in measured.probes), "the client saw failures while the API was away"
    assert balancer.announcers(VIP) == [owner]
    # Changes flow again: deleting the Service withdraws it.
    balancer.kubectl("delete", "service", "nginx")
    wait_for(lambda: not balancer.announcers(VIP), 20, "the IP withdrawn after the API came back")


def longest_failing_run_s(probes: Sequence[ProbeResult]) -> float:
    """The longest time covered by consecutive failing probes (in start order)."""
    longest = 0.0
    first: ProbeResult | None = None
    for probe in sorted(probes, key=lambda p: p.start_s):
        if probe.ok:
            first = None
            continue
        first = first or probe
        longest = max(longest, probe.end_s - first.start_s)
    return longest


def _gauge(text: str, name: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    return None


def test_api_server_restarted_without_history_moves_nothing_and_leaves_no_gap(
    lab: Lab, balancer: KubeLoadBalancer, lab_api: LabApi
) -> None:
    """kube-apiserver on master is killed (every watch cut), etcd compacted, and started
    again: the informers' resume answers 410 and they relist. Meanwhile the client's probes
    all succeed, the owner keeps the IP, every speaker says stale 1 then 0, and the controller
    writes nothing."""
    seed_service.publish(lab, backend_host="node02")
    balancer.apply(nginx_manifests())
    balancer.publish_endpoints("nginx", "default", "node02")
    wait_for(lambda: sole_announcer(balancer), 20, "the IP announced")
    owner = sole_announcer(balancer)
    writes = "metallb_k8s_client_updates_total"
    before = _gauge(balancer.metrics("master", CONTROLLER_METRICS_PORT), writes)
    # A write after everyone's last list moves etcd's revision past every informer's
    # resourceVersion, as a busy cluster's writes do (so every kind's resume gets 410).
    balancer.kubectl("create", "configmap", "before-restart")
    out = state.lab_dir(lab.name) / "restart-probe.json"
    config = ProberConfig(address=VIP, port=80, max_duration_s=90)
    prober = start_prober(lab, seed_service.CLIENT, "restart-probe", config, out)
    stale_seen: dict[str, list[str]] = {n: [] for n in balancer.nodes}

    announcers_seen: list[list[str]] = []

    def sample() -> None:
        announcers_seen.append(balancer.announcers(VIP))
        for node in balancer.nodes:
            value = _gauge(balancer.metrics(node, 7472), "metallb_k8s_client_config_stale_bool")
            seen = stale_seen[node]
            if value is not None and (not seen or seen[-1] != value):
                seen.append(value)

    try:
        time.sleep(0.3)
        restarted: list[control_plane.LabControlPlane] = []
        worker = threading.Thread(
            target=lambda: restarted.append(
                control_plane.restart_apiserver_in_lab(lab, lab_api.plane)
            )
        )
        worker.start()
        while worker.is_alive():
            sample()
            time.sleep(0.05)
        assert restarted, "kube-apiserver did not come back"

        def all_fresh() -> bool:
            sample()
            return all(seen[-1:] == ["0"] for seen in stale_seen.values())

        wait_for(all_fresh, 30, "every speaker to see the API again")
        time.sleep(0.3)
    finally:
        measured = stop_prober(lab, prober, out)
    assert all("1" in seen for seen in stale_seen.values()), stale_seen
    assert measured.probes
    # kube-apiserver's start-up takes both cores for a few seconds: on a loaded machine a few
    # 50 ms probes time out then. A gap in the announcement would be a run of failures (for
    # seconds) or unreachable/refused answers; neither may appear.
    failed = [(round(p.start_s - measured.probes[0].start_s, 3), p.outcome.value)
              for p in measured.probes if not p.ok]  # fmt: skip
    assert {outcome for _, outcome in failed} <= {"timeout"}, failed
    assert longest_failing_run_s(measured.probes) < 0.5, failed
    assert all(seen == [owner] for seen in announcers_seen), announcers_seen
    assert balancer.announcers(VIP) == [owner]
    assert balancer.external_ips() == [VIP]
    relisted = [
        n
        for n, r in balancer.speakers.items()
        if "(410), relisting" in Path(r.log_path).read_text()
    ]
    assert relisted, "no speaker's resume got 410 (the history was not gone)"
    wait_for(
        lambda: _gauge(balancer.metrics("master", CONTROLLER_METRICS_PORT), writes) == before,
        5,
        "the controller's write count unchanged",
    )
    balancer.kubectl("delete", "service", "nginx")
    wait_for(lambda: not balancer.announcers(VIP), 20, "the IP withdrawn after the restart")
