"""The lab itself: built for real in network namespaces, probed with ping/arping/ndisc6."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from pikube.lab.hosts.processes import marked_pids
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.network.checks import reachability
from tests.conftest import new_lab_name
from tests.helpers import run_pikube

pytestmark = pytest.mark.lab


def _assert_gone(name: str) -> None:
    leftovers = [ns for ns in netns.list_namespaces() if ns.startswith(f"pk-{name}-")]
    assert leftovers == []
    assert marked_pids(name) == []
    assert not Lab(name).exists()


def test_client_reaches_every_host_by_ping_and_arping_over_ipv4_and_ipv6(lab: Lab) -> None:
    probes = reachability(lab, "client")
    assert len(probes) == 5 * 4
    assert [p for p in probes if not p.ok] == []
    macs = {(p.target, p.kind): p.detail for p in probes if p.kind in ("arping", "ndisc6")}
    assert macs[("node01", "arping")] == "02:00:00:00:00:21"
    assert macs[("node03", "ndisc6")] == "02:00:00:00:00:23"


def test_every_host_ignores_arp_for_addresses_it_does_not_own(lab: Lab) -> None:
    for host in lab.topology.hosts:
        out = lab.run(host.name, ["sysctl", "-n", "net.ipv4.conf.all.arp_ignore"], check=True)
        assert out.stdout.strip() == "1"
        out = lab.run(host.name, ["sysctl", "-n", "net.ipv4.conf.all.arp_announce"], check=True)
        assert out.stdout.strip() == "2"


def test_up_is_idempotent_and_down_removes_everything(lab: Lab) -> None:
    again = lab.up()
    assert again.created is False
    # A host namespace lost by accident is rebuilt by the next `up`.
    netns.remove(lab.namespace("node03"))
    assert lab.up().created is True
    assert all(p.ok for p in reachability(lab, "client") if p.target == "node03")
    report = lab.down()
    assert len(report.namespaces_removed) == 7
    _assert_gone(lab.name)
    assert lab.down().existed is False


def test_down_after_the_creating_process_was_killed_leaves_nothing() -> None:
    name = new_lab_name()
    script = f"""
import sys, time
from pikube.lab.lab import Lab
lab = Lab({name!r})
lab.up()
lab.start("node01", "sleeper", ["sleep", "600"])
lab.start("client", "sleeper", ["sleep", "600"])
print("ready", flush=True)
time.sleep(600)
"""
    creator = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert creator.stdout is not None
        assert creator.stdout.readline().strip() == "ready"
        creator.send_signal(signal.SIGKILL)
        creator.wait(10)
        assert len(marked_pids(name)) == 2  # the sleepers outlived their creator
        result = run_pikube("lab", "down", "--name", name)
        assert result.returncode == 0, result.stderr
        assert "2 processes stopped" in result.stdout
        _assert_gone(name)
    finally:
        creator.kill()
        Lab(name).down()


@pytest.mark.parametrize("delay_s", [0.25, 0.35, 0.45, 0.6])
def test_down_cleans_up_after_up_was_killed_half_way(delay_s: float) -> None:
    name = new_lab_name()
    creator = subprocess.Popen([sys.executable, "-m", "pikube", "lab", "up", "-n", name])
    try:
        time.sleep(delay_s)  # a crash at an arbitrary point of `up` (interpreter start ~0.2 s)
        creator.send_signal(signal.SIGKILL)
        creator.wait(10)
        result = run_pikube("lab", "down", "--name", name)
        assert result.returncode == 0, result.stderr
        _assert_gone(name)
    finally:
        creator.kill()
        Lab(name).down()


def test_two_labs_coexist_and_are_independent(lab: Lab) -> None:
    other = Lab(new_lab_name())
    try:
        other.up()
        assert all(p.ok for p in reachability(other, "client"))
        other.down()
        _assert_gone(other.name)
        assert all(p.ok for p in reachability(lab, "client"))
    finally:
        other.down()


def test_status_lists_hosts_addresses_and_processes(lab: Lab) -> None:
    lab.start("node02", "sleeper", ["sleep", "600"])
    result = run_pikube("lab", "status", "--name", lab.name, "-o", "json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["complete"] is True
    node02 = status["hosts"]["node02"]
    assert "198.51.100.22/24" in node02["addresses"]
    assert "2001:db8:68::22/64" in node02["addresses"]
    assert [(p["host"], p["name"], p["running"]) for p in status["processes"]] == [
        ("node02", "sleeper", True)
    ]
    table = run_pikube("lab", "status", "--name", lab.name)
    assert "198.51.100.22" in table.stdout
    assert "sleeper" in table.stdout


def test_exec_runs_the_command_inside_the_host(lab: Lab) -> None:
    result = run_pikube("lab", "exec", "--name", lab.name, "node01", "--", "ip", "-o", "addr")
    assert result.returncode == 0, result.stderr
    assert "198.51.100.21/24" in result.stdout
    assert "198.51.100.10" not in result.stdout
    # Host names resolve inside the lab, and exit statuses pass through.
    ping = ["ping", "-4", "-c1", "node02"]
    result = run_pikube("lab", "exec", "--name", lab.name, "client", "--", *ping)
    assert result.returncode == 0, result.stderr
    assert "198.51.100.22" in result.stdout
    assert run_pikube("lab", "exec", "--name", lab.name, "client", "--", "false").returncode == 1
