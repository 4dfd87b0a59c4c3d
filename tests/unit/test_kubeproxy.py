"""The kube-proxy-style ruleset: DNAT to a backend, masquerade only when it is on another host."""

from __future__ import annotations

import ipaddress

import pytest

from pikube.lab.services.kubeproxy import (
    TABLE,
    Backend,
    LoadBalancerService,
    Protocol,
    removal_script,
    render_ruleset,
)

VIP4 = ipaddress.IPv4Address("198.51.100.230")
VIP6 = ipaddress.IPv6Address("2001:db8:68::230")
NODE01 = (ipaddress.ip_address("198.51.100.21"), ipaddress.ip_address("2001:db8:68::21"))
NODE02_4 = ipaddress.IPv4Address("198.51.100.22")
NODE02_6 = ipaddress.IPv6Address("2001:db8:68::22")


def _chain(text: str, name: str) -> str:
    start = text.index(f"\tchain {name} {{")
    return text[start : text.index("\t}", start)]


def test_a_remote_backend_is_dnatted_and_marked_for_masquerade() -> None:
    svc = LoadBalancerService("default/nginx", VIP4, 80, (Backend(NODE02_4, 8080),))
    text = render_ruleset([svc], NODE01)
    assert "ip daddr 198.51.100.230 tcp dport 80 jump svc-0" in _chain(text, "services")
    sep = _chain(text, "sep-0-0")
    assert "meta mark set meta mark | 0x00004000" in sep
    assert "meta l4proto tcp dnat ip to 198.51.100.22:8080" in sep
    post = _chain(text, "postrouting")
    assert "type nat hook postrouting priority srcnat" in post
    assert "meta mark & 0x00004000 == 0x00004000 masquerade" in post
    assert "jump services" in _chain(text, "prerouting")
    assert "jump services" in _chain(text, "output")  # the node's own traffic too


def test_a_local_backend_is_dnatted_without_masquerade() -> None:
    svc = LoadBalancerService("default/nginx", VIP4, 80, (Backend(NODE02_4, 80),))
    sep = _chain(render_ruleset([svc], (NODE02_4, NODE02_6)), "sep-0-0")
    assert "mark set" not in sep
    assert "dnat ip to 198.51.100.22:80" in sep


def test_ipv6_services_use_ip6_matches_and_bracketed_endpoints() -> None:
    svc = LoadBalancerService("default/nginx", VIP6, 80, (Backend(NODE02_6, 80),), Protocol.UDP)
    text = render_ruleset([svc], NODE01)
    assert "ip6 daddr 2001:db8:68::230 udp dport 80 jump svc-0" in text
    assert "meta l4proto udp dnat ip6 to [2001:db8:68::22]:80" in text


def test_several_backends_are_chosen_at_random_each_in_its_own_chain() -> None:
    backends = tuple(Backend(ipaddress.IPv4Address(f"198.51.100.{n}"), 80) for n in (21, 22, 23))
    text = render_ruleset([LoadBalancerService("default/web", VIP4, 80, backends)], NODE01)
    assert (
        "numgen random mod 3 vmap { 0 : jump sep-0-0, 1 : jump sep-0-1, 2 : jump sep-0-2 }"
        in _chain(text, "svc-0")
    )
    assert "mark set" not in _chain(text, "sep-0-0")  # node01 itself
    assert "mark set" in _chain(text, "sep-0-2")


def test_a_service_without_endpoints_is_rejected_not_forwarded() -> None:
    text = render_ruleset([LoadBalancerService("default/empty", VIP4, 443, ())], NODE01)
    assert "tcp dport 443" not in _chain(text, "services")
    assert "ip daddr 198.51.100.230 tcp dport 443 reject" in _chain(text, "no-endpoints")
    assert "type filter hook input" in _chain(text, "input")
    assert "type filter hook forward" in _chain(text, "forward")


def test_the_script_replaces_the_whole_table_in_one_transaction() -> None:
    lines = render_ruleset([], NODE01).splitlines()
    assert lines[:3] == [f"table inet {TABLE} {{", "}", f"delete table inet {TABLE}"]
    assert lines[3] == f"table inet {TABLE} {{"
    assert removal_script().splitlines() == lines[:3]


def test_inconsistent_services_are_refused() -> None:
    with pytest.raises(ValueError, match=r"is IPv6 but the VIP 198\.51\.100\.230 is IPv4"):
        LoadBalancerService("default/nginx", VIP4, 80, (Backend(NODE02_6, 80),))
    with pytest.raises(ValueError, match="invalid port 70000"):
        LoadBalancerService("default/nginx", VIP4, 70000, ())
    twice = LoadBalancerService("default/a", VIP4, 80, ())
    with pytest.raises(ValueError, match=r"two services claim tcp 198\.51\.100\.230:80"):
        render_ruleset([twice, twice], NODE01)
