"""The store's API semantics: resourceVersions, conflicts, watches, status, finalizers, CRDs."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from pikube.lab.kubeapi.errors import ApiError
from pikube.lab.kubeapi.resources import ResourceType
from pikube.lab.kubeapi.seed import node, seed_cluster
from pikube.lab.kubeapi.selectors import parse_field_selector, parse_label_selector
from pikube.lab.kubeapi.store import INITIAL_EVENTS_END, EventType, PatchType, Store, WatchEvent

CRD_DIR = Path(__file__).resolve().parents[3] / "src" / "pikube" / "data" / "crds"
NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=UTC)


def new_store(**kwargs: Any) -> Store:
    counter = itertools.count(1)
    return Store(clock=lambda: NOW, uid_factory=lambda: f"uid-{next(counter)}", **kwargs)


def rt(store: Store, group: str, version: str, plural: str) -> ResourceType:
    found = store.registry.lookup(group, version, plural)
    assert found is not None
    return found


def cm(name: str, data: Mapping[str, str] | None = None, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": dict(data or {}),
    }


class Recorder:
    def __init__(self) -> None:
        self.events: list[WatchEvent] = []

    def __call__(self, event: WatchEvent) -> None:
        self.events.append(event)

    def summary(self) -> list[tuple[str, str]]:
        return [(e.type.value, str(e.obj["metadata"].get("name", ""))) for e in self.events]


def test_every_write_takes_the_next_global_resource_version() -> None:
    store = new_store()
    cms, svcs = rt(store, "", "v1", "configmaps"), rt(store, "", "v1", "services")
    first = store.create(cms, "default", cm("a"))
    second = store.create(
        svcs, "default", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    )
    updated = store.patch(cms, "default", "a", PatchType.MERGE, {"data": {"k": "v"}})
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (first, second, updated)]
    assert rvs == sorted(rvs)
    assert len(set(rvs)) == 3
    assert store.list_objects(cms, "default").resource_version == rvs[-1]
    assert first["metadata"]["uid"]
    assert first["metadata"]["creationTimestamp"] == "2025-01-15T12:00:00Z"


def test_stale_update_and_duplicate_create_get_409() -> None:
    store = new_store()
    cms = rt(store, "", "v1", "configmaps")
    original = store.create(cms, "default", cm("a"))
    store.update(cms, "default", "a", {**original, "data": {"k": "1"}})
    with pytest.raises(ApiError) as stale:
        store.update(cms, "default", "a", {**original, "data": {"k": "2"}})
    assert (stale.value.code, stale.value.reason) == (409, "Conflict")
    with pytest.raises(ApiError) as exists:
        store.create(cms, "default", cm("a"))
    assert (exists.value.code, exists.value.reason) == (409, "AlreadyExists")


def test_a_noop_update_keeps_the_resource_version_and_sends_no_event() -> None:
    store = new_store()
    cms = rt(store, "", "v1", "configmaps")
    created = store.create(cms, "default", cm("a", {"k": "v"}))
    seen = Recorder()
    store.watch(
        cms, "default", None, None, seen, resource_version=created["metadata"]["resourceVersion"]
    )
    again = store.update(cms, "default", "a", created)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert seen.events == []


def test_generation_moves_with_spec_changes_only() -> None:
    store = new_store()
    deployments = rt(store, "apps", "v1", "deployments")
    body = {
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    created = store.create(deployments, "default", body)
    assert created["metadata"]["generation"] == 1
    labelled = store.patch(
        deployments, "default", "web", PatchType.MERGE, {"metadata": {"labels": {"x": "y"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    status = store.patch(
        deployments,
        "default",
        "web",
        PatchType.MERGE,
        {"status": {"replicas": 1}},
        subresource="status",
    )
    assert status["metadata"]["generation"] == 1
    assert status["status"] == {"replicas": 1}
    scaled = store.patch(deployments, "default", "web", PatchType.MERGE, {"spec": {"replicas": 3}})
    assert scaled["metadata"]["generation"] == 2


def test_status_subresource_changes_only_status_and_main_resource_ignores_status() -> None:
    store = new_store()
    svcs = rt(store, "", "v1", "services")
    created = store.create(
        svcs,
        "default",
        {
            "metadata": {"name": "s"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}]}},
        },
    )
    assert created["status"] == {"loadBalancer": {}}  # status is not set by a create
    ingress = {"loadBalancer": {"ingress": [{"ip": "198.51.100.230"}]}}
    via_main = store.update(svcs, "default", "s", {**created, "status": ingress})
    assert via_main["status"] == {"loadBalancer": {}}
    via_status = store.update(
        svcs,
        "default",
        "s",
        {**created, "spec": {"type": "ClusterIP"}, "status": ingress},
        subresource="status",
    )
    assert via_status["status"] == ingress
    assert via_status["spec"]["type"] == "LoadBalancer"


def test_a_service_status_update_keeps_the_annotations_it_sends() -> None:
    # MetalLB writes status.loadBalancer.ingress and its pool annotation in one /status update.
    store = new_store()
    svcs = rt(store, "", "v1", "services")
    created = store.create(
        svcs,
        "default",
        {"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},
    )
    body = {
        **created,
        "metadata": {
            **created["metadata"],
            "annotations": {"metallb.io/ip-allocated-from-pool": "p"},
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.230"}]}},
    }
    updated = store.update(svcs, "default", "s", body, subresource="status")
    assert updated["metadata"]["annotations"] == {"metallb.io/ip-allocated-from-pool": "p"}
    assert updated["status"]["loadBalancer"]["ingress"] == [{"ip": "198.51.100.230"}]


def test_service_defaults_like_the_real_server() -> None:
    store = new_store()
    svcs = rt(store, "", "v1", "services")
    svc = store.create(
        svcs,
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
    )
    spec = svc["spec"]
    assert spec["clusterIP"].startswith("10.")
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30000}]
    assert spec["externalTrafficPolicy"] == "Cluster"
    assert spec["allocateLoadBalancerNodePorts"] is True
    # A later update that leaves the allocated values out keeps them.
    again = store.update(
        svcs,
        "default",
        "web",
        {"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},
    )
    assert again["spec"]["clusterIP"] == spec["clusterIP"]
    assert again["spec"]["ports"][0]["nodePort"] == 30000


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metadata": {}}, "metadata.name"),
        ({"metadata": {"name": "Bad_Name"}}, "metadata.name"),
        ({"metadata": {"name": "ok", "labels": {"bad key!": "x"}}}, "metadata.labels"),
    ],
)
def test_invalid_objects_get_422_naming_the_field(body: dict[str, Any], field: str) -> None:
    store = new_store()
    with pytest.raises(ApiError) as invalid:
        store.create(rt(store, "", "v1", "configmaps"), "default", body)
    assert invalid.value.code == 422
    assert invalid.value.reason == "Invalid"
    assert invalid.value.causes[0].field == field


def test_wrong_kind_for_the_url_is_refused_as_the_real_server_does() -> None:
    store = new_store()
    with pytest.raises(ApiError) as wrong:
        store.create(
            rt(store, "", "v1", "configmaps"),
            "default",
            {"kind": "Secret", "metadata": {"name": "a"}},
        )
    assert wrong.value.code == 400
    assert "does not match the expected kind" in wrong.value.message


def test_deployment_selector_must_match_its_template() -> None:
    store = new_store()
    body = {
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    with pytest.raises(ApiError) as invalid:
        store.create(rt(store, "apps", "v1", "deployments"), "default", body)
    assert "`selector` does not match template `labels`" in invalid.value.message


def test_watch_from_a_resource_version_replays_later_changes_then_follows() -> None:
    store = new_store()
    cms = rt(store, "", "v1", "configmaps")
    start = store.create(cms, "default", cm("a"))["metadata"]["resourceVersion"]
    store.create(cms, "default", cm("b"))
    seen = Recorder()
    store.watch(cms, "default", None, None, seen, resource_version=start)
    store.patch(cms, "default", "a", PatchType.MERGE, {"data": {"k": "v"}})
    store.delete(cms, "default", "b")
    assert seen.summary() == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    rvs = [e.rv for e in seen.events]
    assert rvs == sorted(rvs)
    assert seen.events[-1].obj["metadata"]["resourceVersion"] == str(store.rv)


def test_watch_without_a_version_starts_with_synthetic_adds_and_initial_events_end_bookmark() -> (
    None
):
    store = new_store()
    cms = rt(store, "", "v1", "configmaps")
    store.create(cms, "default", cm("a"))
    seen = Recorder()
    store.watch(cms, "default", None, None, seen, send_initial_events=True)
    assert [e.type for e in seen.events] == [EventType.ADDED, EventType.BOOKMARK]
    assert seen.events[1].obj["metadata"]["annotations"] == {INITIAL_EVENTS_END: "true"}


def test_watch_older_than_the_window_gets_410_gone() -> None:
    store = new_store(window=3)
    cms = rt(store, "", "v1", "configmaps")
    old = store.create(cms, "default", cm("a"))["metadata"]["resourceVersion"]
    for i in range(4):
        store.patch(cms, "default", "a", PatchType.MERGE, {"data": {"i": str(i)}})
    with pytest.raises(ApiError) as gone:
        store.watch(cms, "default", None, None, Recorder(), resource_version=old)
    assert (gone.value.code, gone.value.reason) == (410, "Expired")
    # A watch from the current version is fine, and compaction makes even that one too old.
    store.watch(cms, "default", None, None, Recorder(), resource_version=str(store.rv - 1))
    current = str(store.rv)
    store.patch(cms, "default", "a", PatchType.MERGE, {"data": {"i": "x"}})
    store.compact()
    with pytest.raises(ApiError):
        store.watch(cms, "default", None, None, Recorder(), resource_version=current)


def test_selector_watchers_see_added_and_deleted_as_objects_enter_and_leave() -> None:
    store = new_store()
    cms = rt(store, "", "v1", "configmaps")
    store.create(cms, "default", cm("a", app="x"))
    seen = Recorder()
    store.watch(
        cms, "default", parse_label_selector("app=y"), None, seen, resource_version=str(store.rv)
    )
    store.patch(cms, "default", "a", PatchType.MERGE, {"metadata": {"labels": {"app": "y"}}})
    store.patch(cms, "default", "a", PatchType.MERGE, {"data": {"k": "v"}})
    store.patch(cms, "default", "a", PatchType.MERGE, {"metadata": {"labels": {"app": "z"}}})
    assert seen.summary() == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_field_selected_watch_sees_the_deletion_kubectl_delete_waits_for() -> None:
    store = new_store()
    cms = rt(store, "", "v1", "configmaps")
    store.create(cms, "default", cm("a"))
    store.create(cms, "default", cm("b"))
    seen = Recorder()
    fields = parse_field_selector("metadata.name=a", "ConfigMap")
    store.watch(cms, "default", None, fields, seen, resource_version=str(store.rv))
    store.delete(cms, "default", "b")
    store.delete(cms, "default", "a")
    assert seen.summary() == [("DELETED", "a")]


def test_finalizers_hold_a_deletion_until_the_last_is_removed() -> None:
    store = new_store()
    cms = rt(store, "", "v1", "configmaps")
    store.create(cms, "default", {"metadata": {"name": "a", "finalizers": ["example.com/keep"]}})
    marked = store.delete(cms, "default", "a")
    assert marked["metadata"]["deletionTimestamp"] == "2025-01-15T12:00:00Z"
    assert store.get(cms, "default", "a")["metadata"]["deletionTimestamp"]
    seen = Recorder()
    store.watch(cms, "default", None, None, seen, resource_version=str(store.rv))
    store.patch(
        cms, "default", "a", PatchType.JSON, [{"op": "remove", "path": "/metadata/finalizers"}]
    )
    with pytest.raises(ApiError) as gone:
        store.get(cms, "default", "a")
    assert gone.value.code == 404
    assert seen.summary() == [("DELETED", "a")]


def test_deleting_a_namespace_deletes_what_it_holds() -> None:
    store = new_store()
    namespaces, cms = rt(store, "", "v1", "namespaces"), rt(store, "", "v1", "configmaps")
    store.create(namespaces, None, {"metadata": {"name": "team"}})
    store.create(cms, "team", cm("a"))
    store.delete(namespaces, None, "team")
    assert store.list_objects(cms, "team").items == []
    with pytest.raises(ApiError):
        store.get(namespaces, None, "team")
    with pytest.raises(ApiError) as missing:
        store.create(cms, "team", cm("b"))
    assert missing.value.code == 404


def test_creating_in_a_missing_namespace_is_404() -> None:
    store = new_store()
    with pytest.raises(ApiError) as missing:
        store.create(rt(store, "", "v1", "configmaps"), "nowhere", cm("a"))
    assert missing.value.code == 404
    assert 'namespaces "nowhere" not found' in missing.value.message


def _crd(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((CRD_DIR / f"metallb.io_{name}.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_a_crd_makes_its_kinds_servable_with_schema_defaults_and_status() -> None:
    store = new_store()
    crds = rt(store, "apiextensions.k8s.io", "v1", "customresourcedefinitions")
    created = store.create(crds, None, _crd("ipaddresspools"))
    assert {c["type"] for c in created["status"]["conditions"]} == {"NamesAccepted", "Established"}
    pools = rt(store, "metallb.io", "v1beta1", "ipaddresspools")
    assert pools.status_subresource
    pool = store.create(
        pools,
        "default",
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "p"},
            "spec": {"addresses": ["198.51.100.230-198.51.100.250"]},
        },
    )
    assert pool["spec"]["autoAssign"] is True
    assert pool["spec"]["avoidBuggyIPs"] is False
    with pytest.raises(ApiError) as unconditional:
        store.update(pools, "default", "p", {"metadata": {"name": "p"}, "spec": {"addresses": []}})
    assert unconditional.value.code == 422  # custom resources need a resourceVersion to update
    with pytest.raises(ApiError) as strategic:
        store.patch(pools, "default", "p", PatchType.STRATEGIC, {"spec": {"autoAssign": False}})
    assert strategic.value.code == 415
    store.delete(crds, None, "ipaddresspools.metallb.io")
    assert store.registry.lookup("metallb.io", "v1beta1", "ipaddresspools") is None


def test_a_multi_version_crd_serves_one_object_at_each_version() -> None:
    store = new_store()
    store.create(
        rt(store, "apiextensions.k8s.io", "v1", "customresourcedefinitions"), None, _crd("bgppeers")
    )
    v1beta2, v1beta1 = (rt(store, "metallb.io", v, "bgppeers") for v in ("v1beta2", "v1beta1"))
    store.create(
        v1beta2,
        "default",
        {
            "metadata": {"name": "router"},
            "spec": {"myASN": 64500, "peerASN": 64501, "peerAddress": "198.51.100.1"},
        },
    )
    old = store.get(v1beta1, "default", "router")
    assert old["apiVersion"] == "metallb.io/v1beta1"
    assert old["spec"]["peerPort"] == 179


def test_list_pages_with_limit_and_continue() -> None:
    store = new_store()
    cms = rt(store, "", "v1", "configmaps")
    for name in "abcde":
        store.create(cms, "default", cm(name))
    first = store.list_objects(cms, "default", limit=2)
    assert [o["metadata"]["name"] for o in first.items] == ["a", "b"]
    assert first.remaining == 3
    rest = store.list_objects(cms, "default", limit=10, continue_token=first.continue_token)
    assert [o["metadata"]["name"] for o in rest.items] == [
        "c",
        "d",
        "e",
    ]
    assert not rest.continue_token


def test_stored_built_in_objects_validate_against_the_v1_31_schemas() -> None:
    store = new_store()
    seed_cluster(store, "198.51.100.20", 6443)
    store.create(
        rt(store, "", "v1", "nodes"),
        None,
        node(
            "node01",
            ["198.51.100.21"],
            control_plane=False,
            kernel_version="6.1.0",
            now="2025-01-15T12:00:00Z",
        ),
    )
    store.create(
        rt(store, "apps", "v1", "deployments"),
        "default",
        {
            "metadata": {"name": "nginx"},
            "spec": {
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "nginx",
                                "image": "nginx:1.27",
                                "ports": [{"containerPort": 80}],
                            }
                        ]
                    },
                },
            },
        },
    )
    store.create(
        rt(store, "apps", "v1", "daemonsets"),
        "default",
        {
            "metadata": {"name": "speaker"},
            "spec": {
                "selector": {"matchLabels": {"app": "speaker"}},
                "template": {
                    "metadata": {"labels": {"app": "speaker"}},
                    "spec": {"containers": [{"name": "s", "image": "speaker:latest"}]},
                },
            },
        },
    )
    store.create(
        rt(store, "", "v1", "services"),
        "default",
        {"metadata": {"name": "nginx"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},
    )
    store.create(
        rt(store, "", "v1", "secrets"),
        "default",
        {"metadata": {"name": "s"}, "data": {"k": "dg=="}},
    )
    checked = 0
    for built_in in store.registry.all():
        for obj in store.list_objects(built_in, None).items:
            kubernetes_validate.validate(dict(obj), "1.31.0", strict=True)
            checked += 1
    assert checked >= 12
