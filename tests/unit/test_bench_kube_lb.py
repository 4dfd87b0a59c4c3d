"""The pure parts of `pikube bench kube-lb`."""

from __future__ import annotations

import pytest
import yaml

from pikube.bench import kube_lb
from pikube.errors import InvalidInput
from tests.helpers import run_pikube


def test_impls_are_parsed_in_order_without_repeats() -> None:
    assert kube_lb.parse_impls("metallb, pikube,metallb") == ("metallb", "pikube")
    with pytest.raises(InvalidInput, match="unknown implementation 'keepalived'"):
        kube_lb.parse_impls("pikube,keepalived")
    with pytest.raises(InvalidInput, match="needs at least one"):
        kube_lb.parse_impls(" , ")


def test_nginx_runs_on_master_behind_the_seeds_service() -> None:
    deployment, service = yaml.safe_load_all(kube_lb.nginx_on_master())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "master"}
    assert pod["tolerations"][0]["key"] == "node-role.kubernetes.io/control-plane"
    assert service["metadata"]["name"] == "nginx"
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["selector"] == {"app": "nginx"}


def test_the_speaker_processes_are_told_apart() -> None:
    pikube = kube_lb.INSTALLS["pikube"].speaker_argv
    metallb = kube_lb.INSTALLS["metallb"].speaker_argv
    assert pikube(("python3", "-m", "pikube", "lb", "speaker", "--source", "kube"))
    assert not pikube(("python3", "-m", "pikube", "lb", "controller"))
    assert metallb(("/speaker", "--port=7472"))
    assert not metallb(("/controller", "--port=7472"))


def test_the_rendered_pikube_manifest_is_installed() -> None:
    kinds = {d["kind"] for d in yaml.safe_load_all(kube_lb.pikube_manifest()) if d}
    assert {"DaemonSet", "Deployment", "CustomResourceDefinition"} <= kinds


def test_an_unknown_implementation_is_a_one_line_error_before_any_lab() -> None:
    result = run_pikube("bench", "kube-lb", "--impl", "bogus")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "pikube: error: --impl: unknown implementation 'bogus' (choose from metallb, pikube)"
    )
