"""The cluster stages after host preparation: the pure plan (which steps, from kubeadm's traces
on each node and from the API), nothing else.

A step is the exact commands one node runs, in order; what a command reads on stdin is named
by `stdin` (a join configuration, an add-on's manifest) and produced at run time, so secrets
(the bootstrap token) are in no command line, plan, or log. Steps run in phases (see PHASES);
within a phase every node runs its own steps, the nodes concurrently.

Decisions, from facts only (never by trying a command to see it fail):
- init: the control plane has none of kubeadm's traces. Half-done traces (an init cut short)
  stop the plan with the command to run; a kubeadm still running stops it too.
- join: a worker whose kubelet.conf is missing, or who is not a Node of this cluster (a
  rebuilt control plane); traces of an earlier attempt are reset first.
- remove: a Node of the cluster that is not in the spec (not the control plane) is drained and
  deleted.
- add-ons: see addons.addons_needed.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pikube.cluster import kubeadm
from pikube.cluster.addons import Addon, addons_needed, record_command
from pikube.cluster.kubeadm import ApiFacts, KubeFacts
from pikube.cluster.operations import unified_diff, write_file_command
from pikube.cluster.spec import ClusterSpec

KUBECTL = f"kubectl --kubeconfig {kubeadm.ADMIN_CONF}"


class Phase(enum.IntEnum):
    """The order of the stages. Within PREPARE the workers pull images while the control
    plane pulls and initialises."""

    PREPARE = 1  # kubeadm.yaml, images on every node, kubeadm init on the control plane
    NETWORK = 2  # flannel
    TOKEN = 3  # a bootstrap token, on the control plane
    JOIN = 4  # workers: reset traces of an earlier attempt, join
    REMOVE = 5  # drain and delete nodes gone from the spec
    ADDONS = 6  # load balancer, pool, nginx; their record


class Stdin(enum.Enum):
    NONE = "none"
    JOIN_CONFIG = "join-config"  # this worker's JoinConfiguration (holds the token)
    ADDON = "addon"  # the add-on's manifest (Step.addon)


@dataclass(frozen=True)
class Step:
    id: str
    node: str
    phase: Phase
    summary: str
    commands: tuple[str, ...]
    diff: str | None = None
    stdin: Stdin = Stdin.NONE
    addon: str | None = None  # the add-on whose manifest goes to stdin

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "node": self.node,
            "phase": self.phase.name.lower(),
            "summary": self.summary,
            "commands": list(self.commands),
            "diff": self.diff,
            "stdin": self.stdin.value,
        }


@dataclass(frozen=True)
class ClusterPlan:
    steps: tuple[Step, ...] = ()
    # node -> why it gets no step this time (unreachable, kubeadm still running, ...)
    blocked: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    addons: tuple[Addon, ...] = ()  # the add-ons the steps apply (their text for stdin)

    @property
    def commands(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for step in self.steps:
            result.setdefault(step.node, []).extend(step.commands)
        return result

    def addon(self, name: str) -> Addon:
        return next(a for a in self.addons if a.name == name)

    def to_json(self) -> dict[str, object]:
        return {
            "steps": [s.to_json() for s in self.steps],
            "blocked": dict(self.blocked),
            "notes": list(self.notes),
        }


# -- commands --------------------------------------------------------------------------------


def images_pull(spec: ClusterSpec) -> str:
    return (
        f"kubeadm config images pull --kubernetes-version v{spec.versions.kubernetes} "
        f"--cri-socket {kubeadm.CRI_SOCKET}"
    )


INIT = f"kubeadm init --config {kubeadm.INIT_CONFIG} --skip-token-print"
# The join configuration arrives on stdin and lives in a private file only while kubeadm reads
# it (kubeadm wants a file path; /run is a tmpfs).
JOIN = (
    "umask 077 && f=$(mktemp /run/pikube-join.XXXXXX) && cat > $f && "
    "kubeadm join --config $f; s=$?; rm -f $f; exit $s"
)
TOKEN_CREATE = (
    f"kubeadm token create --ttl {kubeadm.TOKEN_TTL} --description 'pikube cluster apply: joins'"
)
WAIT_KUBEADM = "while pgrep -x kubeadm >/dev/null; do sleep 1; done"


def reset_commands() -> tuple[str, ...]:
    """kubeadm reset and what it leaves: CNI configuration, flannel's links, and the iptables
    rules of kube-proxy, flannel and the CNI plugins (other rules are kept)."""
    chains = "-e KUBE- -e FLANNEL -e CNI-"
    return (
        f"kubeadm reset --force --cri-socket {kubeadm.CRI_SOCKET}",
        "rm -rf /etc/cni/net.d/* /var/lib/cni /run/flannel",
        "for l in " + " ".join(kubeadm.LINKS) + "; do ! [ -e /sys/class/net/$l ] || "
        "ip link delete $l; done",
        "for t in iptables ip6tables; do ! command -v $t-save >/dev/null || "
        f"$t-save | grep -v {chains} | $t-restore; done",
    )


# Add-ons the load balancer's admission webhook checks (its pool and advertisement): applied
# right after the load balancer itself, their apply is retried while the webhook comes up
# (its controller starting, its certificate written), every 2 s for up to 5 minutes.
WEBHOOK_CHECKED_ADDONS = frozenset({"pool"})
WEBHOOK_RETRIES, WEBHOOK_RETRY_S = 150, 2


def apply_addon_command(retry: bool = False) -> str:
    """`kubectl apply` of the add-on given on stdin; with `retry`, kept on a file and applied
    again until it is accepted (the webhook, or a CRD just created, may not answer yet)."""
    if not retry:
        return f"{KUBECTL} apply -f -"
    return (
        'f=$(mktemp) && cat >"$f" && i=0 && '
        f'until {KUBECTL} apply -f "$f"; do i=$((i+1)); '
        f'if [ "$i" -ge {WEBHOOK_RETRIES} ]; then rm -f "$f"; exit 1; fi; '
        f"sleep {WEBHOOK_RETRY_S}; done; "
        'rm -f "$f"'
    )


def drain_commands(node: str) -> tuple[str, ...]:
    return (
        f"{KUBECTL} drain {shlex.quote(node)} --ignore-daemonsets --delete-emptydir-data "
        "--force --timeout=300s",
        f"{KUBECTL} delete node {shlex.quote(node)}",
    )


# -- the plan ----------------------------------------------------------------------------------


def cluster_plan(
    spec: ClusterSpec,
    kube: Mapping[str, KubeFacts],
    api: ApiFacts,
    errors: Mapping[str, str],
    wanted_addons: Sequence[Addon],
    recorded: Mapping[str, str],
    existing: frozenset[str],
    notes: Sequence[str] = (),
) -> ClusterPlan:
    """Every step from the facts gathered before the run; `kube` has the reachable nodes."""
    plane = kubeadm.control_plane(spec)
    steps: list[Step] = []
    blocked: dict[str, str] = {}
    all_notes = list(notes)
    for node in spec.nodes:
        if node.name in errors:
            blocked[node.name] = errors[node.name]
        elif kube[node.name].kubeadm_running:
            blocked[node.name] = (
                "kubeadm is still running there (an interrupted apply's); it runs to its end: "
                "apply again in a minute"
            )
    if plane.name in blocked:
        return ClusterPlan(blocked=blocked, notes=(*all_notes, _no_control_plane(plane.name)))
    master = kube[plane.name]
    if master.half_initialised:
        blocked[plane.name] = (
            "kubeadm init did not finish here (admin.conf or a static pod manifest is missing); "
            f"run `pikube cluster reset --node {plane.name} --yes`, then apply again"
        )
        return ClusterPlan(blocked=blocked, notes=tuple(all_notes))
    init_needed = not master.initialised
    # kubeadm.yaml on the control plane
    config = kubeadm.init_config(spec)
    if master.config != config:
        verb = "create" if master.config is None else "update"
        why = "" if init_needed else " (the running cluster keeps its configuration)"
        steps.append(
            Step(
                "kubeadm-config",
                plane.name,
                Phase.PREPARE,
                f"{verb} {kubeadm.INIT_CONFIG}: kubeadm's configuration from the spec{why}",
                (write_file_command(kubeadm.INIT_CONFIG, config, mode="0600"),),
                diff=unified_diff(kubeadm.INIT_CONFIG, master.config, config),
            )
        )
    joining = []
    for worker in kubeadm.workers(spec):
        if worker.name in blocked:
            continue
        facts = kube[worker.name]
        member = facts.joined and worker.name in api.nodes and not init_needed
        if not member:
            joining.append((worker.name, facts))
    if init_needed:
        steps.append(
            Step(
                "images",
                plane.name,
                Phase.PREPARE,
                "pull the control plane's images",
                (images_pull(spec),),
            )
        )
        steps.append(
            Step(
                "init",
                plane.name,
                Phase.PREPARE,
                f"kubeadm init: a new control plane ({kubeadm.endpoint(spec)}, pods "
                f"{spec.networking.pod_cidr}, services {spec.networking.service_cidr})",
                (INIT,),
            )
        )
    for name, _facts in joining:
        steps.append(
            Step("images", name, Phase.PREPARE, "pull kubeadm's images", (images_pull(spec),))
        )
    for name, facts in joining:
        traces = facts.joined or "kubelet-config" in facts.present or facts.leftovers
        if traces:
            steps.append(
                Step(
                    "reset",
                    name,
                    Phase.JOIN,
                    "kubeadm reset: clear an earlier join (another cluster, or one cut short)",
                    reset_commands(),
                )
            )
        steps.append(
            Step(
                "join",
                name,
                Phase.JOIN,
                f"kubeadm join {kubeadm.endpoint(spec)} (a {kubeadm.TOKEN_TTL} token, the CA "
                "pinned by its hash; both on stdin)",
                (JOIN,),
                stdin=Stdin.JOIN_CONFIG,
            )
        )
    if joining:
        steps.append(
            Step(
                "token",
                plane.name,
                Phase.TOKEN,
                f"a bootstrap token valid for {kubeadm.TOKEN_TTL} (never printed)",
                (TOKEN_CREATE,),
            )
        )
    spec_names = {n.name for n in spec.nodes}
    if not init_needed:
        for name, status in sorted(api.nodes.items()):
            if name not in spec_names and not status.control_plane:
                steps.append(
                    Step(
                        "remove",
                        plane.name,
                        Phase.REMOVE,
                        f"drain and delete {name}: no longer in the spec",
                        drain_commands(name),
                    )
                )
    needed = (
        list(wanted_addons)
        if init_needed
        else addons_needed(list(wanted_addons), recorded, existing)
    )
    for addon in needed:
        phase = Phase.NETWORK if addon.name == "flannel" else Phase.ADDONS
        steps.append(
            Step(
                f"addon-{addon.name}",
                plane.name,
                phase,
                f"kubectl apply {addon.summary}",
                (apply_addon_command(retry=addon.name in WEBHOOK_CHECKED_ADDONS),),
                diff=addon.diff,
                stdin=Stdin.ADDON,
                addon=addon.name,
            )
        )
    if needed:
        record = {**recorded, **{a.name: a.digest for a in needed}}
        steps.append(
            Step(
                "addons-record",
                plane.name,
                Phase.ADDONS,
                "record the add-ons applied (kube-system/pikube-addons)",
                (record_command(record),),
            )
        )
    steps.sort(key=lambda s: s.phase)  # stable: each node's order within a phase is kept
    return ClusterPlan(tuple(steps), blocked, tuple(all_notes), tuple(wanted_addons))


def _no_control_plane(name: str) -> str:
    return f"{name} (the control plane) cannot be reached: nothing after host preparation runs"


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text
