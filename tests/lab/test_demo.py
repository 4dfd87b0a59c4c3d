"""The README's main command tells the seed's story end to end and leaves nothing behind."""

from __future__ import annotations

import re

import pytest

from pikube.lab import netns
from pikube.lab.processes import marked_pids
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
