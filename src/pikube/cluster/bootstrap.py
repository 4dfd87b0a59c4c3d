"""Carrying out the cluster stages (stages.py) over the apply's SSH session: the thin I/O.

Owns: gathering kubeadm's traces on every node and the API's view from the control plane
(read-only, logged as such), reading flannel's manifest, running each planned step's commands
and nothing else (a step's stdin is produced here: the token and the CA hash only ever travel
on stdin and are redacted from every message), the waits (API, Ready nodes, flannel, nginx)
with Pi-sized timeouts, and the final HTTP check. A worker that fails stops only itself; a
failed control plane stops the stages after it.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pikube.cluster import addons as addons_module
from pikube.cluster import apiread, kubeadm, ssh
from pikube.cluster.addons import Addon
from pikube.cluster.apiread import ApiView
from pikube.cluster.apply import HostState, Progress
from pikube.cluster.kubeadm import ApiFacts, KubeFacts
from pikube.cluster.plan import Plan
from pikube.cluster.session import Session
from pikube.cluster.spec import ClusterSpec
from pikube.cluster.stages import KUBECTL, ClusterPlan, Phase, Stdin, Step, cluster_plan, redact
from pikube.errors import InvalidInput, PikubeError
from pikube.inputs import MANIFESTS_LIMIT_BYTES, InputBudget

API_TIMEOUT_S = 600.0  # a Pi on an SD card: etcd and the API server may take minutes
READY_TIMEOUT_S = 600.0
ROLLOUT_TIMEOUT_S = 600.0
HTTP_TIMEOUT_S = 180.0
STEP_TIMEOUT_S = 900.0
FETCH_TIMEOUT_S = 30.0
POLL_S = 1.0

ProgressCallback = Callable[[Progress], None]


class _Stopped(Exception):
    pass


# -- gathering -------------------------------------------------------------------------------


def read_flannel_manifest(spec: ClusterSpec) -> str:
    return read_manifest(spec.flannel.source(spec.versions.flannel), "flannel.manifest")


def read_manifest(source: str, field: str) -> str:
    """A release manifest from an URL or a local file; `field` names the spec's setting."""
    if source.startswith(("https://", "http://")):
        try:
            with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT_S) as response:
                data: bytes = response.read(MANIFESTS_LIMIT_BYTES + 1)
        except (urllib.error.URLError, OSError) as exc:
            raise InvalidInput(
                f"{field}: cannot fetch {source} ({exc}); for an offline site, put the "
                f"file next to the spec and set {field} to its path"
            ) from None
        if len(data) > MANIFESTS_LIMIT_BYTES:  # refused whole, never cut short
            raise InvalidInput(
                f"{field}: {source} is over {MANIFESTS_LIMIT_BYTES >> 20} MiB: not a manifest"
            )
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{field}: {source} is not UTF-8 text: {exc}") from None
    path = Path(source).expanduser()
    try:
        # Bounded as every input file (pikube.inputs): /dev/zero is refused, not read for ever.
        return InputBudget(MANIFESTS_LIMIT_BYTES, "flannel's manifest").read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{field}: cannot read {path}: {exc}") from None


def wanted_addons(spec: ClusterSpec) -> tuple[list[Addon], list[str]]:
    """The add-ons the spec asks for, and notes about what is left out."""
    lb_text = addons_module.lb_manifest()
    metallb_text = None
    if addons_module.uses_metallb(spec):
        source = addons_module.metallb_source(spec)
        metallb_text = read_manifest(source, "load_balancer.manifest")
    wanted = addons_module.addons(spec, read_flannel_manifest(spec), lb_text, metallb_text)
    missing = addons_module.missing_load_balancer(spec, lb_text)
    return wanted, [missing] if missing else []


async def _read(
    session: Session, node: str, command: str, what: str, **kw: Any
) -> ssh.CommandResult:
    started = time.monotonic()
    result = await session.connections[node].run(command, **kw)
    session.log.record(node, what, result, time.monotonic() - started, read_only=True)
    return result


async def kube_facts(session: Session, node: str) -> KubeFacts:
    result = await _read(session, node, kubeadm.kube_facts_script(), "kube-facts", timeout_s=60.0)
    try:
        return kubeadm.parse_kube_facts(result.stdout)
    except ValueError:
        raise PikubeError(f"{node}: reading kubeadm's files stopped early") from None


async def wait_api(session: Session, node: str, timeout_s: float, stop: asyncio.Event) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await _read(
            session,
            node,
            f"{KUBECTL} get --raw /readyz --request-timeout=5s",
            "wait-api",
            timeout_s=30.0,
        )
        if result.ok:
            return
        if stop.is_set():
            raise _Stopped
        if time.monotonic() > deadline:
            raise PikubeError(
                f"{node}: the API server did not answer /readyz within {timeout_s:g} s "
                "(see `crictl ps -a` and `journalctl -u kubelet` there)"
            )
        await asyncio.sleep(POLL_S)


# What plan_all starts before the host facts are in: the wanted add-ons, the notes about
# them, and the API read already under way.
Early = tuple[list[Addon], list[str], "asyncio.Future[ApiView]"]


async def plan_all(session: Session) -> tuple[Plan, ClusterPlan, ApiView]:
    """Both plans, read-only: the hosts' and the cluster stages'. The control plane's API is
    read while every node's facts are gathered (a read finding no cluster is dropped), so a
    cluster with nothing to do costs two round trips in a row, not three."""
    plane = kubeadm.control_plane(session.spec).name
    early: Early | None = None
    if plane in session.connections:
        wanted, notes = wanted_addons(session.spec)
        early = (wanted, notes, asyncio.ensure_future(_early_read(session, plane, wanted)))
    try:
        host_plan, _facts = await session.plan()
    except BaseException:
        if early is not None:
            early[2].cancel()
        raise
    errors = {h.node: h.error for h in host_plan.hosts if h.error is not None}
    cluster, view = await plan_cluster(session, errors, early)
    return host_plan, cluster, view


async def plan_cluster(
    session: Session, host_errors: Mapping[str, str], early: Early | None = None
) -> tuple[ClusterPlan, ApiView]:
    """Gather (read-only) and plan the cluster stages: kubeadm's traces from each node (already
    read with its host facts when the session ran `kube_facts_script` with them, else one more
    round trip) and, on an initialised control plane, the API in one read (`early`'s, if
    plan_all started it)."""
    spec = session.spec
    errors = dict(host_errors)
    facts: dict[str, KubeFacts] = {}

    async def one(node: str) -> None:
        try:
            facts[node] = kubeadm.parse_kube_facts(session.extra_output.get(node, ""))
            return
        except ValueError:
            pass  # not gathered with the host facts
        try:
            facts[node] = await kube_facts(session, node)
        except PikubeError as exc:
            errors[node] = exc.message

    await asyncio.gather(*(one(n.name) for n in spec.nodes if n.name not in errors))
    plane = kubeadm.control_plane(spec).name
    read = early[2] if early is not None else None
    if plane in errors:  # nothing after host preparation can run
        if read is not None:
            read.cancel()
        plan = cluster_plan(spec, facts, ApiFacts(), errors, [], {}, frozenset())
        return plan, ApiView()
    wanted, notes = (early[0], early[1]) if early is not None else wanted_addons(spec)
    view = ApiView()
    if read is not None:
        view = await read  # read-only and quick to fail where there is no cluster
    if plane in facts and facts[plane].initialised:
        if read is None:
            view = await read_api(session, plane, wanted)
        if not view.api.reachable:  # restarting (a reboot, an upgrade): give it a while
            await wait_api(session, plane, 180.0, asyncio.Event())
            view = await read_api(session, plane, wanted)
        if not view.api.reachable:
            errors[plane] = "the API server does not answer `kubectl get nodes`"
    else:
        view = ApiView()
    plan = cluster_plan(spec, facts, view.api, errors, wanted, view.recorded, view.existing, notes)
    return plan, view


async def _early_read(session: Session, plane: str, wanted: Sequence[Addon]) -> ApiView:
    """The API read started before anyone knows there is a cluster: a failure is no answer
    (plan_cluster reads again, and reports, where a cluster exists)."""
    try:
        return await read_api(session, plane, wanted)
    except PikubeError:
        return ApiView()


async def read_api(session: Session, plane: str, wanted: Sequence[Addon]) -> ApiView:
    """The API's view in one round trip (see apiread)."""
    result = await _read(
        session,
        plane,
        apiread.SCRIPT,
        "api-facts",
        input_text=apiread.script_input(wanted),
        timeout_s=120.0,
    )
    return apiread.parse(result.stdout)


# -- running -----------------------------------------------------------------------------------


@dataclass
class ClusterReport:
    done: list[tuple[str, str]] = field(default_factory=list)  # (node, step id)
    commands: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    url: str | None = None
    http_status: int | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and not self.skipped

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "done": [f"{n}/{s}" for n, s in self.done],
            "commands": self.commands,
            "failed": self.failed,
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "url": self.url,
            "http_status": self.http_status,
        }


@dataclass
class _Run:
    session: Session
    plan: ClusterPlan
    on_progress: ProgressCallback
    stop: asyncio.Event
    report: ClusterReport
    secrets: list[str] = field(default_factory=list)
    token: str = ""
    ca_hash: str = ""

    @property
    def spec(self) -> ClusterSpec:
        return self.session.spec

    def say(self, node: str, state: HostState, detail: str, step: int = 0, steps: int = 0) -> None:
        self.on_progress(Progress(node, state, step, steps, redact(detail, self.secrets)))

    def stdin_for(self, step: Step) -> str:
        if step.stdin is Stdin.ADDON:
            assert step.addon is not None
            return self.plan.addon(step.addon).manifest
        if step.stdin is Stdin.JOIN_CONFIG:
            node = self.spec.node(step.node)
            return kubeadm.join_config(self.spec, node, self.token, self.ca_hash)
        return ""

    async def run_step(self, step: Step, index: int, count: int) -> str:
        """Run the step's commands; its stdout (the token step's is the token)."""
        conn = self.session.connections[step.node]
        stdout = ""
        for command in step.commands:
            if self.stop.is_set():
                raise _Stopped
            self.say(step.node, HostState.APPLYING, step.summary, index, count)
            self.report.commands.setdefault(step.node, []).append(command)
            started = time.monotonic()
            result = await conn.run(
                command,
                input_text=self.stdin_for(step),
                timeout_s=STEP_TIMEOUT_S,
                survive_disconnect=True,
            )
            logged = ssh.CommandResult(
                result.command, result.exit_status, "", redact(result.stderr, self.secrets)
            )
            self.session.log.record(step.node, step.id, logged, time.monotonic() - started)
            if not result.ok:
                lines = redact(result.stderr or result.stdout, self.secrets).strip().splitlines()
                useful = [ln for ln in lines if "stack trace" not in ln] or ["no output"]
                raise PikubeError(
                    f"{step.node}: {step.id} failed with status {result.exit_status}: "
                    f"{useful[-1].strip()}"
                )
            stdout = result.stdout
        self.report.done.append((step.node, step.id))
        return stdout

    async def lane(self, node: str, steps: Sequence[Step]) -> None:
        """One node's steps of a phase, in order; a failure stops this node only."""
        if node in self.report.failed:
            for step in steps:
                self.report.skipped[f"{node}/{step.id}"] = "an earlier step of this node failed"
            return
        try:
            for i, step in enumerate(steps, start=1):
                out = await self.run_step(step, i, len(steps))
                if step.id == "token":
                    token = out.strip()
                    if not kubeadm.valid_token(token):
                        raise PikubeError(f"{node}: kubeadm token create printed no token")
                    self.token = token
                    self.secrets.append(token)
        except _Stopped:
            self.report.interrupted = True
            self.say(node, HostState.INTERRUPTED, "stopped (nothing half done); apply again")
        except (PikubeError, ssh.UnreachableError) as exc:
            self.report.failed[node] = exc.message
            self.say(node, HostState.FAILED, exc.message)

    def checkpoint(self) -> None:
        """After a Ctrl-C nothing new starts: no phase, no wait (the commands running finish)."""
        if self.stop.is_set():
            raise _Stopped

    async def phase(self, phase: Phase) -> None:
        self.checkpoint()
        steps = [s for s in self.plan.steps if s.phase is phase]
        if not steps:
            return
        by_node: dict[str, list[Step]] = {}
        for step in steps:
            by_node.setdefault(step.node, []).append(step)
        await asyncio.gather(*(self.lane(n, s) for n, s in by_node.items()))


async def run_cluster(
    session: Session,
    plan: ClusterPlan,
    on_progress: ProgressCallback = lambda _p: None,
    stop: asyncio.Event | None = None,
    check_http: bool = True,
    observed: ApiView | None = None,
) -> ClusterReport:
    """Run the plan's steps phase by phase, then wait until the cluster is ready and nginx
    answers. Raises nothing for a node's failure: the report says who failed and why.

    `observed` is the API's view read for the plan, given when nothing changed since (no host
    was touched): when the plan has no step and it shows the cluster ready, nothing is waited
    for and only nginx's answer is checked."""
    started = time.monotonic()
    report = ClusterReport()
    run = _Run(session, plan, on_progress, stop or asyncio.Event(), report)
    spec = session.spec
    plane = kubeadm.control_plane(spec).name
    for node, why in plan.blocked.items():
        report.skipped[node] = why
    if plane in plan.blocked:
        report.elapsed_s = time.monotonic() - started
        return report
    ids = {(s.node, s.id) for s in plan.steps}
    try:
        await run.phase(Phase.PREPARE)
        if plane in report.failed or report.interrupted:
            return _end(report, started)
        if (plane, "init") in ids:
            run.say(plane, HostState.VERIFYING, "waiting for the API server (/readyz)")
            await wait_api(session, plane, API_TIMEOUT_S, run.stop)
        await run.phase(Phase.NETWORK)
        if any(s.phase is Phase.JOIN for s in plan.steps):
            ca = await _read(session, plane, f"cat {kubeadm.CA_CERT}", "ca-hash", timeout_s=30.0)
            if not ca.ok:
                raise PikubeError(f"{plane}: cannot read {kubeadm.CA_CERT}")
            run.ca_hash = kubeadm.ca_cert_hash(ca.stdout)
            await run.phase(Phase.TOKEN)
            if plane in report.failed or report.interrupted:
                return _end(report, started)
            await run.phase(Phase.JOIN)
        await run.phase(Phase.REMOVE)
        if plane in report.failed or report.interrupted:
            return _end(report, started)
        members = [
            n.name for n in spec.nodes if n.name not in plan.blocked and n.name not in report.failed
        ]
        settled = (
            not plan.steps
            and observed is not None
            and observed.settled(members, spec.demo_app.enabled)
        )
        run.checkpoint()
        if not settled:
            run.say(plane, HostState.VERIFYING, f"waiting for {len(members)} Ready nodes")
            await wait_ready(run, plane, members)
        await run.phase(Phase.ADDONS)
        if plane in report.failed or report.interrupted:
            return _end(report, started)
        run.checkpoint()
        if not settled:
            await rollout(
                run,
                plane,
                f"-n {addons_module.FLANNEL_NAMESPACE} daemonset/{addons_module.FLANNEL_DAEMONSET}",
                "flannel",
            )
        if spec.demo_app.enabled:
            if not settled:
                await rollout(
                    run,
                    plane,
                    f"-n {addons_module.DEMO_NAMESPACE} deployment/{addons_module.DEMO_NAME}",
                    "nginx",
                )
            if check_http:
                await http_check(run, plane, observed.service if settled and observed else None)
        run.say(plane, HostState.DONE, "cluster ready" + (f": {report.url}" if report.url else ""))
    except _Stopped:
        report.interrupted = True
    except (PikubeError, ssh.UnreachableError) as exc:
        report.failed.setdefault(plane, redact(exc.message, run.secrets))
        run.say(plane, HostState.FAILED, exc.message)
    return _end(report, started)


def _end(report: ClusterReport, started: float) -> ClusterReport:
    report.elapsed_s = time.monotonic() - started
    return report


async def wait_ready(run: _Run, plane: str, members: Sequence[str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen: dict[str, kubeadm.NodeStatus] = {}
    while True:
        result = await _read(
            run.session, plane, f"{KUBECTL} get nodes -o json", "wait-ready", timeout_s=60.0
        )
        if result.ok:
            seen = kubeadm.parse_nodes(json.loads(result.stdout))
            missing = [n for n in members if not (n in seen and seen[n].ready)]
            if not missing:
                return
            run.say(plane, HostState.VERIFYING, f"waiting for Ready: {', '.join(missing)}")
        if run.stop.is_set():
            raise _Stopped
        if time.monotonic() > deadline:
            missing = [n for n in members if not (n in seen and seen[n].ready)]
            raise PikubeError(
                f"nodes not Ready after {READY_TIMEOUT_S:g} s: {', '.join(missing)} "
                "(`kubectl describe node` says why)"
            )
        await asyncio.sleep(POLL_S)


async def rollout(run: _Run, plane: str, what: str, name: str) -> None:
    """Wait (in short rounds, so Ctrl-C is seen) until the workload is rolled out."""
    run.say(plane, HostState.VERIFYING, f"waiting for {name} to be ready")
    command = f"{KUBECTL} rollout status {what} --timeout=10s"
    deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
    while True:
        result = await _read(run.session, plane, command, f"wait-{name}", timeout_s=60.0)
        if result.ok:
            return
        if run.stop.is_set():
            raise _Stopped
        if time.monotonic() > deadline:
            tail = (result.stderr or result.stdout).strip().splitlines()
            raise PikubeError(
                f"{name} is not ready after {ROLLOUT_TIMEOUT_S:g} s: "
                f"{tail[-1] if tail else 'no output'} (`kubectl describe` its pods)"
            )


# --- The load balancer check -----------------------------------------------------------------
# LOAD BALANCER PLUG-IN POINT: `service_url` is the one place that decides where the demo
# Service is checked. With pikube's install manifest in the package (the load balancer
# installed), it is the LoadBalancer IP the Service got; without it, a NodePort.


def service_url(
    service: Mapping[str, Any], node_addresses: Sequence[str], load_balancer: bool
) -> str | None:
    """Where the demo Service answers: its LoadBalancer IP (None until it has one) when the load
    balancer is installed, else its NodePort on the first node address."""
    spec = service.get("spec", {})
    port: dict[str, Any] = next(iter(spec.get("ports", [])), {})
    if load_balancer:
        ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
        address = next((i.get("ip") for i in ingress if i.get("ip")), None)
        if address is None:
            return None
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{port.get('port', 80)}/"
    node_port = port.get("nodePort")
    if not node_port or not node_addresses:
        return None
    address = node_addresses[0]
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{node_port}/"


def http_status(url: str, timeout_s: float = 5.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


async def http_check(run: _Run, plane: str, service: Mapping[str, Any] | None = None) -> None:
    """Wait until nginx answers HTTP 200 where its Service is reachable (from this machine);
    `service` is the Service as just read, if it was."""
    spec = run.spec
    lb = spec.load_balancer is not None and (
        addons_module.uses_metallb(spec) or addons_module.lb_manifest() is not None
    )
    workers = [n.address for n in kubeadm.workers(spec)] or [kubeadm.control_plane(spec).address]
    deadline = time.monotonic() + HTTP_TIMEOUT_S
    command = (
        f"{KUBECTL} -n {addons_module.DEMO_NAMESPACE} get service {addons_module.DEMO_NAME} -o json"
    )
    url = service_url(service, workers, lb) if service is not None else None
    status: int | None = None
    while True:
        if url is None:
            result = await _read(run.session, plane, command, "service", timeout_s=60.0)
            if result.ok:
                url = service_url(json.loads(result.stdout), workers, lb)
        if url is not None:
            run.say(plane, HostState.VERIFYING, f"checking {url}")
            status = await asyncio.to_thread(http_status, url)
            if status == 200:
                run.report.url, run.report.http_status = url, status
                return
        if run.stop.is_set():
            raise _Stopped
        if time.monotonic() > deadline:
            where = url or "the Service (no LoadBalancer IP assigned)"
            raise PikubeError(
                f"nginx did not answer HTTP 200 at {where} within {HTTP_TIMEOUT_S:g} s "
                f"(last: {status or 'no answer'})"
            )
        await asyncio.sleep(POLL_S)
