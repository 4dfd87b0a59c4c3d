"""A lab Pi's link taken down and brought back: its IPv6 address and default routes come back,
as a Pi's network manager applies them again (the kernel drops a link's routes and IPv6
addresses when it goes down)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pikube.lab.network import netns
from tests.conftest import new_lab_name

pytestmark = pytest.mark.lab


@pytest.fixture
def pi() -> Iterator[str]:
    name = new_lab_name()
    lan, host = f"pk-{name}-lan", f"pk-{name}-node01"
    netns.create(lan)
    netns.create(host)
    try:
        netns.ensure_bridge(lan, "br0")
        netns.connect_to_bridge(lan, "br0", "v-node01", host, "eth0")
        netns.configure_interface(
            host,
            "eth0",
            mac="02:00:00:00:00:21",
            addresses=[("198.51.100.21", 24), ("2001:db8:68::21", 64)],
            gateway4="198.51.100.1",
        )
        with netns.route_socket(host) as ipr:
            ipr.route("add", dst="::/0", gateway="2001:db8:68::1", family=socket.AF_INET6)
        yield host
    finally:
        netns.remove(host)
        netns.remove(lan)


def default_gateways(namespace: str) -> set[str]:
    with netns.route_socket(namespace) as ipr:
        return {
            route.get_attr("RTA_GATEWAY")
            for family in (socket.AF_INET, socket.AF_INET6)
            for route in ipr.get_default_routes(family=family, table=254)
        }


def test_a_link_brought_back_up_has_its_ipv6_address_and_default_routes_again(pi: str) -> None:
    assert default_gateways(pi) == {"198.51.100.1", "2001:db8:68::1"}
    netns.set_link_state(pi, "eth0", up=False)
    assert default_gateways(pi) == set()  # the kernel's doing
    netns.set_link_state(pi, "eth0", up=True)
    assert default_gateways(pi) == {"198.51.100.1", "2001:db8:68::1"}
    assert ("eth0", "2001:db8:68::21", 64) in netns.addresses(pi)  # flushed by the kernel
    netns.set_link_state(pi, "eth0", up=True)  # already up: nothing to restore, no error
    assert default_gateways(pi) == {"198.51.100.1", "2001:db8:68::1"}
