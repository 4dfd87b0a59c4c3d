"""Add-ons: flannel's manifest pinned and edited in one field, the pool, nginx, the record."""

from __future__ import annotations

import json

import pytest
import yaml

from pikube.cluster import addons
from pikube.cluster.spec import ClusterSpec, LoadBalancerImplementation
from pikube.errors import InvalidInput
from tests.unit.cluster.test_stages import FLANNEL


def _with(spec: ClusterSpec, **flannel: object) -> ClusterSpec:
    return spec.model_copy(update={"flannel": spec.flannel.model_copy(update=flannel)})


def _networking(spec: ClusterSpec, pod_cidr: str) -> ClusterSpec:
    return spec.model_copy(
        update={"networking": spec.networking.model_copy(update={"pod_cidr": pod_cidr})}
    )


def test_flannel_is_refused_unless_its_sha256_is_pinned(spec: ClusterSpec) -> None:
    digest = addons.sha256(FLANNEL)
    with pytest.raises(InvalidInput, match=f"flannel.sha256: not set; .* has sha256 {digest}"):
        addons.flannel_addon(spec, FLANNEL)
    with pytest.raises(InvalidInput, match=f"flannel.sha256: .* has sha256 {digest}, the spec"):
        addons.flannel_addon(_with(spec, sha256="0" * 64), FLANNEL)
    assert addons.flannel_addon(_with(spec, sha256=digest), FLANNEL).manifest == FLANNEL


def test_only_net_conf_network_changes_for_another_pod_cidr(spec: ClusterSpec) -> None:
    spec = _networking(_with(spec, sha256=addons.sha256(FLANNEL)), "10.32.0.0/16")
    addon = addons.flannel_addon(spec, FLANNEL)
    assert addon.diff == ('-      "Network": "10.244.0.0/16",\n+      "Network": "10.32.0.0/16",\n')
    assert addon.manifest == FLANNEL.replace("10.244.0.0/16", "10.32.0.0/16")
    config = next(yaml.safe_load_all(addon.manifest))
    assert json.loads(config["data"]["net-conf.json"])["Network"] == "10.32.0.0/16"
    assert "net-conf.json Network set to networking.pod_cidr" in addon.summary


def test_a_manifest_that_is_not_flannels_is_refused() -> None:
    with pytest.raises(InvalidInput, match='0 "Network" fields'):
        addons.flannel_with_pod_cidr("kind: ConfigMap\n", "10.32.0.0/16")


def test_the_pool_and_advertisement_are_the_specs(spec: ClusterSpec) -> None:
    pool, advert = yaml.safe_load_all(addons.pool_manifest(spec))
    assert pool["kind"] == "IPAddressPool"
    assert pool["spec"]["addresses"] == ["192.168.68.230-192.168.68.250"]
    assert advert["kind"] == "L2Advertisement"
    assert advert["spec"]["ipAddressPools"] == [pool["metadata"]["name"]]


def test_nginx_is_a_load_balancer_service(spec: ClusterSpec) -> None:
    deployment, service = yaml.safe_load_all(addons.demo_manifest(spec))
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert service["spec"]["type"] == "LoadBalancer"
    assert addons.Addon("demo-app", addons.demo_manifest(spec), "").objects == (
        "deployment/nginx",
        "service/nginx",
    )


def test_the_load_balancer_comes_before_its_pool_and_nginx(spec: ClusterSpec) -> None:
    spec = _with(spec, sha256=addons.sha256(FLANNEL))
    lb = "kind: Namespace\napiVersion: v1\nmetadata: {name: metallb-system}\n"
    names = [a.name for a in addons.addons(spec, FLANNEL, lb)]
    assert names == ["flannel", "load-balancer", "pool", "demo-app"]
    without = [a.name for a in addons.addons(spec, FLANNEL, None)]
    assert without == ["flannel", "demo-app"]
    assert addons.missing_load_balancer(spec, None) is not None
    assert addons.missing_load_balancer(spec, lb) is None


def test_kubectl_names_are_read_as_kind_and_name() -> None:
    names = addons.parse_object_names(
        "daemonset.apps/kube-flannel-ds\nnamespace/kube-flannel\n"
        "ipaddresspool.metallb.io/first-pool\nerror: something\n"
    )
    assert names == {
        "daemonset/kube-flannel-ds",
        "namespace/kube-flannel",
        "ipaddresspool/first-pool",
    }


def test_the_record_command_has_every_digest() -> None:
    command = addons.record_command({"flannel": "aa", "demo-app": "bb"})
    assert "--from-literal=demo-app=bb --from-literal=flannel=aa" in command


METALLB = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: metallb-system\n"


def _metallb(spec: ClusterSpec, **lb: object) -> ClusterSpec:
    assert spec.load_balancer is not None
    update = {"implementation": LoadBalancerImplementation.METALLB, **lb}
    return spec.model_copy(update={"load_balancer": spec.load_balancer.model_copy(update=update)})


def test_metallb_is_its_own_manifest_pinned_by_its_sha256(spec: ClusterSpec) -> None:
    spec = _with(spec, sha256=addons.sha256(FLANNEL))
    default = _metallb(spec)
    assert addons.metallb_source(default).endswith("/v0.14.9/config/manifests/metallb-native.yaml")
    pins = addons.METALLB_SHA256
    with pytest.raises(InvalidInput, match=rf"load_balancer\.sha256: .* the spec pins {pins}"):
        addons.addons(default, FLANNEL, None, METALLB)
    with pytest.raises(
        InvalidInput, match=r"load_balancer\.sha256: not set; the manifest at m\.yaml"
    ):
        addons.addons(_metallb(spec, manifest="m.yaml"), FLANNEL, None, METALLB)
    pinned = _metallb(spec, manifest="m.yaml", sha256=addons.sha256(METALLB))
    wanted = addons.addons(pinned, FLANNEL, "pikube's manifest: not used", METALLB)
    assert [a.name for a in wanted] == ["flannel", "load-balancer", "pool", "demo-app"]
    assert wanted[1].manifest == METALLB
    assert wanted[1].summary == "MetalLB from m.yaml (unmodified)"
    assert addons.missing_load_balancer(pinned, None) is None
    assert not addons.uses_metallb(spec)
