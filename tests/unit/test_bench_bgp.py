"""`pikube bench bgp --frr-timeline`: FRR's own account of a change, read from its debug logs
(lines as FRR 8.4 writes them with `log timestamp precision 6`)."""

from __future__ import annotations

from pikube.bench.bgp import Result, _transit, frr_timeline, summarise

BGPD = """\
2026/12/02 00:58:42.009319 BGP: [YCKEM-GB33T] 198.51.100.21(Unknown) rcvd 203.0.113.10/32 IPv4 unicast
2026/12/02 00:58:42.011117 BGP: [YCKEM-GB33T] 198.51.100.22(Unknown) rcvd 203.0.113.10/32 IPv4 unicast
2026/12/02 00:58:42.059401 BGP: [KR6T7-EW7AS] bgp_zebra_announce: p=203.0.113.10/32, extra is NULL, no label
2026/12/02 00:58:42.059411 BGP: [V15FP-4CPVK] Tx route add VRF 0 203.0.113.10/32 metric 0 tag 0 count 3 nhg 0
2026/12/02 00:58:42.191693 BGP: [PAPP6-VDAWM] 198.51.100.21(Unknown) rcvd UPDATE about 203.0.113.10/32 IPv4 unicast -- withdrawn
2026/12/02 00:58:42.196414 BGP: [PAPP6-VDAWM] 198.51.100.22(Unknown) rcvd UPDATE about 203.0.113.10/32 IPv4 unicast -- withdrawn
2026/12/02 00:58:42.241773 BGP: [G7K80-KF0HM] Tx route delete VRF 0 203.0.113.10/32
2026/12/02 00:58:43.000000 BGP: [YCKEM-GB33T] 198.51.100.21(Unknown) rcvd 203.0.113.99/32 IPv4 unicast
"""  # noqa: E501
ZEBRA = """\
2026/12/02 00:58:42.059578 ZEBRA: [X55C6-A6ZXJ] Route 203.0.113.10/32(0) queued for processing into sub-queue Early Route Processing
2026/12/02 00:58:42.073101 ZEBRA: [YXPF5-B2CE0] netlink_route_multipath_msg_encode: RTM_NEWROUTE 203.0.113.10/32 vrf 0(254)
2026/12/02 00:58:42.242225 ZEBRA: [X55C6-A6ZXJ] Route 203.0.113.10/32(0) queued for processing into sub-queue Early Route Processing
2026/12/02 00:58:42.252370 ZEBRA: [YXPF5-B2CE0] netlink_route_multipath_msg_encode: RTM_DELROUTE 203.0.113.10/32 vrf 0(254)
"""  # noqa: E501


def test_frr_timeline_splits_each_change_into_bgpd_and_zebra() -> None:
    assert frr_timeline(BGPD, ZEBRA, "203.0.113.10/32") == [
        {"change": "add", "bgpd_ms": 50.1, "zebra_ms": 13.5, "received_s": 3522.009319},
        {"change": "delete", "bgpd_ms": 50.1, "zebra_ms": 10.1, "received_s": 3522.191693},
    ]


def test_frr_timeline_without_logs_is_empty() -> None:
    assert frr_timeline("", "", "203.0.113.10/32") == []


def test_summary_carries_the_timeline_beside_the_figures() -> None:
    result = Result("frr", "announce", ms=[60.0, 62.0], extra={"frr_bgpd_ms": [50.1, 50.2]})
    (entry,) = summarise([result], 2)["results"]
    assert entry["p50_ms"] == 61.0
    assert entry["frr_bgpd_ms"] == [50.1, 50.2]


def test_transit_pairs_each_decision_with_the_next_update_bgpd_logged() -> None:
    # Decisions at 10.000 and 20.000 s of the day; bgpd logged UPDATEs at 10.004 and 20.0035.
    assert _transit([10.0, 20.0], [10.004, 20.0035, 30.0]) == [4.0, 3.5]
    assert _transit([40.0], [10.0]) == []
