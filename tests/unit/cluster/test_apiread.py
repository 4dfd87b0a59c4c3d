"""The control plane's API in one read: what the plan decides from and what the run finds
already there (pure; no cluster)."""

from __future__ import annotations

import json
from typing import Any

from pikube.cluster import addons, apiread
from pikube.cluster.spec import ClusterSpec


def _node(name: str, ready: bool) -> dict[str, Any]:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {"metadata": {"name": name}, "status": {"conditions": [condition]}}


def _daemonset(desired: int, available: int, generation: int = 1) -> dict[str, Any]:
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "kube-flannel-ds", "namespace": "kube-flannel",
                     "generation": generation},
        "status": {"observedGeneration": 1, "desiredNumberScheduled": desired,
                   "updatedNumberScheduled": desired, "numberAvailable": available},
    }  # fmt: skip


def _deployment(available: int, replicas: int = 1, total: int = 1) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "generation": 2},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 2, "replicas": total, "updatedReplicas": replicas,
                   "availableReplicas": available},
    }  # fmt: skip


SERVICE = {
    "kind": "Service",
    "metadata": {"name": "nginx", "namespace": "default"},
    "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.230"}]}},
}
RECORD = {
    "kind": "ConfigMap",
    "metadata": {"name": "pikube-addons", "namespace": "kube-system"},
    "data": {"flannel": "aa", "demo-app": "bb"},
}


def _output(nodes: list[dict[str, Any]] | None, items: list[dict[str, Any]]) -> str:
    listed = json.dumps({"kind": "List", "items": items}) if items else ""
    nodes_text = json.dumps({"kind": "NodeList", "items": nodes}) if nodes is not None else ""
    return f"@@nodes\n{nodes_text}\n\n@@objects\n{listed}\n\n@@end\n"


def test_one_read_gives_nodes_objects_the_record_and_what_is_rolled_out() -> None:
    items = [_daemonset(4, 4), _deployment(1), SERVICE, RECORD]
    view = apiread.parse(_output([_node("master", True), _node("node01", True)], items))
    assert view.api.reachable
    assert set(view.api.nodes) == {"master", "node01"}
    assert view.recorded == {"flannel": "aa", "demo-app": "bb"}
    assert view.existing == {"daemonset/kube-flannel-ds", "deployment/nginx", "service/nginx"}
    assert view.rolled_out == {apiread.FLANNEL, apiread.DEMO}
    assert view.service == SERVICE
    assert view.settled(["master", "node01"], demo_app=True)
    assert not view.settled(["master", "node01", "node02"], demo_app=True)  # no node02 yet


def test_a_single_object_is_printed_as_itself() -> None:
    view = apiread.parse(_output([], []).replace("@@objects\n", "@@objects\n" +
                                                  json.dumps(_daemonset(1, 1))))  # fmt: skip
    assert view.existing == {"daemonset/kube-flannel-ds"}


def test_an_api_that_does_not_answer_is_unreachable_with_nothing_in_it() -> None:
    view = apiread.parse(_output(None, [RECORD]))
    assert not view.api.reachable
    assert view.recorded == {}
    assert view.existing == frozenset()
    assert not view.settled([], demo_app=False)
    assert not apiread.parse("").api.reachable


def test_rolled_out_as_kubectl_rollout_status_judges_it() -> None:
    assert apiread.rolled_out(_daemonset(4, 4))
    assert not apiread.rolled_out(_daemonset(4, 3))  # a pod not available
    assert not apiread.rolled_out(_daemonset(4, 4, generation=2))  # not observed yet
    assert apiread.rolled_out(_deployment(1))
    assert not apiread.rolled_out(_deployment(0))
    assert not apiread.rolled_out(_deployment(2, replicas=2, total=3))  # an old pod left
    stuck = _deployment(1)
    stuck["status"]["conditions"] = [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]
    assert not apiread.rolled_out(stuck)
    assert not apiread.rolled_out({"kind": "Service"})


def test_not_settled_until_nginx_is_rolled_out_when_the_spec_has_it() -> None:
    items = [_daemonset(1, 1), _deployment(0), SERVICE]
    view = apiread.parse(_output([_node("master", True)], items))
    assert view.settled(["master"], demo_app=False)
    assert not view.settled(["master"], demo_app=True)
    assert not apiread.parse(_output([_node("master", False)], items)).settled(["master"], False)


def test_the_read_asks_for_every_wanted_object_and_the_record(spec: ClusterSpec) -> None:
    wanted = [addons.Addon("demo-app", addons.demo_manifest(spec), "")]
    text = apiread.script_input(wanted)
    assert text.startswith(wanted[0].manifest)
    assert addons.manifest_objects(text) == (
        "deployment/nginx", "service/nginx", "configmap/pikube-addons"
    )  # fmt: skip
    assert "get -f" in apiread.SCRIPT
    assert "get nodes" in apiread.SCRIPT
