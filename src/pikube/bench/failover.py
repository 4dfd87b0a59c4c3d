"""`pikube bench failover`: how long a client loses a LoadBalancer IP when its announcer fails.

Owns: the Implementation protocol (what the bench needs from an L2 announcer), its adapters
(pikube's speaker reading a manifest directory, pikube's speaker and controller on the lab's
Kubernetes API (`pikube-kube`), and keepalived from Debian at a 100 ms and a 1 s advert), the run
loop (one lab, every implementation x scenario x run), and the pure summary (JSON and table).

One run, for an implementation already started on node01-03:
1. wait until the system is settled (bounded): every daemon up, the client reaches the VIP
   through the owner its ARP table names;
2. start the prober in `client` (a fresh TCP connect + GET / to VIP:80 every 10 ms, 50 ms
   timeout) and let it record a short baseline;
3. at the failure instant, fail the owner: `crash` (SIGKILL its daemon's process group and set
   its eth0 down), `graceful` (SIGTERM its daemon) or `link-down` (eth0 down, daemon alive);
4. wait (bounded) until the client's ARP table names another node and the prober reports the
   service up, keep probing for a short tail, stop the prober;
5. outage = the longest gap between successful responses from the last one before the failure
   on (pikube.lab.network.probe.outage_around); failed probes = those that failed since then;
6. restore the node (leftovers cleared, link up, daemon restarted).

The backend is nginx on master, which never announces: it is reached by DNAT + masquerade from
whichever node owns the VIP, so it never fails with the owner and the outage measured is the
load balancer's alone.

It must not assert anything about time: it reports figures.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import signal
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pikube import helpers
from pikube.errors import InvalidInput, PikubeError
from pikube.lab import state
from pikube.lab.hosts.processes import ProcessRecord, is_running
from pikube.lab.kubeapi.launch import start_in_lab
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.network.probe import (
    ProberConfig,
    failed_probes,
    is_up,
    outage_around,
    owner_seen_by,
    start_prober,
    stop_prober,
    transitions_of,
)
from pikube.lab.network.topology import HOST_INTERFACE
from pikube.lab.services import keepalived
from pikube.lab.services.lb_kube import KubeLoadBalancer, nginx_manifests, seed_configuration
from pikube.lab.services.seed_service import (
    CLIENT,
    SEED_PORT,
    SEED_VIP,
    http_from,
    manifests,
    publish,
    unpublish,
)
from pikube.lab.services.speakers import SpeakerFleet

IMPLEMENTATIONS = ("pikube", "pikube-kube", "keepalived-100ms", "keepalived-1s")
ANNOUNCERS = ("node01", "node02", "node03")
BACKEND_HOST = "master"  # never an announcer: the backend must survive every failure
SPEAKER_METRICS_PORT = helpers.METRICS_PORT
_POLL_S = 0.02


class Scenario(enum.Enum):
    CRASH = "crash"  # SIGKILL the owner's daemon and set its eth0 down
    GRACEFUL = "graceful"  # SIGTERM the owner's daemon
    LINK_DOWN = "link-down"  # set the owner's eth0 down, daemon alive

    @property
    def kills_daemon(self) -> bool:
        return self is not Scenario.LINK_DOWN

    @property
    def downs_link(self) -> bool:
        return self is not Scenario.GRACEFUL


@dataclass(frozen=True)
class BenchSettings:
    runs: int = 5
    interval_ms: int = 10
    timeout_ms: int = 50
    baseline_s: float = 0.2  # probing before the failure (a measurement window, not a wait)
    tail_s: float = 0.5  # probing after recovery, so a relapse would be measured too
    recovery_timeout_s: float = 30.0
    settle_timeout_s: float = 30.0


class Implementation(Protocol):
    """An L2 announcer of one VIP over node01-03, as the bench drives it."""

    name: str

    def start(self, lab: Lab, nodes: Sequence[str], vip: ipaddress.IPv4Address) -> None:
        """Start the daemon on every node (returns once each is running)."""

    def owner(self) -> str | None:
        """The node the client currently sends the VIP's traffic to (its ARP table), if any."""

    def daemon(self, node: str) -> ProcessRecord:
        """The node's daemon process (the one a crash or a graceful stop is sent to)."""

    def clear(self, node: str) -> None:
        """Remove what a dead daemon left behind on its node (its link still down)."""

    def restart(self, node: str) -> None:
        """Start the node's daemon again after it died."""

    def settled(self) -> bool:
        """True when the system is stable: every daemon up and the VIP served by its owner."""

    def stop(self) -> None:
        """Stop every daemon and remove what they left."""


def _client_reaches(lab: Lab, vip: ipaddress.IPv4Address) -> bool:
    return http_from(lab, CLIENT, str(vip), SEED_PORT, 0.5).ok


def _owner_among(lab: Lab, vip: ipaddress.IPv4Address, nodes: Sequence[str]) -> str | None:
    host = owner_seen_by(lab, str(vip), CLIENT)
    return host.name if host is not None and host.name in nodes else None


@dataclass
class KeepalivedBaseline:
    """keepalived (VRRPv3) from Debian, unmodified: the highest priority live node is master."""

    name: str
    advert_int_s: float
    priorities: Mapping[str, int] = field(
        default_factory=lambda: dict(keepalived.DEFAULT_PRIORITIES)
    )
    _lab: Lab | None = None
    _vip: ipaddress.IPv4Address = SEED_VIP
    _nodes: tuple[str, ...] = ()
    _records: dict[str, ProcessRecord] = field(default_factory=dict)

    def _instance(self, node: str) -> keepalived.VrrpInstance:
        return keepalived.VrrpInstance(
            node=node, priority=self.priorities[node], advert_int_s=self.advert_int_s, vip=self._vip
        )

    @property
    def lab(self) -> Lab:
        if self._lab is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._lab

    def start(self, lab: Lab, nodes: Sequence[str], vip: ipaddress.IPv4Address) -> None:
        self._lab, self._vip, self._nodes = lab, vip, tuple(nodes)
        for node in self._nodes:
            self._records[node] = keepalived.start(lab, self._instance(node))

    def owner(self) -> str | None:
        return _owner_among(self.lab, self._vip, self._nodes)

    def daemon(self, node: str) -> ProcessRecord:
        return self._records[node]

    def clear(self, node: str) -> None:
        keepalived.clear_after_crash(self.lab, node, self._vip)

    def restart(self, node: str) -> None:
        self._records[node] = keepalived.start(self.lab, self._instance(node))

    def preferred(self) -> str | None:
        """The node VRRP should elect: the highest priority one whose daemon and link are up."""
        live = [
            n
            for n in self._nodes
            if is_running(self._records[n].pid, self._records[n].start_ticks)
            and netns.link_is_up(self.lab.namespace(n), HOST_INTERFACE)
        ]
        return max(live, key=lambda n: self.priorities[n], default=None)

    def settled(self) -> bool:
        if not all(is_running(r.pid, r.start_ticks) for r in self._records.values()):
            return False
        expected = self.preferred()
        return (
            expected is not None
            and keepalived.holders(self.lab, self._nodes, self._vip) == [expected]
            and _client_reaches(self.lab, self._vip)
            and self.owner() == expected
        )

    def stop(self) -> None:
        if self._lab is None:
            return
        for node, record in self._records.items():
            self._lab.stop(record)
            keepalived.remove_vip(self._lab, node, self._vip)
        self._records.clear()


@dataclass
class PikubeSpeakers:
    """pikube's L2 speaker on each node, reading the seed's objects from a manifest directory.

    Settled means: every speaker running, exactly one saying on its /status page that it
    announces the VIP, and the client's ARP table naming that node.
    """

    backend_host: str = BACKEND_HOST
    name: str = "pikube"
    _fleet: SpeakerFleet | None = None
    _vip: ipaddress.IPv4Address = SEED_VIP

    @property
    def fleet(self) -> SpeakerFleet:
        if self._fleet is None:
            raise RuntimeError("the pikube speakers are not started")
        return self._fleet

    def start(self, lab: Lab, nodes: Sequence[str], vip: ipaddress.IPv4Address) -> None:
        self._vip = vip
        self._fleet = SpeakerFleet(lab, state.lab_dir(lab.name) / "bench" / "pikube", tuple(nodes))
        self._fleet.prepare(manifests(lab.topology, backend_host=self.backend_host, vip=vip))
        self._fleet.start_all()

    def owner(self) -> str | None:
        return _owner_among(self.fleet.lab, self._vip, self.fleet.nodes)

    def daemon(self, node: str) -> ProcessRecord:
        record: ProcessRecord = self.fleet.records[node]
        return record

    def clear(self, node: str) -> None:
        """Nothing to clear: the speaker never puts the VIP on an interface."""

    def restart(self, node: str) -> None:
        self.fleet.start(node)

    def settled(self) -> bool:
        fleet = self.fleet
        if not all(is_running(r.pid, r.start_ticks) for r in fleet.records.values()):
            return False
        announcers = fleet.owners(str(self._vip))
        return (
            len(announcers) == 1
            and fleet.settled()
            and _client_reaches(fleet.lab, self._vip)
            and self.owner() == announcers[0]
        )

    def stop(self) -> None:
        if self._fleet is None:
            return
        for record in self._fleet.records.values():
            self._fleet.lab.stop(record)
        self._fleet.records.clear()


@dataclass
class PikubeKubeSpeakers:
    """pikube's controller on master and `--source kube` speakers, on the lab's API stand-in:
    kubectl applies the seed's pool, L2Advertisement and a LoadBalancer Service (which gets
    the VIP); the lab publishes its EndpointSlice (nginx on the backend host).

    Settled means what it means for `PikubeSpeakers`.
    """

    backend_host: str = BACKEND_HOST
    name: str = "pikube-kube"
    _balancer: KubeLoadBalancer | None = None
    _vip: ipaddress.IPv4Address = SEED_VIP

    @property
    def balancer(self) -> KubeLoadBalancer:
        if self._balancer is None:
            raise RuntimeError("the pikube speakers are not started")
        return self._balancer

    def start(self, lab: Lab, nodes: Sequence[str], vip: ipaddress.IPv4Address) -> None:
        self._vip = vip
        api = start_in_lab(lab)
        directory = state.lab_dir(lab.name) / "bench" / "pikube-kube"
        balancer = self._balancer = KubeLoadBalancer(lab, api.kubeconfig, directory, tuple(nodes))
        balancer.apply_crds()
        balancer.apply(seed_configuration())
        balancer.start_controller()
        balancer.start_speakers()
        service = nginx_manifests().split("---\n", 1)[1]  # the Service only
        balancer.apply(
            service.replace("type: LoadBalancer", f"type: LoadBalancer\n  loadBalancerIP: {vip}")
        )
        balancer.publish_endpoints("nginx", "default", self.backend_host)

    def owner(self) -> str | None:
        return _owner_among(self.balancer.lab, self._vip, self.balancer.nodes)

    def daemon(self, node: str) -> ProcessRecord:
        return self.balancer.speakers[node]

    def clear(self, node: str) -> None:
        """Nothing to clear: the speaker never puts the VIP on an interface."""

    def restart(self, node: str) -> None:
        self.balancer.start_speakers([node])

    def settled(self) -> bool:
        balancer = self.balancer
        if not all(is_running(r.pid, r.start_ticks) for r in balancer.speakers.values()):
            return False
        announcers = balancer.announcers(str(self._vip))
        return (
            len(announcers) == 1
            and balancer.settled()
            and _client_reaches(balancer.lab, self._vip)
            and self.owner() == announcers[0]
        )

    def stop(self) -> None:
        if self._balancer is None:
            return
        for record in [*self._balancer.speakers.values(), self._balancer.controller]:
            if record is not None:
                self._balancer.lab.stop(record)
        self._balancer.speakers.clear()


def implementation(name: str) -> Implementation:
    if name == "pikube":
        return PikubeSpeakers()
    if name == "pikube-kube":
        return PikubeKubeSpeakers()
    if name == "keepalived-100ms":
        return KeepalivedBaseline(name=name, advert_int_s=0.1)
    if name == "keepalived-1s":
        return KeepalivedBaseline(name=name, advert_int_s=1.0)
    raise InvalidInput(
        f"unknown implementation {name!r} (choose from {', '.join(IMPLEMENTATIONS)})"
    )


def parse_impls(text: str) -> tuple[str, ...]:
    """`--impl a,b` -> ("a", "b"), in the order given, each known, no repeats."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise InvalidInput(f"--impl needs at least one of {', '.join(IMPLEMENTATIONS)}")
    for name in names:
        if name not in IMPLEMENTATIONS:
            known = ", ".join(IMPLEMENTATIONS)
            raise InvalidInput(f"--impl: unknown implementation {name!r} (choose from {known})")
    return tuple(dict.fromkeys(names))


# -- one run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    impl: str
    scenario: Scenario
    run: int
    outage_ms: float
    failed_probes: int
    old_owner: str
    new_owner: str


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; PikubeError naming `what` after `timeout_s`."""
    helpers.wait_until(condition, timeout_s, what, poll_s=_POLL_S)


def fail(lab: Lab, impl: Implementation, node: str, scenario: Scenario) -> None:
    """Inflict the scenario's failure on the node (the caller took the failure instant)."""
    record = impl.daemon(node)
    if scenario is Scenario.CRASH:
        # The whole process group: a daemon's helpers (keepalived's VRRP child) die with it.
        lab.supervisor.signal(record, signal.SIGKILL, group=True)
    elif scenario is Scenario.GRACEFUL:
        lab.supervisor.signal(record, signal.SIGTERM)
    if scenario.downs_link:
        netns.set_link_state(lab.namespace(node), HOST_INTERFACE, up=False)


def restore(lab: Lab, impl: Implementation, node: str, scenario: Scenario) -> None:
    """Bring the failed node back: daemon gone for good, leftovers cleared, link up, restart."""
    if scenario.kills_daemon:
        try:
            lab.supervisor.wait(impl.daemon(node), timeout_s=10.0)
        except TimeoutError:
            lab.stop(impl.daemon(node), timeout_s=1.0)
        impl.clear(node)
    if scenario.downs_link:
        netns.set_link_state(lab.namespace(node), HOST_INTERFACE, up=True)
    if scenario.kills_daemon:
        impl.restart(node)


def run_once(
    lab: Lab,
    impl: Implementation,
    scenario: Scenario,
    run: int,
    settings: BenchSettings,
    *,
    vip: ipaddress.IPv4Address = SEED_VIP,
    inflict: Callable[[Lab, Implementation, str, Scenario], None] = fail,
    recover: Callable[[Lab, Implementation, str, Scenario], None] = restore,
    owner_may_return_s: float | None = None,
) -> RunResult:
    """One run (see the module docstring). `inflict` and `recover` fail and restore the owner
    (default: the lab-process daemons' way). With `owner_may_return_s`, a run whose daemon
    comes back by itself (a Pod its DaemonSet replaces) also ends when the client has been
    served that long after the failure, whoever owns the IP by then."""
    label = f"{impl.name} {scenario.value} run {run}"
    wait_until(impl.settled, settings.settle_timeout_s, f"{label}: the system settling")
    old = impl.owner()
    if old is None:
        raise PikubeError(f"{label}: the client's ARP table names no owner of {vip}")
    out = state.lab_dir(lab.name) / "bench" / "probes" / f"{impl.name}-{scenario.value}-{run}.json"
    config = ProberConfig(
        address=str(vip),
        port=SEED_PORT,
        interval_ms=settings.interval_ms,
        timeout_ms=settings.timeout_ms,
        max_duration_s=settings.recovery_timeout_s + settings.settle_timeout_s + 10,
    )
    name = f"probe-{impl.name}-{scenario.value}-{run}"
    prober = start_prober(lab, CLIENT, name, config, out, ready_timeout_s=settings.settle_timeout_s)
    try:
        time.sleep(settings.baseline_s)  # a baseline of successes before the failure
        failure_s = time.monotonic()
        inflict(lab, impl, old, scenario)

        def recovered() -> bool:
            new = impl.owner()
            if new is None or not is_up(transitions_of(prober)):
                return False
            returned = owner_may_return_s is not None and (
                time.monotonic() - failure_s > owner_may_return_s
            )
            return new != old or returned

        wait_until(recovered, settings.recovery_timeout_s, f"{label}: the VIP moving off {old}")
        time.sleep(settings.tail_s)  # keep measuring after recovery: a relapse counts too
        wait_until(
            lambda: is_up(transitions_of(prober)),
            settings.recovery_timeout_s,
            f"{label}: the client reaching the VIP again",
        )
        new = impl.owner() or "?"
    except BaseException:
        lab.stop(prober)
        raise
    measured = stop_prober(lab, prober, out)
    outage = outage_around(measured.probes, failure_s)
    if outage is None:
        raise PikubeError(f"{label}: the prober saw no success before or after the failure ({out})")
    result = RunResult(
        impl=impl.name,
        scenario=scenario,
        run=run,
        outage_ms=outage.duration_ms,
        failed_probes=len(failed_probes(measured.probes, failure_s)),
        old_owner=old,
        new_owner=new,
    )
    recover(lab, impl, old, scenario)
    return result


# -- the whole bench ---------------------------------------------------------------------------


def run_bench(
    lab: Lab,
    impl_names: Sequence[str],
    settings: BenchSettings,
    *,
    scenarios: Sequence[Scenario] = tuple(Scenario),
    progress: Callable[[RunResult], None] = lambda _r: None,
    results: list[RunResult] | None = None,
) -> list[RunResult]:
    """Every implementation x scenario x run in one (already up) lab; appends to `results`."""
    collected = results if results is not None else []
    impls = [implementation(name) for name in impl_names]
    service = publish(lab, backend_host=BACKEND_HOST, vip=SEED_VIP)
    try:
        for impl in impls:
            impl.start(lab, ANNOUNCERS, SEED_VIP)
            try:
                for scenario in scenarios:
                    for run in range(1, settings.runs + 1):
                        result = run_once(lab, impl, scenario, run, settings)
                        collected.append(result)
                        progress(result)
            finally:
                impl.stop()
    finally:
        unpublish(lab, service)
    return collected


def summarise(results: Sequence[RunResult], runs: int) -> dict[str, Any]:
    """The bench's JSON: one entry per implementation and scenario, in the order measured."""
    groups: dict[tuple[str, Scenario], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.impl, r.scenario), []).append(r)
    entries = []
    for (impl, scenario), rs in groups.items():
        outages = [round(r.outage_ms, 1) for r in rs]
        entries.append(
            {
                "impl": impl,
                "scenario": scenario.value,
                "outages_ms": outages,
                "p50_ms": round(statistics.median(outages), 1),
                "max_ms": max(outages),
                "failed_probes": [r.failed_probes for r in rs],
            }
        )
    return {"runs": runs, "results": entries}


def table_rows(summary: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Rows of the human table: impl, scenario, p50, max, every outage, failed probes."""
    rows: list[tuple[str, ...]] = []
    for entry in summary["results"]:
        rows.append(
            (
                entry["impl"],
                entry["scenario"],
                f"{entry['p50_ms']:.0f}",
                f"{entry['max_ms']:.0f}",
                " ".join(f"{o:.0f}" for o in entry["outages_ms"]),
                " ".join(str(n) for n in entry["failed_probes"]),
            )
        )
    return rows


def write_json(path: Path, summary: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(path)
