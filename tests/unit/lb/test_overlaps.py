"""Pools against the cluster's own networks (pure), and `lb allocate --pod-cidr/--service-cidr`."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pikube.lb.model import AddressRange, IPAddressPool
from pikube.lb.overlaps import parse_networks, pools_overlapping
from tests.helpers import run_pikube
from tests.unit.lb.test_cli_allocate import write


def _pool(name: str, first: str, last: str) -> IPAddressPool:
    rng = AddressRange(ipaddress.ip_address(first), ipaddress.ip_address(last))
    return IPAddressPool(name=name, addresses=(rng,))


def test_a_pool_touching_a_network_by_one_address_overlaps_it() -> None:
    networks = {"pod CIDR": parse_networks("10.244.0.0/16,fd00:10:244::/56")}
    assert pools_overlapping([_pool("lan", "10.243.255.250", "10.244.0.0")], networks) == [
        "IPAddressPool 'lan' 10.243.255.250-10.244.0.0 overlaps the pod CIDR 10.244.0.0/16"
    ]
    assert pools_overlapping([_pool("v6", "fd00:10:244::ff", "fd00:10:244::ff")], networks) == [
        "IPAddressPool 'v6' fd00:10:244::ff/128 overlaps the pod CIDR fd00:10:244::/56"
    ]
    assert pools_overlapping([_pool("lan", "10.243.255.250", "10.243.255.255")], networks) == []


def test_a_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.244\.0\.1/16' is not a network in CIDR form"):
        parse_networks("10.244.0.1/16")


def test_allocate_refuses_a_pool_inside_the_service_cidr(tmp_path: Path) -> None:
    config, services = write(tmp_path)
    args = ("lb", "allocate", "-f", str(config), "-f", str(services))
    clear = run_pikube(*args, "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12")
    assert clear.returncode == 0, clear.stderr
    result = run_pikube(*args, "--service-cidr", "198.51.100.0/24")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "pikube: error: IPAddressPool 'first-pool' 198.51.100.230/31 overlaps the "
        "service CIDR (--service-cidr) 198.51.100.0/24: LoadBalancer IPs must be outside the "
        "cluster's own networks\n"
    )
    bad = run_pikube(*args, "--pod-cidr", "10.244.0.0/33")
    assert bad.returncode == 2
    assert bad.stderr.startswith("pikube: error: --pod-cidr: '10.244.0.0/33' is not a network")
