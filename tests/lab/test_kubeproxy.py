"""kube-proxy-style rules: a node forwards VIP traffic to a backend but never answers ARP for it."""

from __future__ import annotations

import ipaddress

import pytest

from pikube.lab.lab import Lab
from pikube.lab.services import kubeproxy, web
from pikube.lab.services.seed_service import SEED_VIP, service_rules
from tests.lab.fetch import fetch

pytestmark = pytest.mark.lab

VIP6 = "2001:db8:68::230"


def _point_client_at(lab: Lab, node: str) -> None:
    """Stand-in for an announcer: the client's ARP/NDP entries send the VIP's traffic to `node`."""
    mac = lab.topology.host(node).mac
    for family, vip in (("-4", str(SEED_VIP)), ("-6", VIP6)):
        lab.run(
            "client",
            [
                "ip",
                family,
                "neigh",
                "replace",
                vip,
                "lladdr",
                mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
            check=True,
        )


def _last_client_address(site: web.NginxSite) -> str:
    return site.access_log.read_text().splitlines()[-1].split()[0]


def test_a_node_forwards_vip_traffic_to_a_backend_on_another_node_with_masquerade(
    lab: Lab,
) -> None:
    site = web.site_for(lab, "node02")
    web.start(lab, site)
    node02 = lab.topology.host("node02")
    rules = service_rules(lab, "node02")
    rules.append(
        kubeproxy.LoadBalancerService(
            "default/nginx-v6",
            ipaddress.IPv6Address(VIP6),
            80,
            (kubeproxy.Backend(node02.ipv6, 80),),
        )
    )
    for node in ("node01", "node02"):
        kubeproxy.apply(lab, node, rules)
    kubeproxy.apply(lab, "node01", rules)  # applying again replaces, never duplicates
    assert kubeproxy.ruleset(lab, "node01").count("jump svc-0") == 1

    # Nobody answers ARP or NDP for the VIP: the rules accept its traffic without owning it.
    arping = lab.run("client", ["arping", "-c", "2", "-w", "2", "-I", "eth0", str(SEED_VIP)])
    assert arping.returncode != 0
    assert "Received 0 response" in arping.stdout
    ndisc = lab.run("client", ["ndisc6", "-1", "-r", "2", "-w", "300", VIP6, "eth0"])
    assert ndisc.returncode != 0

    _point_client_at(lab, "node01")
    for url in (f"http://{SEED_VIP}/", f"http://[{VIP6}]/"):
        page = fetch(lab, "client", url)
        assert page.status == 200, page.error
        assert page.headers[web.BACKEND_HEADER] == "node02"
        assert "Welcome to nginx!" in page.body
        # node01 masqueraded: nginx saw node01 as the client, so replies return through it.
        assert _last_client_address(site) in ("198.51.100.21", "2001:db8:68::21")

    # Through node02 itself the backend is local: DNAT only, the client's own address shows.
    _point_client_at(lab, "node02")
    assert fetch(lab, "client", f"http://{SEED_VIP}/").status == 200
    assert _last_client_address(site) == "198.51.100.10"

    _point_client_at(lab, "node01")
    kubeproxy.remove(lab, "node01")
    kubeproxy.remove(lab, "node01")  # removing what is gone is fine
    assert kubeproxy.ruleset(lab, "node01") == ""
    assert fetch(lab, "client", f"http://{SEED_VIP}/", timeout_s=0.5).status is None
