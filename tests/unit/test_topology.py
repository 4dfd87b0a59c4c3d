import ipaddress

import pytest

from pikube.errors import PikubeError
from pikube.lab.network.topology import (
    DEFAULT_POOL_FIRST,
    DEFAULT_POOL_LAST,
    SEED_HOSTS,
    Role,
    Topology,
    lab_of_namespace,
)


def test_the_seed_hosts_have_the_seeds_host_numbers_in_documentation_ranges() -> None:
    topo = Topology("demo")
    expected = {"router": 1, "client": 10, "master": 20, "node01": 21, "node02": 22, "node03": 23}
    assert {h.name: h.number for h in topo.hosts} == expected
    node01 = topo.host("node01")
    assert str(node01.ipv4) == "198.51.100.21"
    assert str(node01.ipv6) == "2001:db8:68::21"
    assert node01.mac == "02:00:00:00:00:21"
    assert topo.host("master").role is Role.CONTROL_PLANE


def test_no_lab_address_is_in_the_root_namespaces_range() -> None:
    root_range = ipaddress.ip_network("192.0.2.0/24")
    for host in SEED_HOSTS:
        assert host.ipv4 not in root_range
        assert host.ipv4 in ipaddress.ip_network("198.51.100.0/24")
        assert host.ipv6 in ipaddress.ip_network("2001:db8:68::/64")


def test_macs_are_unique_unicast_and_locally_administered() -> None:
    macs = [h.mac for h in SEED_HOSTS]
    assert len(set(macs)) == len(macs)
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0x01 == 0  # unicast
        assert first & 0x02 == 0x02  # locally administered


def test_default_pool_is_the_seeds_230_to_250() -> None:
    assert (str(DEFAULT_POOL_FIRST), str(DEFAULT_POOL_LAST)) == (
        "198.51.100.230",
        "198.51.100.250",
    )


def test_namespaces_are_prefixed_by_lab_name_and_map_back() -> None:
    topo = Topology("demo")
    assert topo.lan_namespace == "pk-demo-lan"
    assert topo.namespace("node02") == "pk-demo-node02"
    assert len(topo.namespaces) == 7
    assert {lab_of_namespace(ns) for ns in topo.namespaces} == {"demo"}
    assert lab_of_namespace("cni-1234") is None
    assert lab_of_namespace("pk-") is None


@pytest.mark.parametrize("bad", ["", "Demo", "1lab", "lab-a", "x" * 13, "a b"])
def test_invalid_lab_names_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(PikubeError, match="invalid lab name"):
        Topology(bad)


def test_unknown_host_names_the_known_ones() -> None:
    with pytest.raises(PikubeError, match="node01, node02"):
        Topology("demo").host("node04")


def test_bridge_ports_fit_in_an_interface_name() -> None:
    topo = Topology("abcdefghijkl")
    assert all(len(topo.bridge_port(h.name)) <= 15 for h in topo.hosts)
