"""An apply cut short resumes safely: Ctrl-C, a killed builder, a pulled cable, a power cut.

Each scenario interrupts `pikube cluster apply` (run from the lab's client as a user would)
while dpkg is installing packages on fresh lab Pis, the moment where being cut short hurts,
then shows that the next apply completes, that a plan after it is empty (so no package manager
is running, dpkg has nothing half installed and no journal, and every file and service is as
the spec says), and that no temporary file of an atomic write is left.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from pikube.lab.hosts import sshhosts
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from tests.conftest import new_lab_name
from tests.helpers import wait_until

pytestmark = pytest.mark.lab

_DPKG_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def fresh_pis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """Four fresh Pis; each scenario prepares its own with a spec naming only those."""
    lab = Lab(new_lab_name())
    try:
        lab.up()
        sshhosts.up_ssh_hosts(lab)
        spec = tmp_path_factory.mktemp("spec") / "cluster.yaml"
        spec.write_text(sshhosts.cluster_spec_yaml(lab))
        yield lab, spec
    finally:
        lab.down()


def _spec_for(spec: Path, tmp_path: Path, *nodes: str) -> Path:
    """The lab's spec cut down to `nodes` (the first one the control plane)."""
    data = yaml.safe_load(spec.read_text())
    data["nodes"] = [
        {**n, "role": "control-plane" if n["name"] == nodes[0] else "worker"}
        for n in data["nodes"]
        if n["name"] in nodes
    ]
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _pikube(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return lab.run("client", [sys.executable, "-m", "pikube", *args], timeout_s=240)


def _start_apply(lab: Lab, spec: Path, log: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "pikube", "cluster", "apply", "-f", str(spec), "--yes"]
    return subprocess.Popen(
        lab.command("client", [*argv, "--log", str(log)]),
        env=lab.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    wait_until(condition, timeout_s, what)


def _runs(lab: Lab, host: str, program: str, *args: str) -> bool:
    """Is `program` (with all of `args`) running on the host?"""
    for _pid, argv in sshhosts.host_processes(lab.name, host):
        if argv and argv[0].rsplit("/", 1)[-1] == program and set(args) <= set(argv):
            return True
    return False


def _installing(lab: Lab, host: str) -> bool:
    """dpkg run by apt to unpack or configure packages (not the facts' dpkg queries)."""
    return _runs(lab, host, "dpkg", "--status-fd")


def _interrupt_when_dpkg_runs(
    lab: Lab, host: str, apply: subprocess.Popen[str], interrupt: Callable[[], None]
) -> None:
    try:
        _wait_for(lambda: _installing(lab, host), f"dpkg on {host}", _DPKG_TIMEOUT_S)
    except AssertionError:
        apply.kill()
        raise AssertionError(f"dpkg never ran on {host}:\n{apply.communicate()[0]}") from None
    interrupt()


def _log(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _ssh(lab: Lab, host: str, command: str) -> str:
    key = str(sshhosts.client_key_path(lab.name))
    options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    address = f"root@{lab.topology.host(host).ipv4}"
    result = lab.run("client", ["ssh", "-i", key, *options, address, command], check=True)
    return result.stdout


def _resumes_cleanly(lab: Lab, spec: Path, hosts: tuple[str, ...]) -> None:
    result = _pikube(lab, "cluster", "apply", "-f", str(spec), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    for host in hosts:
        assert f"{host}: done" in result.stdout
    plan = _pikube(lab, "cluster", "plan", "-f", str(spec), "-o", "json")
    assert plan.returncode == 0, plan.stderr
    assert {n: h["changes"] for n, h in json.loads(plan.stdout)["hosts"].items()} == {
        h: [] for h in hosts
    }
    for host in hosts:
        leftovers = "find /etc /boot/firmware -name '*.pikube-new'; dpkg --audit; dpkg -C"
        assert _ssh(lab, host, leftovers) == ""
        assert _ssh(lab, host, "dpkg-query -W -f='${db:Status-Abbrev}' kubelet") == "hi "


def test_ctrl_c_lets_each_node_finish_its_command_then_stops(
    fresh_pis: tuple[Lab, Path], tmp_path: Path
) -> None:
    lab, lab_spec = fresh_pis
    spec = _spec_for(lab_spec, tmp_path, "master")
    log = tmp_path / "apply.jsonl"
    apply = _start_apply(lab, spec, log)
    _interrupt_when_dpkg_runs(lab, "master", apply, lambda: apply.send_signal(signal.SIGINT))
    out, _ = apply.communicate(timeout=240)
    assert apply.returncode == 130, out
    assert "master: interrupted" in out
    assert "nothing half done" in out
    assert "Traceback" not in out
    entries = [e for e in _log(log) if not e.get("read_only")]
    # The install dpkg was running finished (status 0), and nothing started after it.
    assert [e["change"] for e in entries] == ["packages", "packages"]
    assert all(e["exit_status"] == 0 for e in entries)
    assert not _runs(lab, "master", "dpkg")
    assert not _runs(lab, "master", "apt-get")
    assert _ssh(lab, "master", "dpkg --audit; ls /var/lib/dpkg/updates") == ""
    _resumes_cleanly(lab, spec, ("master",))


def test_a_killed_apply_leaves_the_running_install_to_finish_and_resumes(
    fresh_pis: tuple[Lab, Path], tmp_path: Path
) -> None:
    lab, lab_spec = fresh_pis
    spec = _spec_for(lab_spec, tmp_path, "node01")
    apply = _start_apply(lab, spec, tmp_path / "apply.jsonl")
    _interrupt_when_dpkg_runs(lab, "node01", apply, apply.kill)
    apply.communicate(timeout=30)
    assert apply.returncode == -signal.SIGKILL
    # The builder is gone; the install it had started runs to its end on the Pi regardless.
    _wait_for(
        lambda: not _runs(lab, "node01", "apt-get"), "apt-get ending on node01", _DPKG_TIMEOUT_S
    )
    assert _ssh(lab, "node01", "dpkg --audit; ls /var/lib/dpkg/updates") == ""
    assert _ssh(lab, "node01", "dpkg-query -W -f='${db:Status-Abbrev}' containerd") == "ii "
    _resumes_cleanly(lab, spec, ("node01",))


def test_a_lost_node_and_a_power_cut_stop_only_those_nodes_and_resume(
    fresh_pis: tuple[Lab, Path], tmp_path: Path
) -> None:
    """node02's cable is pulled while dpkg unpacks there (silence, found by keepalives);
    node03 loses power while dpkg configures there (dpkg really is cut short)."""
    lab, lab_spec = fresh_pis
    spec = _spec_for(lab_spec, tmp_path, "node02", "node03")
    apply = _start_apply(lab, spec, tmp_path / "apply.jsonl")
    port = lab.topology.bridge_port("node02")
    interruptions: dict[str, tuple[Callable[[], bool], Callable[[], None]]] = {
        "node02": (
            lambda: _installing(lab, "node02"),
            lambda: netns.set_link_state(lab.topology.lan_namespace, port, up=False),
        ),
        "node03": (
            lambda: _runs(lab, "node03", "dpkg", "--status-fd", "--configure"),
            lambda: sshhosts.power_cut(lab, "node03"),
        ),
    }
    try:
        deadline = time.monotonic() + _DPKG_TIMEOUT_S
        while interruptions:
            for host, (ready, interrupt) in list(interruptions.items()):
                if ready():
                    interrupt()
                    del interruptions[host]
            if time.monotonic() > deadline:
                apply.kill()
                raise AssertionError(f"dpkg never got to {set(interruptions)}")
            time.sleep(0.02)
        out, _ = apply.communicate(timeout=240)
    finally:
        netns.set_link_state(lab.topology.lan_namespace, port, up=True)
    assert apply.returncode == 1, out
    assert "node02: unreachable" in out
    assert "no answer to keepalives" in out
    assert "node03: unreachable" in out
    assert "apply again once it is back" in out
    sshhosts.power_on(lab, "node03")
    plan = _pikube(lab, "cluster", "plan", "-f", str(spec), "-o", "json")
    node03 = json.loads(plan.stdout)["hosts"]["node03"]["changes"]
    assert node03[0]["id"] == "dpkg-repair", node03  # the power cut left dpkg half done
    _resumes_cleanly(lab, spec, ("node02", "node03"))
