"""Label and field selectors as kubectl and controllers send them."""

from __future__ import annotations

import pytest

from pikube.lab.kubeapi.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
    selector_from_label_selector_object,
)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=nginx", {"app": "nginx"}, True),
        ("app==nginx", {"app": "web"}, False),
        ("app!=nginx", {}, True),
        ("app!=nginx", {"app": "nginx"}, False),
        ("tier in (web, api),app", {"tier": "api", "app": "x"}, True),
        ("tier notin (web)", {"tier": "web"}, False),
        ("tier notin (web)", {}, True),
        ("!legacy", {"legacy": ""}, False),
        (
            "kubernetes.io/service-name=kubernetes",
            {"kubernetes.io/service-name": "kubernetes"},
            True,
        ),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selector_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("selector", ["a in (", "=x", "a=b=c,", "tier in ()"])
def test_malformed_label_selectors_are_refused(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


def test_label_selector_objects_with_match_expressions() -> None:
    selector = selector_from_label_selector_object(
        {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "zone", "operator": "Exists"}]}
    )
    assert selector.matches({"app": "a", "zone": "1"})
    assert not selector.matches({"app": "a"})


def test_field_selectors_kubectl_describe_uses_for_events() -> None:
    selector = parse_field_selector(
        "involvedObject.name=nginx,involvedObject.namespace=default,involvedObject.kind=Service",
        "Event",
    )
    event = {"involvedObject": {"name": "nginx", "namespace": "default", "kind": "Service"}}
    assert selector.matches(event)
    assert not selector.matches({**event, "involvedObject": {"name": "other"}})


def test_field_selector_on_metadata_and_inequality() -> None:
    selector = parse_field_selector("metadata.name!=a,metadata.namespace=default", "ConfigMap")
    assert selector.matches({"metadata": {"name": "b", "namespace": "default"}})
    assert not selector.matches({"metadata": {"name": "a", "namespace": "default"}})
    assert selector.exact("metadata.namespace") == "default"


def test_unsupported_field_selectors_are_refused_like_the_real_server() -> None:
    with pytest.raises(SelectorError, match=r"spec\.nodeName"):
        parse_field_selector("spec.nodeName=node01", "Service")
    assert parse_field_selector("spec.nodeName=node01", "Pod").matches(
        {"spec": {"nodeName": "node01"}}
    )
