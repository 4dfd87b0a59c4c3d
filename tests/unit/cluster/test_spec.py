"""The cluster spec: the seed's is valid, bad input names the field, the schema is published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pikube.cluster.spec import (
    BOOTSTRAP_ONLY_NOTE,
    NOT_YET_USED,
    NOT_YET_USED_COMMENT,
    SEED_SPEC,
    Role,
    json_schema,
    load_spec,
    not_yet_used,
    parse_spec,
    without_effect,
)
from pikube.errors import PikubeError


def _seed() -> dict[str, object]:
    data = yaml.safe_load(SEED_SPEC)
    assert isinstance(data, dict)
    return data


def test_the_seed_spec_describes_the_seed_cluster() -> None:
    spec = parse_spec(_seed(), "cluster.yaml")
    assert spec.cluster.name == "kubeadm-orenge-cloud-playground"
    assert [(n.name, n.role) for n in spec.nodes] == [
        ("master", Role.CONTROL_PLANE),
        ("node01", Role.WORKER),
        ("node02", Role.WORKER),
        ("node03", Role.WORKER),
    ]
    assert spec.versions.kubernetes == "1.31.5"
    assert spec.versions.flannel == "v0.26.3"
    assert spec.networking.pod_cidr == "10.244.0.0/16"
    assert spec.load_balancer is not None
    assert spec.load_balancer.pool == "192.168.68.230-192.168.68.250"
    assert spec.packages.repository(spec.versions) == "https://pkgs.k8s.io/core:/stable:/v1.31/deb/"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["nodes"][1].update(role="boss"), "nodes[1].role: Input should be"),
        (lambda d: d["nodes"][2].update(name="Node_2"), "nodes[2].name: must be a lower-case"),
        (lambda d: d["nodes"][3].update(address="192.168.68.201"), "repeats the address"),
        (lambda d: d["versions"].update(kubernetes="1.31"), "versions.kubernetes: must look like"),
        (lambda d: d["ssh"].update(user=5), "ssh.user: Input should be a valid string"),
        (lambda d: d["load_balancer"].update(pool="192.168.68.250-192.168.68.230"), "pool"),
        (lambda d: d.update(swapp="disable"), "swapp: Extra inputs are not permitted"),
        (lambda d: d["nodes"][0].update(role="worker"), "exactly one node with role control-plane"),
        (lambda d: d["ssh"].update(port=0), "ssh.port: Input should be greater than"),
    ],
)
def test_an_invalid_spec_names_the_file_and_the_field(edit: object, message: str) -> None:
    data = _seed()
    assert callable(edit)
    edit(data)
    with pytest.raises(PikubeError) as caught:
        parse_spec(data, "cluster.yaml")
    assert caught.value.message.startswith("cluster.yaml: ")
    assert message in caught.value.message


def test_bad_yaml_and_missing_files_are_one_line_errors(tmp_path: Path) -> None:
    broken = tmp_path / "cluster.yaml"
    broken.write_text("nodes: [\n")
    with pytest.raises(PikubeError, match=r"cluster.yaml: line \d+: not valid YAML"):
        load_spec(broken)
    with pytest.raises(PikubeError, match="cannot read the cluster spec"):
        load_spec(tmp_path / "missing.yaml")


def test_the_json_schema_lists_the_fields_and_forbids_others() -> None:
    schema = json_schema()
    assert {"apiVersion", "cluster", "nodes", "versions", "swap"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert "Node" in schema["$defs"]


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        (
            "networking",
            "pod_cidr",
            "10.96.0.0/16",
            "networking.pod_cidr 10.96.0.0/16 overlaps networking.service_cidr 10.96.0.0/12",
        ),
        (
            "networking",
            "pod_cidr",
            "192.168.0.0/16",
            "networking.pod_cidr 192.168.0.0/16 overlaps load_balancer.pool "
            "192.168.68.230-192.168.68.250",
        ),
        (
            "networking",
            "pod_cidr",
            "192.168.68.192/28",
            "networking.pod_cidr 192.168.68.192/28 contains nodes[0].address 192.168.68.200 "
            "(master; and 3 more nodes): it must not overlap the nodes' LAN",
        ),
        (
            "networking",
            "service_cidr",
            "192.168.68.202/31",
            "networking.service_cidr 192.168.68.202/31 contains nodes[2].address "
            "192.168.68.202 (node02; and 1 more node)",
        ),
        (
            "networking",
            "service_cidr",
            "192.168.68.240/28",
            "networking.service_cidr 192.168.68.240/28 overlaps load_balancer.pool",
        ),
        (
            "load_balancer",
            "pool",
            "10.244.1.0/24",
            "networking.pod_cidr 10.244.0.0/16 overlaps load_balancer.pool 10.244.1.0/24",
        ),
        (
            "load_balancer",
            "pool",
            "10.100.0.1-10.100.0.9",
            "networking.service_cidr 10.96.0.0/12 overlaps load_balancer.pool "
            "10.100.0.1-10.100.0.9",
        ),
        (
            "load_balancer",
            "pool",
            "192.168.68.200-192.168.68.210",
            "load_balancer.pool 192.168.68.200-192.168.68.210 contains nodes[0].address",
        ),
    ],
)
def test_overlapping_networks_are_refused_naming_both_fields(
    section: str, field: str, value: str, message: str
) -> None:
    data = _seed()
    section_data = data[section]
    assert isinstance(section_data, dict)
    section_data[field] = value
    with pytest.raises(PikubeError) as caught:
        parse_spec(data, "cluster.yaml")
    assert caught.value.message.startswith(f"cluster.yaml: {message}")


def test_nodes_named_by_dns_and_an_ipv6_pool_are_not_overlaps() -> None:
    data = _seed()
    nodes = data["nodes"]
    assert isinstance(nodes, list)
    nodes[0]["address"] = "master.local"
    data["load_balancer"] = {"pool": "2001:db8:68::230-2001:db8:68::250"}
    assert parse_spec(data, "cluster.yaml").nodes[0].address == "master.local"


def test_fields_not_yet_used_are_marked_in_the_commented_spec_and_the_schema() -> None:
    """One list (NOT_YET_USED): delete a field from it when the builder reads it, and its
    `# not yet used` comment in the commented spec; this test keeps the two equal. Since the
    builder runs kubeadm, flannel, the load balancer and nginx, the list is empty."""
    assert NOT_YET_USED == {}
    marked = {
        line.split(":")[0].strip()
        for line in SEED_SPEC.splitlines()
        if NOT_YET_USED_COMMENT in line and not line.startswith("#")
    }
    assert marked == set()
    assert "Not yet used" not in json.dumps(json_schema())


def test_plan_names_no_unused_field() -> None:
    assert not_yet_used(parse_spec(_seed(), "cluster.yaml")) == []


def test_metallb_is_accepted_and_its_pin_must_be_a_sha256() -> None:
    data = _seed()
    lb = data["load_balancer"]
    assert isinstance(lb, dict)
    lb["implementation"] = "metallb"
    parsed = parse_spec(data, "cluster.yaml").load_balancer
    assert parsed is not None
    assert parsed.implementation.value == "metallb"
    lb["sha256"] = "abc"
    with pytest.raises(PikubeError, match=r"cluster.yaml: load_balancer.sha256: must be 64 hex"):
        parse_spec(data, "cluster.yaml")


def test_a_flannel_pin_must_be_a_sha256() -> None:
    data = _seed()
    data["flannel"] = {"manifest": "kube-flannel.yml", "sha256": "abc"}
    with pytest.raises(PikubeError, match=r"cluster.yaml: flannel.sha256: must be 64 hex"):
        parse_spec(data, "cluster.yaml")


def test_the_seed_spec_has_no_field_without_effect() -> None:
    assert without_effect(parse_spec(_seed(), "cluster.yaml")) == {}


def test_without_bootstrap_the_cluster_stages_fields_are_named() -> None:
    """`cluster.bootstrap: false` prepares the hosts only: every field the spec sets that only
    the later stages read is named (a default nobody wrote is not)."""
    data = _seed()
    cluster = data["cluster"]
    assert isinstance(cluster, dict)
    cluster["bootstrap"] = False
    found = without_effect(parse_spec(data, "cluster.yaml"))
    assert sorted(found) == [
        "demo_app",
        "load_balancer",
        "networking.pod_cidr",
        "networking.service_cidr",
        "versions.flannel",
    ]
    assert set(found.values()) == {"cluster.bootstrap is false: apply prepares the hosts only"}
    del data["load_balancer"], data["demo_app"], data["networking"]
    data["kubelet"] = {"eviction_hard": {"memory.available": "100Mi"}}
    assert sorted(without_effect(parse_spec(data, "cluster.yaml"))) == [
        "kubelet.eviction_hard",
        "versions.flannel",
    ]


def test_fields_that_settings_elsewhere_make_moot_are_named() -> None:
    data = _seed()
    data["flannel"] = {"manifest": "kube-flannel.yml", "sha256": None}
    demo = data["demo_app"]
    lb = data["load_balancer"]
    assert isinstance(demo, dict)
    assert isinstance(lb, dict)
    demo["enabled"] = False
    lb["mode"] = "bgp"
    found = without_effect(parse_spec(data, "cluster.yaml"))
    assert sorted(found) == [
        "demo_app.image",
        "demo_app.replicas",
        "load_balancer.mode",
        "versions.flannel",
    ]
    assert "flannel.manifest names the manifest" in found["versions.flannel"]
    assert "no BGPPeer" in found["load_balancer.mode"]


def test_the_schema_and_the_commented_spec_mark_the_bootstrap_only_fields() -> None:
    schema = json_schema()
    assert schema["properties"]["load_balancer"]["description"].startswith(BOOTSTRAP_ONLY_NOTE)
    assert schema["$defs"]["Versions"]["properties"]["flannel"]["description"] == (
        BOOTSTRAP_ONLY_NOTE
    )
    assert schema["$defs"]["Networking"]["properties"]["pod_cidr"]["description"] == (
        BOOTSTRAP_ONLY_NOTE
    )
    comment = SEED_SPEC.split("bootstrap: true")[0].rsplit("name:", 1)[1]
    for field in ("pod and service CIDRs", "versions.flannel", "load_balancer", "demo_app"):
        assert field in " ".join(comment.split())
