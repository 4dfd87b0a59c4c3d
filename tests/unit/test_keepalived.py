"""keepalived's VRRPv3 configuration for the failover baseline."""

from __future__ import annotations

import ipaddress

import pytest

from pikube.lab.services.keepalived import VrrpInstance, render_config

VIP = ipaddress.IPv4Address("198.51.100.230")


def test_a_100ms_instance_is_vrrp3_backup_with_its_priority_and_the_vip() -> None:
    text = render_config(VrrpInstance("node01", 150, 0.1, VIP))
    assert "vrrp_version 3" in text
    assert "router_id node01" in text
    assert "state BACKUP" in text
    assert "priority 150" in text
    assert "advert_int 0.1\n" in text
    assert "interface eth0" in text
    assert "198.51.100.230/32 dev eth0" in text


def test_the_1s_variant_writes_a_whole_second() -> None:
    assert "advert_int 1\n" in render_config(VrrpInstance("node02", 100, 1.0, VIP))


@pytest.mark.parametrize(
    ("priority", "advert", "message"),
    [
        (255, 0.1, "priority must be 1-254"),
        (0, 0.1, "priority must be 1-254"),
        (100, 0.005, "multiple of 0.01 s"),
        (100, 0.125, "multiple of 0.01 s"),
        (100, 41.0, "multiple of 0.01 s"),
    ],
)
def test_values_vrrp3_cannot_carry_are_refused(priority: int, advert: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VrrpInstance("node01", priority, advert, VIP)
