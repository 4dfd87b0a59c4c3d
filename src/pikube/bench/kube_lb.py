"""`pikube bench kube-lb`: pikube and MetalLB v0.14.9 on the lab's real Kubernetes, one after
the other in the same lab and the same run.

Each is installed as its users install it: MetalLB by its own release manifest
(metallb-native.yaml, unmodified, from its Go module; images built from that module), pikube by
its rendered manifest (deploy/, package data data/deploy/pikube.yaml; its image from this
checkout). The seed's IPAddressPool and L2Advertisement, then nginx on master (the backend never
fails with an announcer: the control plane never announces, kubeadm labels it
`node.kubernetes.io/exclude-from-external-load-balancers`) behind the seed's LoadBalancer
Service `nginx`, 198.51.100.230.

Order: MetalLB freshly installed; its figures; switch to pikube (delete MetalLB's Deployment
and DaemonSet, apply pikube) while the client probes the IP; pikube's figures; switch back.

Figures per implementation:
- failover (failover.run_once, the same prober and outage): `crash` (the owner's speaker
  process SIGKILLed and the node's eth0 down: the node goes silent as a crashed node does),
  `graceful` (the owner's speaker Pod deleted, as a drain or rollout does) and `link-down`
  (eth0 down, speaker alive); afterwards the link comes back and the speaker Pod is replaced
  (a fresh Pod: no restart back-off carried into the next run);
- create-to-IP and create-to-HTTP-200 (lb_api.measure_once, from the client through the API);
- each switch's client outage (longest gap between successful probes).

Nothing here asserts a time: it reports figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pikube.bench import failover as fo
from pikube.bench import lb_api
from pikube.errors import InvalidInput, PikubeError
from pikube.helpers import wait_until
from pikube.lab import state
from pikube.lab.hosts import sshhosts
from pikube.lab.kubernetes import metallb, seedcluster
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.network.probe import (
    ProberConfig,
    failed_probes,
    outage_around,
    owner_seen_by,
    start_prober,
    stop_prober,
)
from pikube.lab.network.topology import HOST_INTERFACE
from pikube.lab.services import seed_service
from pikube.lb.kube.api import connect

IMPLEMENTATIONS = ("metallb", "pikube")
NAMESPACE = "metallb-system"
VIP = str(seed_service.SEED_VIP)
ANNOUNCERS = ("node01", "node02", "node03")
SETTLE_QUIET_S = 3.0  # one owner and every speaker ready for this long: settled
_KUBECTL_TIMEOUT_S = 300.0  # `rollout status --timeout=240s` on a loaded machine


@dataclass(frozen=True)
class Install:
    """What the bench needs to know of one load balancer's installation."""

    name: str
    controller: str  # Deployment in metallb-system
    speaker: str  # DaemonSet in metallb-system
    speaker_labels: str  # label selector of its speaker Pods
    speaker_argv: Callable[[Sequence[str]], bool]  # is this process the speaker?
    manifest: Callable[[], str]


def pikube_manifest() -> str:
    return (resources.files("pikube.data") / "deploy" / "pikube.yaml").read_text()


INSTALLS = {
    "metallb": Install(
        "metallb",
        metallb.CONTROLLER_DEPLOYMENT,
        metallb.SPEAKER_DAEMONSET,
        "app=metallb,component=speaker",
        lambda argv: bool(argv) and argv[0] == "/speaker",
        metallb.manifest,
    ),
    "pikube": Install(
        "pikube",
        "pikube-controller",
        "pikube-speaker",
        "app.kubernetes.io/name=pikube,app.kubernetes.io/component=speaker",
        lambda argv: tuple(argv[1:5]) == ("-m", "pikube", "lb", "speaker"),
        pikube_manifest,
    ),
}


def parse_impls(text: str) -> tuple[str, ...]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    known = ", ".join(IMPLEMENTATIONS)
    if not names:
        raise InvalidInput(f"--impl needs at least one of {known}")
    for name in names:
        if name not in IMPLEMENTATIONS:
            raise InvalidInput(f"--impl: unknown implementation {name!r} (choose from {known})")
    return tuple(dict.fromkeys(names))


def nginx_on_master() -> str:
    """nginx pinned on master (tolerating the control-plane taint) and the seed's Service."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": "master"},
                    "tolerations": [
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
                    ],
                    "containers": [{"name": "nginx", "image": "nginx"}],
                },
            },
        },
    }
    return yaml.safe_dump_all([deployment, service()])


def service() -> dict[str, Any]:
    """The seed's `kubectl expose deployment nginx --type=LoadBalancer --port=80`."""
    body = lb_api.service_body("nginx")
    body["metadata"]["name"] = "nginx"
    return body


# ---------------------------------------------------------------------------- the adapter


def kubectl(lab: Lab, args: str, stdin: str | None = None, *, check: bool = True) -> str:
    """kubectl on master, as the seed's user runs it."""
    result = seedcluster.ssh(
        lab,
        "master",
        f"{seedcluster.KUBECTL} {args}",
        timeout_s=_KUBECTL_TIMEOUT_S,
        input_text=stdin,
    )
    if check and result.returncode != 0:
        raise PikubeError(f"kubectl {args}: {(result.stderr or result.stdout).strip()[-400:]}")
    return result.stdout


def speaker_pods(lab: Lab, install: Install) -> list[dict[str, Any]]:
    out = kubectl(lab, f"-n {NAMESPACE} get pods -l {install.speaker_labels} -o json")
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def speakers_ready(lab: Lab, install: Install) -> bool:
    """Every announcer's speaker Pod Ready, none on its way out (master's is not counted:
    it never announces, and its liveness probe can fail on a loaded machine)."""
    pods = [p for p in speaker_pods(lab, install) if p["spec"].get("nodeName") in ANNOUNCERS]
    nodes = set()
    for pod in pods:
        if "deletionTimestamp" in pod["metadata"]:
            return False
        conditions = pod.get("status", {}).get("conditions", [])
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return False
        nodes.add(pod["spec"].get("nodeName"))
    return set(ANNOUNCERS) <= nodes


def speaker_pid(lab: Lab, install: Install, node: str) -> int:
    for pid, argv in sshhosts.host_processes(lab.name, node):
        if install.speaker_argv(argv):
            return pid
    raise PikubeError(f"{node}: no {install.name} speaker process running")


def apply_pool(lab: Lab) -> None:
    """The seed's pool and L2Advertisement (retried while the webhook's Service has no ready
    endpoint yet: a fresh controller refuses nothing, it is just not there)."""
    pool_and_l2 = yaml.safe_dump_all(seed_service.manifests(lab.topology)[:2])

    def applied() -> bool:
        result = seedcluster.ssh(
            lab, "master", f"{seedcluster.KUBECTL} apply -f -", input_text=pool_and_l2
        )
        if result.returncode != 0 and "webhook" not in result.stderr:
            raise PikubeError(f"applying the seed's pool: {result.stderr.strip()}")
        return result.returncode == 0

    wait_until(applied, 90, "the seed's pool applied through the webhook", poll_s=1.0)


def install(lab: Lab, name: str) -> None:
    """Apply the implementation's manifest and wait for its controller and speakers."""
    chosen = INSTALLS[name]
    kubectl(lab, "apply -f -", chosen.manifest())
    for workload in (f"daemonset/{chosen.speaker}", f"deployment/{chosen.controller}"):
        kubectl(lab, f"-n {NAMESPACE} rollout status {workload} --timeout=240s")


def remove(lab: Lab, name: str) -> None:
    """The migration's first step: delete the implementation's Deployment and DaemonSet."""
    chosen = INSTALLS[name]
    kubectl(
        lab,
        f"-n {NAMESPACE} delete deployment/{chosen.controller} daemonset/{chosen.speaker} "
        "--wait=false",
    )


def owner(lab: Lab) -> str | None:
    host = owner_seen_by(lab, VIP, seed_service.CLIENT)
    return host.name if host is not None and host.name in ANNOUNCERS else None


@dataclass
class PodSpeakers:
    """An installed implementation's speaker Pods as failover.run_once drives them."""

    lab: Lab
    install: Install
    name: str = ""
    _owner_since: tuple[str | None, float] = (None, 0.0)

    def __post_init__(self) -> None:
        self.name = self.install.name

    def start(self, lab: Lab, nodes: Sequence[str], vip: object) -> None:
        """Installed before the runs."""

    def owner(self) -> str | None:
        return owner(self.lab)

    def daemon(self, node: str) -> Any:
        raise PikubeError(f"{node}: speaker Pods are not lab processes")

    def clear(self, node: str) -> None:
        """Nothing: neither speaker puts the IP on an interface."""

    def restart(self, node: str) -> None:
        """The DaemonSet does."""

    def settled(self) -> bool:
        now = time.monotonic()
        served = seed_service.http_from(self.lab, seed_service.CLIENT, VIP, 80, 0.5).ok
        current = self.owner()  # after the request: it refreshed the client's ARP entry
        ok = served and current is not None and speakers_ready(self.lab, self.install)
        if not ok or current != self._owner_since[0]:
            self._owner_since = (current if ok else None, now)
            return False
        return now - self._owner_since[1] >= SETTLE_QUIET_S

    def stop(self) -> None:
        """Removed by the switch that follows."""


def _pod_on(lab: Lab, install: Install, node: str) -> str:
    for pod in speaker_pods(lab, install):
        if pod["spec"].get("nodeName") == node and "deletionTimestamp" not in pod["metadata"]:
            return str(pod["metadata"]["name"])
    raise PikubeError(f"{node}: no {install.name} speaker Pod")


def inflict(lab: Lab, impl: fo.Implementation, node: str, scenario: fo.Scenario) -> None:
    assert isinstance(impl, PodSpeakers)
    if scenario is fo.Scenario.GRACEFUL:
        pod = _pod_on(lab, impl.install, node)
        kubectl(lab, f"-n {NAMESPACE} delete pod {pod} --wait=false")
        return
    pid = speaker_pid(lab, impl.install, node) if scenario is fo.Scenario.CRASH else 0
    if pid:
        os.kill(pid, signal.SIGKILL)
    netns.set_link_state(lab.namespace(node), HOST_INTERFACE, up=False)


def link_up(lab: Lab, node: str) -> None:
    """The node's eth0 up again, with its default route: the link's going down took the route
    with it, and the Pi's network service puts it back when the carrier returns (the API's
    service IP, 10.96.0.1, needs it)."""
    netns.set_link_state(lab.namespace(node), HOST_INTERFACE, up=True)
    gateway = str(lab.topology.gateway.ipv4)
    argv = ["ip", "route", "replace", "default", "via", gateway, "dev", HOST_INTERFACE]
    lab.run(node, [*argv, "proto", "static"], timeout_s=10)


def recover(lab: Lab, impl: fo.Implementation, node: str, scenario: fo.Scenario) -> None:
    assert isinstance(impl, PodSpeakers)
    if scenario.downs_link:
        link_up(lab, node)
    if scenario is fo.Scenario.CRASH:  # a fresh Pod: no restart back-off into the next run
        pod = _pod_on(lab, impl.install, node)
        kubectl(lab, f"-n {NAMESPACE} delete pod {pod} --wait=false")


@dataclass(frozen=True)
class Switch:
    old: str
    new: str
    outage_ms: float
    failed_probes: int
    seconds: float  # from the delete until the client was served through the new speakers
    owner_before: str
    owner_after: str


def switch(
    lab: Lab, old: str, new: str, out_name: str, apply_new: Callable[[], None] | None = None
) -> Switch:
    """The documented migration while the client probes the IP: delete the old one's
    Deployment and DaemonSet, apply the new one's manifest (or call `apply_new`, which also
    waits for it); the outage the client saw, and the owner before and after."""
    before = owner(lab) or "?"
    out = state.lab_dir(lab.name) / "bench" / "probes" / f"{out_name}.json"
    config = ProberConfig(address=VIP, port=80, interval_ms=10, timeout_ms=50, max_duration_s=600)
    prober = start_prober(lab, seed_service.CLIENT, out_name, config, out, ready_timeout_s=60)
    try:
        time.sleep(0.2)
        started = time.monotonic()
        remove(lab, old)
        if apply_new is None:
            install(lab, new)
        else:
            apply_new()
        apply_pool(lab)
        speakers = PodSpeakers(lab, INSTALLS[new])
        wait_until(speakers.settled, 120, f"{new} serving the IP after the switch", poll_s=0.2)
        seconds = time.monotonic() - started
        time.sleep(0.5)
    except BaseException:
        lab.stop(prober)
        raise
    measured = stop_prober(lab, prober, out)
    outage = outage_around(measured.probes, started)
    return Switch(
        old,
        new,
        round(outage.duration_ms, 1) if outage else -1.0,
        len(failed_probes(measured.probes, started)),
        round(seconds, 1),
        before,
        owner(lab) or "?",
    )


def create_runs(lab: Lab, runs: int) -> list[lb_api.ApiRun]:
    """create-to-IP and create-to-HTTP-200, the seed's Service deleted meanwhile (its IP is
    the pool's first, the one every run's Service gets)."""
    kubectl(lab, "delete service nginx --wait=true")
    conf = seedcluster.kubeconfig_path(lab.name)
    results = []

    def withdrawn() -> bool:
        found = kubectl(lab, f"get service {lb_api.SERVICE} --ignore-not-found", check=False)
        return (
            not found.strip()
            and not seed_service.http_from(lab, seed_service.CLIENT, VIP, 80, 0.3).ok
        )

    for run in range(1, runs + 1):
        wait_until(withdrawn, 30, "the previous run's Service and IP gone", poll_s=0.2)
        time.sleep(1.0)  # the speakers' and kube-proxy's clean-up done too
        with netns.entered(lab.namespace(seed_service.CLIENT)):
            subprocess.run(["ip", "neigh", "flush", "to", VIP], check=False)

            async def once(run: int = run) -> lb_api.ApiRun:
                api = await connect(conf)
                try:
                    await api.request("GET", "/version")
                    return await lb_api.measure_once(api, run, selector="nginx")
                finally:
                    await api.close()

            results.append(asyncio.run(once()))
        kubectl(lab, f"delete service {lb_api.SERVICE} --wait=false")
    wait_until(withdrawn, 30, "the last run's Service and IP gone", poll_s=0.2)
    kubectl(lab, "apply -f -", yaml.safe_dump(service()))
    return results


@dataclass
class Results:
    failover: list[fo.RunResult] = field(default_factory=list)
    create: dict[str, list[lb_api.ApiRun]] = field(default_factory=dict)
    switches: list[Switch] = field(default_factory=list)
    load: dict[str, list[float]] = field(default_factory=dict)


def _load(results: Results, when: str) -> None:
    results.load[when] = [round(x, 2) for x in os.getloadavg()]


def run_bench(
    lab: Lab,
    names: Sequence[str],
    settings: fo.BenchSettings,
    create_count: int,
    results: Results,
    say: Callable[[str], None] = lambda _line: None,
) -> Results:
    """Every implementation in turn on an up lab with Kubernetes and both images served;
    each after the first is switched to from the one before, and the last back to the first."""
    _load(results, "start")
    install(lab, names[0])
    apply_pool(lab)
    kubectl(lab, "apply -f -", nginx_on_master())
    kubectl(lab, "rollout status deployment/nginx --timeout=240s")
    for index, name in enumerate(names):
        if index:
            done = switch(lab, names[index - 1], name, f"switch-{names[index - 1]}-{name}")
            results.switches.append(done)
            say(f"switch {done.old} -> {done.new}: outage {done.outage_ms} ms ({done.seconds} s)")
        speakers = PodSpeakers(lab, INSTALLS[name])
        for scenario in fo.Scenario:
            for run in range(1, settings.runs + 1):
                try:
                    result = fo.run_once(
                        lab, speakers, scenario, run, settings,
                        inflict=inflict, recover=recover, owner_may_return_s=5.0,
                    )  # fmt: skip
                except BaseException:
                    for node in ANNOUNCERS:  # a failed run leaves no node cut off
                        link_up(lab, node)
                    raise
                results.failover.append(result)
                say(
                    f"{name} {scenario.value} run {run}: outage {result.outage_ms:.1f} ms "
                    f"({result.old_owner} -> {result.new_owner})"
                )
        results.create[name] = create_runs(lab, create_count)
        figures = lb_api.summarise(results.create[name])["figures"]
        ip_p50, http_p50 = figures["ip_ms"]["p50"], figures["http_ms"]["p50"]
        say(f"{name} create: IP p50 {ip_p50} ms, HTTP 200 p50 {http_p50} ms")
        _load(results, f"after {name}")
    if len(names) > 1:
        done = switch(lab, names[-1], names[0], f"switch-{names[-1]}-{names[0]}")
        results.switches.append(done)
        say(f"switch {done.old} -> {done.new}: outage {done.outage_ms} ms ({done.seconds} s)")
    _load(results, "end")
    return results


def summarise(results: Results, runs: int) -> dict[str, Any]:
    create = {}
    for name, samples in results.create.items():
        figures = lb_api.summarise(samples)["figures"]
        create[name] = {k: figures[k] for k in ("api_ms", "ip_ms", "http_ms")}
    return {
        "lab": "real Kubernetes v1.31.5 (kubeadm, flannel, kube-proxy iptables), 3 workers",
        "load_average": results.load,
        "failover": fo.summarise(results.failover, runs),
        "create": create,
        "switches": [s.__dict__ for s in results.switches],
    }


def write_json(path: Path, summary: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(path)
