"""The seed's objects as Kubernetes manifests, the desired state a speaker reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from pikube.lab.network.topology import Topology
from pikube.lab.services.seed_service import manifests, write_manifests


def test_the_seed_objects_describe_the_pool_the_service_and_its_endpoint() -> None:
    objects = manifests(Topology("x"), backend_host="master")
    by_kind: dict[str, list[dict[str, object]]] = {}
    for obj in objects:
        by_kind.setdefault(str(obj["kind"]), []).append(obj)
    (pool,) = by_kind["IPAddressPool"]
    assert pool["spec"] == {"addresses": ["198.51.100.230-198.51.100.250"]}
    (l2,) = by_kind["L2Advertisement"]
    assert l2["spec"] == {"ipAddressPools": ["seed-pool"]}
    (service,) = by_kind["Service"]
    assert service["metadata"] == {
        "name": "nginx",
        "namespace": "default",
        "labels": {"app": "nginx"},
    }
    spec = service["spec"]
    assert isinstance(spec, dict)
    assert spec["type"] == "LoadBalancer"
    assert spec["loadBalancerIP"] == "198.51.100.230"
    assert spec["ports"][0]["port"] == 80
    (slice_,) = by_kind["EndpointSlice"]
    assert slice_["metadata"]["labels"] == {"kubernetes.io/service-name": "nginx"}  # type: ignore[index]
    assert slice_["endpoints"][0]["addresses"] == ["198.51.100.20"]  # type: ignore[index]
    nodes = {str(n["metadata"]["name"]): n for n in by_kind["Node"]}  # type: ignore[index]
    assert set(nodes) == {"master", "node01", "node02", "node03"}
    assert "node.kubernetes.io/exclude-from-external-load-balancers" in str(nodes["master"])
    assert "exclude-from-external-load-balancers" not in str(nodes["node01"])


def test_manifests_are_written_one_file_per_object_and_read_back(tmp_path: Path) -> None:
    objects = manifests(Topology("x"))
    paths = write_manifests(tmp_path / "manifests", objects)
    assert len(paths) == len(objects) == 8
    assert [yaml.safe_load(p.read_text()) for p in paths] == objects
    assert (tmp_path / "manifests" / "service-nginx.yaml") in paths
