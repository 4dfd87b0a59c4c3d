"""The README's main command tells the seed's story end to end and leaves nothing behind."""

from __future__ import annotations

import re

import pytest

from pikube.lab.hosts.processes import marked_pids
from pikube.lab.network import netns
from tests.conftest import new_lab_name
from tests.helpers import run_pikube

pytestmark = pytest.mark.lab


def test_the_demo_publishes_nginx_shows_the_owner_and_survives_its_crash() -> None:
    name = new_lab_name()
    result = run_pikube("lab", "demo", "--name", name, timeout_s=120)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "all 20 answered" in out
    assert "-> 200, the nginx welcome page" in out
    arp = r"198\.51\.100\.230 at (\S+) \[ether\] on eth0  -> (\w+)'s"
    before = re.search(r"\[3\].*\n.*" + arp, out)
    after = re.search(r"new owner: (\w+)\n.*" + arp, out)
    assert before is not None, out
    assert after is not None, out
    old_owner, new_owner = before.group(2), after.group(1)
    assert new_owner != old_owner
    assert after.group(3) == new_owner  # the client's ARP table follows the new owner
    assert re.search(r"no answer from 198\.51\.100\.230 for \d+ ms", out)
    assert not any(ns.startswith(f"pk-{name}-") for ns in netns.list_namespaces())
    assert marked_pids(name) == []


def test_the_bgp_demo_shows_ecmp_serves_nginx_and_drops_the_dead_node() -> None:
    name = new_lab_name()
    result = run_pikube("lab", "demo", "--mode", "bgp", "--name", name, timeout_s=180)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    before, after = out.split("[4]")
    for node in ("21", "22", "23"):
        assert f"nexthop via 198.51.100.{node} dev eth0" in before
    assert "curl http://203.0.113.10/ -> 200, the nginx welcome page" in before
    assert re.search(r"dropped node01 from the route after \d+ ms \(BFD\)", after)
    assert "nexthop via 198.51.100.21" not in after
    assert "curl http://203.0.113.10/ -> 200" in after
    assert not any(ns.startswith(f"pk-{name}-") for ns in netns.list_namespaces())
    assert marked_pids(name) == []
