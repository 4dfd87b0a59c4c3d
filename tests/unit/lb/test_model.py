"""The rules that belong to the model's values: selectors, ranges, advertisements, endpoints."""

from __future__ import annotations

import ipaddress

import pytest

from pikube.lb.model import (
    AddressRange,
    BGPAdvertisement,
    BGPPeer,
    Endpoint,
    EndpointSlice,
    IPAddressPool,
    L2Advertisement,
    LabelSelector,
    LabelSelectorRequirement,
    Node,
    SelectorOperator,
    Service,
    is_buggy_ip,
)

ip = ipaddress.ip_address


def req(key: str, op: str, *values: str) -> LabelSelectorRequirement:
    return LabelSelectorRequirement(key, SelectorOperator(op), values)


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (LabelSelector(), {}, True),
        (LabelSelector(), {"a": "1"}, True),
        (LabelSelector({"a": "1"}), {"a": "1", "b": "2"}, True),
        (LabelSelector({"a": "1"}), {"a": "2"}, False),
        (LabelSelector({"a": "1"}), {}, False),
        (LabelSelector(match_expressions=(req("a", "In", "1", "2"),)), {"a": "2"}, True),
        (LabelSelector(match_expressions=(req("a", "In", "1"),)), {}, False),
        (LabelSelector(match_expressions=(req("a", "NotIn", "1"),)), {}, True),
        (LabelSelector(match_expressions=(req("a", "NotIn", "1"),)), {"a": "1"}, False),
        (LabelSelector(match_expressions=(req("a", "Exists"),)), {"a": ""}, True),
        (LabelSelector(match_expressions=(req("a", "Exists"),)), {"b": ""}, False),
        (LabelSelector(match_expressions=(req("a", "DoesNotExist"),)), {"b": ""}, True),
        (LabelSelector(match_expressions=(req("a", "DoesNotExist"),)), {"a": "x"}, False),
        # Labels AND expressions.
        (LabelSelector({"a": "1"}, (req("b", "Exists"),)), {"a": "1"}, False),
        (LabelSelector({"a": "1"}, (req("b", "Exists"),)), {"a": "1", "b": "0"}, True),
    ],
)
def test_label_selectors_match_as_in_kubernetes(
    selector: LabelSelector, labels: dict[str, str], matches: bool
) -> None:
    assert selector.matches(labels) is matches


def test_address_ranges_print_as_cidr_when_they_are_one() -> None:
    assert str(AddressRange(ip("203.0.113.0"), ip("203.0.113.255"))) == "203.0.113.0/24"
    assert str(AddressRange(ip("203.0.113.7"), ip("203.0.113.7"))) == "203.0.113.7/32"
    assert str(AddressRange(ip("203.0.113.1"), ip("203.0.113.4"))) == "203.0.113.1-203.0.113.4"
    assert str(AddressRange(ip("2001:db8::"), ip("2001:db8::ffff"))) == "2001:db8::/112"


def test_address_ranges_contain_only_their_family_and_span() -> None:
    rng = AddressRange(ip("203.0.113.10"), ip("203.0.113.20"))
    assert ip("203.0.113.10") in rng
    assert ip("203.0.113.20") in rng
    assert ip("203.0.113.21") not in rng
    assert ip("::ffff:203.0.113.15") not in rng
    assert rng.size == 11


def test_address_ranges_refuse_reversed_or_mixed_bounds() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        AddressRange(ip("203.0.113.9"), ip("203.0.113.1"))
    with pytest.raises(ValueError, match="different address families"):
        AddressRange(ip("203.0.113.9"), ip("2001:db8::1"))


def test_buggy_ips_are_ipv4_ending_in_0_or_255() -> None:
    assert is_buggy_ip(ip("203.0.113.0"))
    assert is_buggy_ip(ip("203.0.113.255"))
    assert not is_buggy_ip(ip("203.0.113.1"))
    assert not is_buggy_ip(ip("2001:db8::ff"))
    pool = IPAddressPool(
        "p", (AddressRange(ip("203.0.113.0"), ip("203.0.113.3")),), avoid_buggy_ips=True
    )
    assert not pool.contains(ip("203.0.113.0"))
    assert pool.contains(ip("203.0.113.1"))


def test_an_advertisement_without_pool_choice_covers_every_pool() -> None:
    gold = IPAddressPool("gold", (), labels={"tier": "gold"})
    plain = IPAddressPool("plain", ())
    assert L2Advertisement("all").selects_pool(gold)
    assert L2Advertisement("all").selects_pool(plain)
    by_name = L2Advertisement("n", ip_address_pools=("plain",))
    assert by_name.selects_pool(plain)
    assert not by_name.selects_pool(gold)
    by_label = BGPAdvertisement("l", ip_address_pool_selectors=(LabelSelector({"tier": "gold"}),))
    assert by_label.selects_pool(gold)
    assert not by_label.selects_pool(plain)


def test_advertisements_select_nodes_services_and_peers() -> None:
    adv = L2Advertisement(
        "a",
        node_selectors=(LabelSelector({"zone": "a"}),),
        service_selectors=(LabelSelector({"expose": "l2"}),),
    )
    assert adv.selects_node(Node("n1", {"zone": "a"}))
    assert not adv.selects_node(Node("n2", {"zone": "b"}))
    assert adv.selects_service(Service("default", "s", labels={"expose": "l2"}))
    assert not adv.selects_service(Service("default", "s"))
    assert L2Advertisement("any").selects_node(Node("n3"))
    peer = BGPPeer("router", 64500, ip("203.0.113.1"), peer_asn=64501)
    assert BGPAdvertisement("b").selects_peer(peer)
    assert not BGPAdvertisement("b", peers=("other",)).selects_peer(peer)


def test_an_endpoint_can_serve_when_ready_unset_or_true_or_serving() -> None:
    assert Endpoint(("10.244.1.5",)).can_serve
    assert Endpoint(("10.244.1.5",), ready=True).can_serve
    assert Endpoint(("10.244.1.5",), ready=False, serving=True).can_serve
    assert not Endpoint(("10.244.1.5",), ready=False).can_serve
    assert not Endpoint(("10.244.1.5",), ready=False, serving=False).can_serve


def test_a_slice_names_its_service_by_namespace() -> None:
    assert EndpointSlice("shop", "web-abc", "web").service_key == "shop/web"
    assert EndpointSlice("shop", "orphan", None).service_key is None


def test_a_peer_password_stays_out_of_logs() -> None:
    peer = BGPPeer("r", 64500, ip("203.0.113.1"), peer_asn=64501, password="s3cret")
    assert "s3cret" not in repr(peer)
