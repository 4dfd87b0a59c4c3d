"""The cluster stages: who is initialised, who joins, what is removed, which add-ons are
applied, from kubeadm's traces and the API (pure; no hosts)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pikube.cluster import addons, kubeadm, stages
from pikube.cluster.kubeadm import ApiFacts, KubeFacts, NodeStatus
from pikube.cluster.spec import ClusterSpec, LoadBalancerImplementation
from pikube.cluster.stages import Stdin

FLANNEL = """\
kind: ConfigMap
apiVersion: v1
metadata:
  name: kube-flannel-cfg
  namespace: kube-flannel
data:
  net-conf.json: |
    {
      "Network": "10.244.0.0/16",
      "EnableNFTables": false,
      "Backend": {
        "Type": "vxlan"
      }
    }
---
kind: DaemonSet
apiVersion: apps/v1
metadata:
  name: kube-flannel-ds
  namespace: kube-flannel
"""

FRESH = KubeFacts()
PLANE = KubeFacts(
    frozenset({"admin-conf", "apiserver-manifest", "kubelet-config", "kubelet-conf", "ca-crt"})
)
JOINED = KubeFacts(frozenset({"kubelet-conf", "kubelet-config", "ca-crt", "cni-conf"}))
ALL = ("master", "node01", "node02", "node03")


@pytest.fixture
def pinned(spec: ClusterSpec) -> ClusterSpec:
    return spec.model_copy(
        update={"flannel": spec.flannel.model_copy(update={"sha256": addons.sha256(FLANNEL)})}
    )


def _wanted(spec: ClusterSpec) -> list[addons.Addon]:
    return addons.addons(spec, FLANNEL, None)


def _ready(*names: str) -> dict[str, NodeStatus]:
    return {n: NodeStatus(True, n == "master") for n in names}


def _built(
    spec: ClusterSpec,
) -> tuple[dict[str, KubeFacts], ApiFacts, dict[str, str], frozenset[str]]:
    """A cluster the builder finished: every node a member, every add-on recorded."""
    master = KubeFacts(PLANE.present, kubeadm.init_config(spec))
    kube = {"master": master, **dict.fromkeys(ALL[1:], JOINED)}
    wanted = _wanted(spec)
    recorded = {a.name: a.digest for a in wanted}
    existing = frozenset(o for a in wanted for o in a.objects)
    return kube, ApiFacts(True, _ready(*ALL)), recorded, existing


def _plan(spec: ClusterSpec, kube: dict[str, KubeFacts], api: ApiFacts | None = None,
          errors: dict[str, str] | None = None, recorded: dict[str, str] | None = None,
          existing: frozenset[str] = frozenset()) -> stages.ClusterPlan:  # fmt: skip
    return stages.cluster_plan(
        spec, kube, api or ApiFacts(), errors or {}, _wanted(spec), recorded or {}, existing
    )


def _ids(plan: stages.ClusterPlan) -> list[str]:
    return [f"{s.node}/{s.id}" for s in plan.steps]


def test_fresh_nodes_get_init_flannel_joins_and_nginx_in_phases(pinned: ClusterSpec) -> None:
    plan = _plan(pinned, dict.fromkeys(ALL, FRESH))
    assert _ids(plan) == [
        "master/kubeadm-config",
        "master/images",
        "master/init",
        "node01/images",
        "node02/images",
        "node03/images",
        "master/addon-flannel",
        "master/token",
        "node01/join",
        "node02/join",
        "node03/join",
        "master/addon-demo-app",
        "master/addons-record",
    ]
    assert [s.phase for s in plan.steps] == sorted(s.phase for s in plan.steps)
    init = next(s for s in plan.steps if s.id == "init")
    assert init.commands == ("kubeadm init --config /etc/kubernetes/pikube/kubeadm.yaml "
                             "--skip-token-print",)  # fmt: skip
    join = next(s for s in plan.steps if s.id == "join")
    assert join.stdin is Stdin.JOIN_CONFIG
    assert "token" not in join.commands[0].replace("--token", "")  # no secret in a command


def test_a_built_cluster_has_nothing_to_do(pinned: ClusterSpec) -> None:
    kube, api, recorded, existing = _built(pinned)
    plan = _plan(pinned, kube, api, recorded=recorded, existing=existing)
    assert plan.steps == ()
    assert not plan.blocked


def test_the_config_file_diff_is_shown_and_kept_once_written(pinned: ClusterSpec) -> None:
    kube, api, recorded, existing = _built(pinned)
    config = kubeadm.init_config(pinned)
    kube["master"] = KubeFacts(PLANE.present, config)
    assert _plan(pinned, kube, api, recorded=recorded, existing=existing).steps == ()
    kube["master"] = KubeFacts(PLANE.present, config.replace("iptables", "ipvs"))
    plan = _plan(pinned, kube, api, recorded=recorded, existing=existing)
    assert _ids(plan) == ["master/kubeadm-config"]
    assert plan.steps[0].diff is not None
    assert "-mode: ipvs\n+mode: iptables" in plan.steps[0].diff
    assert "keeps its configuration" in plan.steps[0].summary


def test_a_worker_added_to_the_spec_joins(pinned: ClusterSpec) -> None:
    kube, api, recorded, existing = _built(pinned)
    kube["node03"] = FRESH
    api = ApiFacts(True, _ready(*ALL[:3]))
    plan = _plan(pinned, kube, api, recorded=recorded, existing=existing)
    assert _ids(plan) == ["node03/images", "master/token", "node03/join"]


def test_a_worker_of_an_old_cluster_is_reset_then_joins(pinned: ClusterSpec) -> None:
    """kubelet.conf from a cluster rebuilt since (it is no Node of this one)."""
    kube, api, recorded, existing = _built(pinned)
    api = ApiFacts(True, _ready(*ALL[:3]))
    plan = _plan(pinned, kube, api, recorded=recorded, existing=existing)
    assert _ids(plan) == ["node03/images", "master/token", "node03/reset", "node03/join"]
    reset = next(s for s in plan.steps if s.id == "reset")
    assert reset.commands[0].startswith("kubeadm reset --force")
    assert any("/etc/cni/net.d" in c for c in reset.commands)
    assert any("ip link delete" in c for c in reset.commands)
    assert any(
        "$t-save | grep -v -e KUBE- -e FLANNEL -e CNI- | $t-restore" in c for c in reset.commands
    )


def test_a_worker_removed_from_the_spec_is_drained_and_deleted(pinned: ClusterSpec) -> None:
    kube, api, recorded, existing = _built(pinned)
    api = ApiFacts(True, {**_ready(*ALL), "node04": NodeStatus(True, False)})
    plan = _plan(pinned, kube, api, recorded=recorded, existing=existing)
    assert _ids(plan) == ["master/remove"]
    assert plan.steps[0].commands[0].startswith(f"{stages.KUBECTL} drain node04 ")
    assert plan.steps[0].commands[1] == f"{stages.KUBECTL} delete node node04"


def test_an_unreachable_worker_is_left_for_the_next_apply(pinned: ClusterSpec) -> None:
    kube = dict.fromkeys(ALL, FRESH)
    del kube["node02"]
    plan = _plan(pinned, kube, errors={"node02": "node02: cannot connect"})
    assert "node02/join" not in _ids(plan)
    assert "node01/join" in _ids(plan)
    assert plan.blocked == {"node02": "node02: cannot connect"}


def test_an_unreachable_control_plane_stops_every_stage(pinned: ClusterSpec) -> None:
    kube = dict.fromkeys(ALL[1:], FRESH)
    plan = _plan(pinned, kube, errors={"master": "master: cannot connect"})
    assert plan.steps == ()
    assert "master" in plan.blocked


def test_an_init_cut_short_says_what_to_run(pinned: ClusterSpec) -> None:
    kube = dict.fromkeys(ALL, FRESH)
    kube["master"] = KubeFacts(frozenset({"apiserver-manifest", "kubelet-config"}))
    plan = _plan(pinned, kube)
    assert plan.steps == ()
    assert "`pikube cluster reset --node master --yes`, then apply again" in plan.blocked["master"]


def test_a_kubeadm_still_running_is_waited_for(pinned: ClusterSpec) -> None:
    kube = dict.fromkeys(ALL, FRESH)
    kube["node01"] = KubeFacts(frozenset({"kubeadm-running", "kubelet-config"}))
    plan = _plan(pinned, kube)
    assert "node01/join" not in _ids(plan)
    assert "apply again" in plan.blocked["node01"]


def test_a_join_cut_short_is_reset_first(pinned: ClusterSpec) -> None:
    kube = dict.fromkeys(ALL, FRESH)
    kube["node01"] = KubeFacts(frozenset({"kubelet-config"}))  # no kubelet.conf yet
    plan = _plan(pinned, kube)
    assert _ids(plan).index("node01/reset") < _ids(plan).index("node01/join")


def test_an_addon_changed_or_gone_is_applied_again_with_what_follows(pinned: ClusterSpec) -> None:
    kube, api, recorded, existing = _built(pinned)
    plan = _plan(pinned, kube, api, recorded=recorded, existing=existing - {"deployment/nginx"})
    assert _ids(plan) == ["master/addon-demo-app", "master/addons-record"]
    plan = _plan(pinned, kube, api, recorded={**recorded, "flannel": "old"}, existing=existing)
    assert _ids(plan) == [
        "master/addon-flannel",
        "master/addon-demo-app",
        "master/addons-record",
    ]


def test_the_plan_as_json_names_stdin_not_its_content(pinned: ClusterSpec) -> None:
    plan = _plan(pinned, dict.fromkeys(ALL, FRESH))
    text = json.dumps(plan.to_json())
    assert '"stdin": "join-config"' in text
    assert "Network" not in text  # manifests are not in the plan, their diffs are


def test_redaction() -> None:
    assert (
        stages.redact("token abcdef.0123 failed", ["abcdef.0123", ""]) == "token <redacted> failed"
    )


def test_the_service_is_checked_at_its_load_balancer_ip_or_node_port() -> None:
    from pikube.cluster.bootstrap import service_url  # noqa: PLC0415

    service: dict[str, Any] = {"spec": {"ports": [{"port": 80, "nodePort": 31234}]}}
    assert service_url(service, ["198.51.100.21"], load_balancer=False) == (
        "http://198.51.100.21:31234/"
    )
    assert service_url(service, ["198.51.100.21"], load_balancer=True) is None  # no IP yet
    service["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.230"}]}}
    assert service_url(service, [], load_balancer=True) == "http://198.51.100.230:80/"


def test_the_pool_is_applied_again_until_the_load_balancers_webhook_accepts_it(
    pinned: ClusterSpec,
) -> None:
    lb = "kind: Namespace\napiVersion: v1\nmetadata: {name: metallb-system}\n"
    wanted = addons.addons(pinned, FLANNEL, lb)
    plan = stages.cluster_plan(pinned, dict.fromkeys(ALL, FRESH), ApiFacts(), {}, wanted, {},
                               frozenset())  # fmt: skip
    commands = {s.id: s.commands for s in plan.steps if s.id.startswith("addon-")}
    assert "until" not in commands["addon-load-balancer"][0]
    (pool,) = commands["addon-pool"]
    assert pool.startswith('f=$(mktemp) && cat >"$f"')
    assert "until " in pool
    assert f"-ge {stages.WEBHOOK_RETRIES}" in pool
    assert 'rm -f "$f"' in pool
    assert "until" not in commands["addon-demo-app"][0]  # nginx is not the webhook's business


def test_with_metallb_its_manifest_is_applied_then_the_pool_until_its_webhook_accepts(
    pinned: ClusterSpec,
) -> None:
    assert pinned.load_balancer is not None
    lb = pinned.load_balancer.model_copy(
        update={"implementation": LoadBalancerImplementation.METALLB}
    )
    spec = pinned.model_copy(update={"load_balancer": lb})
    metallb = "kind: Namespace\napiVersion: v1\nmetadata: {name: metallb-system}\n"
    spec = spec.model_copy(
        update={"load_balancer": lb.model_copy(update={"sha256": addons.sha256(metallb)})}
    )
    wanted = addons.addons(spec, FLANNEL, None, metallb)
    plan = stages.cluster_plan(spec, dict.fromkeys(ALL, FRESH), ApiFacts(), {}, wanted, {},
                               frozenset())  # fmt: skip
    steps = {s.id: s for s in plan.steps if s.id.startswith("addon-")}
    assert list(steps) == ["addon-flannel", "addon-load-balancer", "addon-pool", "addon-demo-app"]
    assert steps["addon-load-balancer"].summary.startswith("kubectl apply MetalLB from https://")
    assert steps["addon-load-balancer"].addon == "load-balancer"
    assert "until " in steps["addon-pool"].commands[0]
