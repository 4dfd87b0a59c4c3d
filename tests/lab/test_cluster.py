"""The cluster builder against the lab's SSH hosts (real sshd, systemd, apt, dpkg, containerd).

The builder runs from the lab's client host, as a user would (`pikube lab exec client -- ...`).
One lab of fresh Pis is prepared by apply; another has one fault per host for the doctor.
"""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def pis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """A lab with four fresh Raspberry Pi OS hosts, and a cluster.yaml for them."""
    lab = Lab(new_lab_name())
    try:
        lab.up()
        sshhosts.up_ssh_hosts(lab)
        spec = tmp_path_factory.mktemp("spec") / "cluster.yaml"
        spec.write_text(sshhosts.cluster_spec_yaml(lab))
        yield lab, spec
    finally:
        lab.down()


def _pikube(lab: Lab, *args: str, timeout_s: float = 240.0) -> tuple[int, str, str]:
    result = lab.run("client", [sys.executable, "-m", "pikube", *args], timeout_s=timeout_s)
    return result.returncode, result.stdout, result.stderr


def test_the_ssh_hosts_look_like_raspberry_pis(pis: tuple[Lab, Path]) -> None:
    lab, _spec = pis
    key = str(sshhosts.client_key_path(lab.name))
    ssh = ["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    remote = (
        "hostname; tr -d '\\0' < /sys/firmware/devicetree/base/model; echo; "
        "cat /proc/cmdline; cat /boot/firmware/cmdline.txt; "
        "systemctl is-enabled dphys-swapfile; cat /etc/ssh/ssh_host_ed25519_key.pub; "
        "echo 1 > /proc/sys/kernel/sysrq && echo WROTE-KERNEL-SYSCTL"
    )
    outputs = {}
    for host in ("node01", "node02"):
        result = lab.run("client", [*ssh, f"root@{lab.topology.host(host).ipv4}", remote])
        outputs[host] = result.stdout.splitlines()
    lines = outputs["node01"]
    assert lines[0] == "node01"
    assert lines[1] == "Raspberry Pi 4 Model B Rev 1.5"
    assert "cgroup_disable=memory" in lines[2]
    assert lines[2].endswith(lines[3])
    assert lines[4] == "enabled"
    assert "WROTE-KERNEL-SYSCTL" not in lines  # the machine's kernel settings are out of reach
    assert outputs["node02"][5] != lines[5]  # every host has its own host key


def test_apply_runs_exactly_the_plan_and_then_has_nothing_to_do(
    pis: tuple[Lab, Path], tmp_path: Path
) -> None:
    lab, spec = pis
    status, out, err = _pikube(lab, "cluster", "plan", "-f", str(spec), "-o", "json")
    assert status == 0, err
    plan = json.loads(out)["hosts"]
    assert set(plan) == {"master", "node01", "node02", "node03"}
    # First contact: every host key shown with its fingerprint and recorded.
    assert err.count("first contact") == 4
    assert "SHA256:" in err
    assert len(sshhosts.known_hosts_path(lab.name).read_text().splitlines()) == 4

    log = tmp_path / "apply.jsonl"
    status, out, err = _pikube(lab, "cluster", "apply", "-f", str(spec), "--yes", "--log", str(log))
    assert status == 0, out + err
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    for node, host_plan in plan.items():
        planned = [cmd for change in host_plan["changes"] for cmd in change["commands"]]
        executed = [e["command"] for e in entries if e["node"] == node and "read_only" not in e]
        assert executed == planned, node
        assert all(e["exit_status"] == 0 for e in entries if e["node"] == node)
        # Every command run is in the log, the reads too: facts before and after, boot ids.
        reads = [e["change"] for e in entries if e["node"] == node and e.get("read_only")]
        assert reads[0] == reads[-1] == "facts", node
        assert set(reads[1:-1]) == {"reboot"}, node  # boot_id before, and after (maybe more)
        assert len(reads) >= 4, node
    assert any(e["command"] == "systemctl reboot" for e in entries)

    status, out, err = _pikube(lab, "cluster", "plan", "-f", str(spec), "-o", "json")
    assert status == 0, err
    assert {n: h["changes"] for n, h in json.loads(out)["hosts"].items()} == {n: [] for n in plan}
    status, out, _err = _pikube(lab, "cluster", "apply", "-f", str(spec), "--yes")
    assert status == 0
    assert "0 changes applied" in out

    status, out, _err = _pikube(lab, "cluster", "doctor", "-f", str(spec), "-o", "json")
    checks = json.loads(out)["hosts"]
    not_ok = [(n, c["id"]) for n, h in checks.items() for c in h["checks"] if c["status"] != "ok"]
    assert not_ok == []
    assert status == 0

    # No secret ever reaches output or the log: the private key's body is nowhere.
    key_body = sshhosts.client_key_path(lab.name).read_text().splitlines()[1]
    assert key_body not in log.read_text() + out

    # The packages are the real ones, from the lab's pkgs.k8s.io mirror, where the seed's
    # packages put their files.
    ssh = ["ssh", "-i", str(sshhosts.client_key_path(lab.name))]
    ssh += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    remote = (
        "kubeadm version -o short; "
        "dpkg-query -W -f '${Package} ${Version}\\n' kubelet kubeadm kubectl cri-tools "
        "kubernetes-cni; "
        "kubelet --version; kubectl version --client -o yaml | grep gitVersion; "
        "systemctl cat kubelet | grep -c '^ExecStart='; "
        "test -x /opt/cni/bin/bridge && test -x /usr/bin/crictl && echo PATHS-OK; "
        "cat /etc/containerd/certs.d/registry.k8s.io/hosts.toml"
    )
    master = str(lab.topology.host("master").ipv4)
    result = lab.run("client", [*ssh, f"root@{master}", remote], timeout_s=60)
    lines = result.stdout.splitlines()
    assert lines[0] == "v1.31.5", result.stdout + result.stderr
    assert sorted(lines[1:6]) == [
        "cri-tools 1.30.0-1.1",  # the cri-tools version the module proxy serves
        "kubeadm 1.31.5-1.1",
        "kubectl 1.31.5-1.1",
        "kubelet 1.31.5-1.1",
        "kubernetes-cni 1.5.1-1.1",
    ]
    assert lines[6] == "Kubernetes v1.31.5"
    assert lines[7].strip() == "gitVersion: v1.31.5"
    assert lines[8] == "3"  # the unit's, then the drop-in's reset and its own
    assert lines[9] == "PATHS-OK"
    assert '[host."http://198.51.100.1:5000"]' in result.stdout


def test_a_changed_host_key_stops_the_run_for_that_host(
    pis: tuple[Lab, Path], tmp_path: Path
) -> None:
    lab, spec = pis
    data = yaml.safe_load(spec.read_text())
    known = tmp_path / "known_hosts"
    data["ssh"]["known_hosts"] = str(known)
    other = tmp_path / "cluster.yaml"
    other.write_text(yaml.safe_dump(data))
    assert _pikube(lab, "cluster", "plan", "-f", str(other))[0] == 0
    lines = known.read_text().splitlines()
    node01 = str(lab.topology.host("node01").ipv4)
    node02 = str(lab.topology.host("node02").ipv4)
    key_of_node02 = next(line.split(" ", 1)[1] for line in lines if line.startswith(node02 + " "))
    known.write_text(
        "\n".join(
            f"{node01} {key_of_node02}" if line.startswith(node01 + " ") else line for line in lines
        )
        + "\n"
    )
    status, out, _err = _pikube(lab, "cluster", "plan", "-f", str(other), "-o", "json")
    assert status != 0
    hosts = json.loads(out)["hosts"]
    assert "host key of 198.51.100.21 changed" in hosts["node01"]["error"]
    assert "error" not in hosts["node02"]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """One fault per host (node02 has two)."""
    lab = Lab(new_lab_name())
    faults = {
        "master": {Fault.MEMORY_CGROUP_OFF},
        "node01": {Fault.WRONG_CMDLINE_FILE},
        "node02": {Fault.CRI_DISABLED, Fault.IP_FORWARD_OFF},
        "node03": {Fault.UNREACHABLE},
    }
    try:
        lab.up()
        sshhosts.up_ssh_hosts(lab, faults)
        spec = tmp_path_factory.mktemp("spec") / "cluster.yaml"
        spec.write_text(sshhosts.cluster_spec_yaml(lab))
        yield lab, spec
    finally:
        lab.down()


@pytest.mark.parametrize(
    ("node", "check", "words"),
    [
        ("master", "memory-cgroup", "forces cgroup_disable=memory"),
        ("node01", "cmdline-file", "/boot/cmdline.txt, which this Pi ignores"),
        ("node02", "containerd-cri", 'disabled_plugins = ["cri"]'),
        ("node02", "ip-forward", "net.ipv4.ip_forward is 0"),
        ("node03", "reachable", "connection refused"),
        ("node01", "swap", "dphys-swapfile is enabled"),
    ],
)
def test_the_doctor_names_each_lab_fault(
    faulty: tuple[Lab, Path], node: str, check: str, words: str
) -> None:
    lab, spec = faulty
    report = _doctor_report(lab, spec)
    found = {c["id"]: c for c in report[node]["checks"]}
    assert found[check]["status"] == "fail"
    assert words in found[check]["message"]
    assert found[check]["fix"]


_REPORTS: dict[str, dict[str, dict[str, list[dict[str, str]]]]] = {}


def _doctor_report(lab: Lab, spec: Path) -> dict[str, dict[str, list[dict[str, str]]]]:
    if lab.name not in _REPORTS:
        status, out, err = _pikube(lab, "cluster", "doctor", "-f", str(spec), "-o", "json")
        assert status == 1, err
        _REPORTS[lab.name] = json.loads(out)["hosts"]
    return _REPORTS[lab.name]


def test_apply_goes_on_per_host_and_fixes_what_it_can(faulty: tuple[Lab, Path]) -> None:
    """Runs after the doctor tests (file order): it repairs the faulty hosts it can."""
    lab, spec = faulty
    _doctor_report(lab, spec)  # the faults as they were
    status, out, err = _pikube(lab, "cluster", "apply", "-f", str(spec), "--yes")
    assert status == 1, err
    assert "node03: unreachable" in out
    assert "node01: done" in out
    assert "node02: done" in out
    assert "master: failed" in out
    assert "memory cgroup is still off" in out
    status, out, _err = _pikube(lab, "cluster", "doctor", "-f", str(spec), "-o", "json")
    hosts = json.loads(out)["hosts"]
    status_of = {(n, c["id"]): c["status"] for n, h in hosts.items() for c in h["checks"]}
    assert status_of[("node02", "containerd-cri")] == "ok"
    assert status_of[("node02", "ip-forward")] == "ok"
    assert status_of[("node01", "cmdline-file")] == "ok"
    assert status_of[("node01", "memory-cgroup")] == "ok"
    assert status_of[("master", "memory-cgroup")] == "fail"


def test_a_lab_with_ssh_hosts_leaves_nothing_behind() -> None:
    lab = Lab(new_lab_name())
    try:
        lab.up()
        sshhosts.up_ssh_hosts(lab, {"node03": {Fault.UNREACHABLE}})
        assert sshhosts.host_dir(lab.name, "node01").exists()
    finally:
        lab.down()
    assert not sshhosts.data_dir(lab.name).exists()
    cgroups = [p for root in sshhosts._cgroup2_mounts() for p in root.glob(f"pikube/{lab.name}-*")]
    assert cgroups == []
