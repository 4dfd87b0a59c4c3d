"""The seed's story, for real, in a lab: the user applies MetalLB's objects and the nginx
Service with kubectl, pikube's controller gives it .230, pikube's speakers publish it, the
client's `arp -a` moment, then the announcing node dies and the IP moves.

The steps return plain values; `pikube lab demo` prints them. The speakers, controller,
kubectl, nginx, nftables rules, ARP and probes are the real thing; the Kubernetes API is the
lab's stand-in, so the lab publishes nginx's EndpointSlice itself (it runs nginx).
"""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from pikube.errors import PikubeError
from pikube.helpers import wait_until
from pikube.lab import state
from pikube.lab.hosts.processes import ProcessRecord
from pikube.lab.kubeapi.launch import start_in_lab
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.network.probe import (
    NeighbourEntry,
    ProberConfig,
    failed_probes,
    is_up,
    outage_around,
    read_neighbour,
    start_prober,
    stop_prober,
    transitions_of,
)
from pikube.lab.network.topology import HOST_INTERFACE
from pikube.lab.services import seed_service
from pikube.lab.services.lb_kube import KubeLoadBalancer, nginx_manifests, seed_configuration

VIP = seed_service.SEED_VIP


@dataclass(frozen=True)
class Published:
    owner: str  # the node announcing the VIP
    backend: str  # where nginx (the seed's single replica) runs
    http_status: int
    http_ms: float
    welcome_page: bool
    neighbour: NeighbourEntry | None  # the client's ARP entry for the VIP


@dataclass(frozen=True)
class Failover:
    old_owner: str
    new_owner: str
    outage_ms: float
    failed_probes: int
    neighbour: NeighbourEntry | None


def _wait(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    wait_until(condition, timeout_s, what, error=lambda text: PikubeError(f"demo: {text}"))


def owner_of(balancer: KubeLoadBalancer) -> str | None:
    owners = balancer.announcers(str(VIP))
    return owners[0] if len(owners) == 1 else None


@dataclass(frozen=True)
class Applied:
    """What kubectl shows once the controller did its part."""

    service_line: str  # `kubectl get svc nginx`, the row
    l2_statuses: str  # `kubectl get servicel2statuses -A`, the rows


def publish(lab: Lab) -> tuple[KubeLoadBalancer, Applied, Published]:
    """The API, pikube's controller and speakers; kubectl applies the seed's objects from the
    client; nginx behind the VIP; what the client sees."""
    api = start_in_lab(lab)
    balancer = KubeLoadBalancer(lab, api.kubeconfig, state.lab_dir(lab.name) / "demo")
    balancer.apply_crds()  # installing MetalLB's kinds (pikube's CRDs)
    balancer.apply(seed_configuration())
    balancer.start_controller()
    balancer.start_speakers()
    balancer.apply(nginx_manifests())
    balancer.publish_endpoints("nginx", "default", seed_service.SEED_BACKEND)
    _wait(lambda: balancer.external_ips() == [str(VIP)], 20, "EXTERNAL-IP 198.51.100.230")
    _wait(lambda: owner_of(balancer), 20, "the speakers to elect an owner")
    owner = owner_of(balancer) or "?"
    # The seed's replica ran on node02 while node01 announced the IP. Keep the replica off the
    # announcing node here too, or the crash below would take the service with it.
    backend = next(n for n in ("node02", "node03", "node01") if n != owner)
    if backend != seed_service.SEED_BACKEND:
        balancer.publish_endpoints("nginx", "default", backend)
    seed_service.publish(lab, backend_host=backend)
    _wait(lambda: balancer.l2_owners() == [owner], 10, "the ServiceL2Status of the owner")
    applied = Applied(
        service_line=_rows(balancer.kubectl("get", "svc", "nginx").stdout),
        l2_statuses=_rows(balancer.kubectl("get", "servicel2statuses", "-A").stdout),
    )
    status, body, http_ms = get_from_client(lab, f"http://{VIP}/")
    return (
        balancer,
        applied,
        Published(
            owner=owner,
            backend=backend,
            http_status=status,
            http_ms=http_ms,
            welcome_page=b"Welcome to nginx!" in body,
            neighbour=read_neighbour(lab.namespace(seed_service.CLIENT), str(VIP)),
        ),
    )


def _rows(table: str) -> str:
    return "\n".join(line.rstrip() for line in table.splitlines() if line.strip())


def l2_statuses(balancer: KubeLoadBalancer, owner: str) -> str:
    """`kubectl get servicel2statuses -A` once it names `owner`."""
    _wait(lambda: balancer.l2_owners() == [owner], 10, "the ServiceL2Status of the new owner")
    return _rows(balancer.kubectl("get", "servicel2statuses", "-A").stdout)


def get_from_client(lab: Lab, url: str, timeout_s: float = 2.0) -> tuple[int, bytes, float]:
    """(status, body, milliseconds) of a GET from the client (as `curl` on the seed's PC)."""
    started = time.monotonic()
    with netns.entered(lab.namespace(seed_service.CLIENT)):
        try:
            response = urllib.request.urlopen(url, timeout=timeout_s)
        except OSError as exc:
            raise PikubeError(f"demo: GET {url} from the client failed: {exc}") from exc
    with response:
        body = response.read()
    return response.status, body, (time.monotonic() - started) * 1000


def crash_owner(lab: Lab, balancer: KubeLoadBalancer, owner: str) -> Failover:
    """Kill the owner's speaker and pull its cable; measure what the client sees."""
    record: ProcessRecord = balancer.speakers[owner]
    out = state.lab_dir(lab.name) / "demo" / "probe.json"
    config = ProberConfig(address=str(VIP), port=seed_service.SEED_PORT, max_duration_s=30)
    prober = start_prober(lab, seed_service.CLIENT, "demo-probe", config, out)
    try:
        time.sleep(0.3)  # a baseline of successes before the failure
        failure_s = time.monotonic()
        lab.supervisor.signal(record, signal.SIGKILL)
        netns.set_link_state(lab.namespace(owner), HOST_INTERFACE, up=False)

        def moved() -> bool:
            new = owner_of(balancer)
            return new is not None and new != owner and is_up(transitions_of(prober))

        _wait(moved, 15, f"the IP to move off {owner}")
        time.sleep(0.3)
    except BaseException:
        lab.stop(prober)
        raise
    measured = stop_prober(lab, prober, out)
    outage = outage_around(measured.probes, failure_s)
    new_owner = owner_of(balancer) or "?"
    return Failover(
        old_owner=owner,
        new_owner=new_owner,
        outage_ms=outage.duration_ms if outage else float("nan"),
        failed_probes=len(failed_probes(measured.probes, failure_s)),
        neighbour=read_neighbour(lab.namespace(seed_service.CLIENT), str(VIP)),
    )
