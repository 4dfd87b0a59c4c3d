"""The handover bridge's nft rules and the metrics exposition (pure parts)."""

from __future__ import annotations

from pikube.lb.l2.bridge import BridgeEntry, render
from pikube.lb.metrics import Registry


def test_bridge_rules_pass_unknown_mid_connection_packets_to_the_old_owner() -> None:
    text = render([BridgeEntry("198.51.100.230", "198.51.100.22", "eth0")])
    assert "table ip pikube-handover {" in text
    assert "delete table ip pikube-handover" in text  # replaced atomically
    assert "priority -150" in text  # after conntrack, before kube-proxy's DNAT
    assert (
        "ip daddr 198.51.100.230 meta l4proto tcp ct state new,invalid tcp flags & syn == 0 "
        'dup to 198.51.100.22 device "eth0" drop'
    ) in text


def test_no_entries_removes_the_table_and_ipv6_is_not_bridged() -> None:
    assert render([]).strip().endswith("delete table ip pikube-handover")
    only_v6 = render([BridgeEntry("2001:db8:68::230", "198.51.100.22", "eth0")])
    assert "dup" not in only_v6


def test_metrics_keep_metallb_names_without_total_and_escape_labels() -> None:
    registry = Registry()
    requests = registry.counter("metallb_layer2_requests_received", "Requests", "ip")
    requests.inc("198.51.100.230")
    requests.inc("198.51.100.230")
    gauge = registry.gauge("pikube_membership_peers", "Peers")
    gauge.set(2)
    weird = registry.gauge("x", "X", "label")
    weird.set(1, 'a"b\\c')
    text = registry.render()
    assert "# TYPE metallb_layer2_requests_received counter" in text
    assert 'metallb_layer2_requests_received{ip="198.51.100.230"} 2' in text
    assert "pikube_membership_peers 2" in text
    assert 'x{label="a\\"b\\\\c"} 1' in text
