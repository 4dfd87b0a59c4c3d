"""The seed's story, for real, in a lab: nginx published at .230 by pikube's speakers, the
client's `arp -a` moment, then the announcing node dies and the IP moves.

The steps return plain values (`DemoReport`); `pikube lab demo` prints them. Nothing here is
a stand-in: the speakers, nginx, nftables rules, ARP and the probes are the real thing.
"""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from pikube.errors import PikubeError
from pikube.lab import netns, seed_service, state
from pikube.lab.lab import Lab
from pikube.lab.probe import (
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
from pikube.lab.speakers import SpeakerFleet
from pikube.lab.topology import HOST_INTERFACE

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
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise PikubeError(f"demo: timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


def owner_of(fleet: SpeakerFleet) -> str | None:
    owners = fleet.owners(str(VIP))
    return owners[0] if len(owners) == 1 else None


def publish(lab: Lab) -> tuple[SpeakerFleet, Published]:
    """Speakers on node01-03, nginx behind the VIP, and what the client sees."""
    fleet = SpeakerFleet(lab, state.lab_dir(lab.name) / "demo")
    fleet.prepare(seed_service.manifests(lab.topology))
    fleet.start_all()
    _wait(lambda: owner_of(fleet) and fleet.settled(), 15, "the speakers to elect an owner")
    owner = owner_of(fleet) or "?"
    # The seed's replica ran on node02 while node01 announced the IP. Keep the replica off the
    # announcing node here too, or the crash below would take the service with it.
    backend = next(n for n in ("node02", "node03", "node01") if n != owner)
    if backend != seed_service.SEED_BACKEND:
        fleet.write(seed_service.manifests(lab.topology, backend_host=backend))
    seed_service.publish(lab, backend_host=backend)
    status, body, http_ms = get_from_client(lab, f"http://{VIP}/")
    return fleet, Published(
        owner=owner,
        backend=backend,
        http_status=status,
        http_ms=http_ms,
        welcome_page=b"Welcome to nginx!" in body,
        neighbour=read_neighbour(lab.namespace(seed_service.CLIENT), str(VIP)),
    )


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


def crash_owner(lab: Lab, fleet: SpeakerFleet, owner: str) -> Failover:
    """Kill the owner's speaker and pull its cable; measure what the client sees."""
    out = state.lab_dir(lab.name) / "demo" / "probe.json"
    config = ProberConfig(address=str(VIP), port=seed_service.SEED_PORT, max_duration_s=30)
    prober = start_prober(lab, seed_service.CLIENT, "demo-probe", config, out)
    try:
        time.sleep(0.3)  # a baseline of successes before the failure
        failure_s = time.monotonic()
        lab.supervisor.signal(fleet.records[owner], signal.SIGKILL)
        netns.set_link_state(lab.namespace(owner), HOST_INTERFACE, up=False)

        def moved() -> bool:
            new = owner_of(fleet)
            return new is not None and new != owner and is_up(transitions_of(prober))

        _wait(moved, 15, f"the IP to move off {owner}")
        time.sleep(0.3)
    except BaseException:
        lab.stop(prober)
        raise
    measured = stop_prober(lab, prober, out)
    outage = outage_around(measured.probes, failure_s)
    new_owner = owner_of(fleet) or "?"
    return Failover(
        old_owner=owner,
        new_owner=new_owner,
        outage_ms=outage.duration_ms if outage else float("nan"),
        failed_probes=len(failed_probes(measured.probes, failure_s)),
        neighbour=read_neighbour(lab.namespace(seed_service.CLIENT), str(VIP)),
    )
