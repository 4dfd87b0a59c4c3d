"""pikube's install manifests: the Kustomize base deploy/ and the one file rendered from it
(package data data/deploy/pikube.yaml) hold the same objects, and the objects keep the
promises docs/install.md makes (MetalLB's namespace, least privilege, the speaker's
capabilities, two controller replicas with the Lease)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from pikube.lab.kubernetes import gobuild

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
CRDS = ROOT / "src" / "pikube" / "data" / "crds"

Key = tuple[str, str, str]


def _docs(text: str) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(text):
        if doc:
            yield doc


def _by_key(docs: Iterator[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    result: dict[Key, dict[str, Any]] = {}
    for doc in docs:
        meta = doc["metadata"]
        key = (doc["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in result, f"{key} twice"
        result[key] = doc
    return result


def rendered() -> dict[Key, dict[str, Any]]:
    text = resources.files("pikube").joinpath("data/deploy/pikube.yaml").read_text()
    return _by_key(_docs(text))


def base() -> dict[Key, dict[str, Any]]:
    """What the base holds: its resources, as they are (it has no transformers)."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert set(kustomization) == {"apiVersion", "kind", "resources"}, "a transformer was added"

    def docs() -> Iterator[dict[str, Any]]:
        for name in kustomization["resources"]:
            yield from _docs((DEPLOY / name).read_text())

    return _by_key(docs())


def test_the_base_uses_the_package_crds_unchanged() -> None:
    package = {p.name: p.read_bytes() for p in CRDS.glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (DEPLOY / "crds").glob("*.yaml")}
    assert copies == package, "run script/render-deploy"


def test_the_rendered_file_holds_exactly_the_base() -> None:
    assert rendered() == base(), "run script/render-deploy"


def test_kubectl_kustomize_renders_the_shipped_file() -> None:
    comp = gobuild.lookup("kubernetes")
    kubectl = gobuild.entry_dir(comp) / "bin" / "kubectl"
    if not kubectl.exists():
        pytest.skip("kubectl v1.31.5 is not built here (pikube lab up --kubernetes builds it)")
    out = subprocess.run(
        [str(kubectl), "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout
    assert _by_key(_docs(out)) == rendered(), "run script/render-deploy"


def test_everything_namespaced_lives_in_metallb_system() -> None:
    namespaces = {ns for _, ns, _ in rendered() if ns}
    assert namespaces == {"metallb-system"}
    assert ("Namespace", "", "metallb-system") in rendered()


def _rules(kind: str, name: str) -> list[dict[str, Any]]:
    for (k, _, n), doc in rendered().items():
        if (k, n) == (kind, name):
            rules: list[dict[str, Any]] = doc["rules"]
            return rules
    raise AssertionError(f"no {kind} {name}")


def test_rbac_has_no_wildcards_and_no_write_beyond_what_the_daemons_do() -> None:
    roles = [d for (k, _, _), d in rendered().items() if k in ("Role", "ClusterRole")]
    assert len(roles) == 4
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"]
            assert "*" not in rule["resources"]
            assert not {"patch", "deletecollection", "escalate", "bind"} & set(rule["verbs"])
    cluster_writes = {
        (res, verb)
        for name in ("pikube:controller", "pikube:speaker")
        for rule in _rules("ClusterRole", name)
        for res in rule["resources"]
        for verb in rule["verbs"]
        if verb not in ("get", "list", "watch")
    }
    assert cluster_writes == {
        ("services/status", "update"),
        ("events", "create"),
        ("validatingwebhookconfigurations", "update"),
    }
    secret_reads = [r for r in _rules("Role", "pikube-speaker") if "secrets" in r["resources"]]
    assert secret_reads == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["memberlist"],
         "verbs": ["get"]}
    ]  # fmt: skip


def _pod_spec(kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = rendered()[(kind, "metallb-system", name)]["spec"]["template"]["spec"]
    return spec


def test_speaker_has_host_network_and_only_the_capabilities_it_uses() -> None:
    pod = _pod_spec("DaemonSet", "pikube-speaker")
    assert pod["hostNetwork"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW", "SYS_NICE"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
            "effect": "NoSchedule"} in pod["tolerations"]  # fmt: skip
    assert "--source=kube" in container["args"]


def test_controller_runs_two_non_root_replicas_with_the_lease() -> None:
    deployment = rendered()[("Deployment", "metallb-system", "pikube-controller")]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert "--leader-elect" in container["args"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_webhook_reaches_the_controllers_port_and_fails_closed() -> None:
    objects = rendered()
    config = objects[("ValidatingWebhookConfiguration", "", "metallb-webhook-configuration")]
    service = objects[("Service", "metallb-system", "metallb-webhook-service")]
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["clientConfig"]["service"]["name"] == service["metadata"]["name"]
    (container,) = _pod_spec("Deployment", "pikube-controller")["containers"]
    assert "--webhook-port=9443" in container["args"]
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    kinds = {r for rule in hook["rules"] for r in rule["resources"]}
    assert "ipaddresspools" in kinds
    assert "bfdprofiles" in kinds


def test_every_container_has_requests_and_a_memory_limit() -> None:
    for kind, name in (("Deployment", "pikube-controller"), ("DaemonSet", "pikube-speaker")):
        for container in _pod_spec(kind, name)["containers"]:
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}
            assert "memory" in container["resources"]["limits"]
