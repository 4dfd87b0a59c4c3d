"""The control plane's API in one read: what the plan decides from and what the run finds
already there (pure; no cluster)."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, cast

from pikube.cluster import addons, apiread, ssh
from pikube.cluster.bootstrap import run_cluster
from pikube.cluster.session import Session
from pikube.cluster.spec import ClusterSpec
from pikube.cluster.stages import ClusterPlan


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


class _Conn:
    """A node that answers the run's reads: every node Ready, every rollout done, the Service."""

    def __init__(self, nodes: list[str], service: dict[str, Any]) -> None:
        self.nodes, self.service, self.commands = nodes, service, list[str]()

    async def run(self, command: str, **_kw: object) -> ssh.CommandResult:
        self.commands.append(command)
        out = ""
        if "get nodes" in command:
            out = json.dumps({"items": [_node(n, True) for n in self.nodes]})
        elif "get service" in command:
            out = json.dumps(self.service)
        return ssh.CommandResult(command, 0, out, "")


class _Nginx(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def test_nothing_to_do_and_a_ready_cluster_wait_for_nothing_but_nginxs_answer(
    spec: ClusterSpec,
) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Nginx)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        service = {**SERVICE, "spec": {"ports": [{"port": server.server_port}]}}
        service["status"] = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
        names = [n.name for n in spec.nodes]
        items = [_daemonset(4, 4), _deployment(1), service]
        view = apiread.parse(_output([_node(n, True) for n in names], items))
        runs = {}
        for observed in (view, None):
            session = Session(spec)
            conns = {n: _Conn(names, service) for n in names}
            session.connections = cast(dict[str, ssh.Connection], conns)
            report = asyncio.run(run_cluster(session, ClusterPlan(), observed=observed))
            assert report.ok, report
            assert report.url == f"http://127.0.0.1:{server.server_port}/"
            runs[observed is None] = [c.split(" ", 3)[3] for c in conns["master"].commands]
    finally:
        server.shutdown()
    assert runs[False] == []  # the view read for the plan still holds: only the HTTP check
    assert runs[True] == [  # without it: every wait looks once
        "get nodes -o json",
        "rollout status -n kube-flannel daemonset/kube-flannel-ds --timeout=10s",
        "rollout status -n default deployment/nginx --timeout=10s",
        "-n default get service nginx -o json",
    ]
