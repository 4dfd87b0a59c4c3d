"""The doctor against lab Pis that present the faults only hardware, firmware, kernel or clock
can show: a Pi 3 with 1 GB, `maxcpus=1`, a 32-bit userland, kernels without vxlan or
br_netfilter, cloned SD cards, USB adapters sharing a MAC, a clock an hour ahead.

The doctor runs from the lab's client as a user would (`pikube cluster doctor -o json`), and
nothing here tells it what the hosts are: each check must find its fault from the facts.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pikube.lab.hosts import sshhosts
from pikube.lab.hosts.sshhosts import Fault
from pikube.lab.lab import Lab
from tests.conftest import new_lab_name

pytestmark = pytest.mark.lab

Report = dict[str, dict[str, dict[str, str]]]  # node -> check id -> check

FAULTS = {
    "master": {Fault.SMALL_BOARD, Fault.NO_VXLAN},
    "node01": {Fault.MAXCPUS_1, Fault.USERLAND_32_BIT, Fault.NO_BR_NETFILTER},
    "node02": {Fault.CLONED_SD_CARD, Fault.USB_ETHERNET_DEFAULT_MAC, Fault.CLOCK_AHEAD},
    "node03": {Fault.CLONED_SD_CARD, Fault.USB_ETHERNET_DEFAULT_MAC},
}


def _doctor(lab: Lab, spec: Path) -> Report:
    argv = [sys.executable, "-m", "pikube", "cluster", "doctor", "-f", str(spec), "-o", "json"]
    result = lab.run("client", argv, timeout_s=120)
    assert result.returncode == 1, result.stderr  # failed checks: non-zero
    hosts = json.loads(result.stdout)["hosts"]
    return {node: {c["id"]: c for c in h["checks"]} for node, h in hosts.items()}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Report]]:
    """Doctor reports of the faulty lab: with master as the control plane (as the lab's
    cluster-spec has it), and with node01 as the control plane instead."""
    lab = Lab(new_lab_name())
    try:
        lab.up()
        sshhosts.up_ssh_hosts(lab, FAULTS)
        work = tmp_path_factory.mktemp("spec")
        spec = work / "cluster.yaml"
        spec.write_text(sshhosts.cluster_spec_yaml(lab))
        data = yaml.safe_load(spec.read_text())
        for node in data["nodes"]:
            node["role"] = "control-plane" if node["name"] == "node01" else "worker"
        node01_spec = work / "node01-control-plane.yaml"
        node01_spec.write_text(yaml.safe_dump(data))
        yield {"master": _doctor(lab, spec), "node01": _doctor(lab, node01_spec)}
    finally:
        lab.down()


@pytest.mark.parametrize(
    ("control_plane", "node", "check", "words", "healthy"),
    [
        ("master", "master", "resources", "921 MB memory and 2 CPUs", "node01"),
        ("node01", "node01", "resources", "1 CPU (the kernel was told maxcpus=1)", "node02"),
        ("master", "node01", "arch-64bit", "a 32-bit userland (i386)", "node02"),
        ("master", "master", "kernel-modules", "missing kernel modules: vxlan (", "node02"),
        ("master", "node01", "kernel-modules", "missing kernel modules: br_netfilter (", "node03"),
        ("master", "node02", "unique-identity", "hostname node02 also on node03", "master"),
        ("master", "node03", "unique-identity", "machine-id", "node01"),
        ("master", "node03", "unique-identity", "MAC 00:e0:4c:53:44:58 also on node02", "node01"),
        ("master", "node02", "clock-skew", "clock ahead by ", "node03"),
    ],
)
def test_the_doctor_names_what_the_pi_presents(
    reports: dict[str, Report],
    control_plane: str,
    node: str,
    check: str,
    words: str,
    healthy: str,
) -> None:
    report = reports[control_plane]
    found = report[node][check]
    assert found["status"] == "fail", found
    assert words in found["message"]
    assert found["fix"]
    assert report[healthy][check]["status"] == "ok", report[healthy][check]


def test_the_fixes_say_what_to_change(reports: dict[str, Report]) -> None:
    master = reports["master"]
    assert "2 GB or more" in master["master"]["resources"]["fix"]
    maxcpus = reports["node01"]["node01"]["resources"]["fix"]
    assert "remove maxcpus=1 from /boot/firmware/cmdline.txt" in maxcpus
    clone = master["node03"]["unique-identity"]["fix"]
    assert "hostnamectl" in clone
    assert "machine-id" in clone
    assert "MAC" in clone
    assert "hostnamectl set-hostname node03" in master["node03"]["hostname"]["fix"]


def test_the_clock_is_an_hour_ahead(reports: dict[str, Report]) -> None:
    message = reports["master"]["node02"]["clock-skew"]["message"]
    match = re.search(r"clock ahead by (\d+\.\d) s", message)
    assert match is not None, message
    assert abs(float(match.group(1)) - sshhosts.CLOCK_AHEAD_S) < 60
