"""`pikube lab` options a new user gets wrong: --fault, cluster-spec without --ssh, hints that
name the lab, and what `lab status` calls the API stand-in."""

from __future__ import annotations

import json

import pytest

from pikube.lab.lab import Lab
from tests.conftest import new_lab_name
from tests.helpers import run_pikube

pytestmark = pytest.mark.lab


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("node02=bogus", "--fault 'node02=bogus': unknown fault 'bogus' (faults: "),
        ("node02", "--fault 'node02': write HOST=FAULT"),
        ("client=cri-disabled", "--fault: cannot give a fault to 'client': the SSH hosts are"),
    ],
)
def test_a_bad_fault_is_refused_before_anything_is_built(fault: str, message: str) -> None:
    name = new_lab_name()
    try:
        result = run_pikube("lab", "up", "--name", name, "--fault", fault)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.startswith(f"pikube: error: {message}"), result.stderr
        assert not Lab(name).exists()  # nothing was built, so nothing is left up
    finally:
        Lab(name).down()


def test_cluster_spec_of_a_lab_without_ssh_hosts_says_how_to_start_them() -> None:
    name = new_lab_name()
    try:
        assert run_pikube("lab", "up", "--name", name).returncode == 0
        result = run_pikube("lab", "cluster-spec", "--name", name)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == (
            f"pikube: error: lab {name!r} has no SSH hosts: start it with "
            f"`pikube lab up --name {name} --ssh`\n"
        )
        status = json.loads(run_pikube("lab", "status", "--name", name, "-o", "json").stdout)
        names = {p["name"] for p in status["processes"]}
        assert "api-stand-in" in names
        assert "kube-apiserver" not in names  # it is not one (yet)
        assert status["kubernetes_api"]["kind"] == "stand-in"
        assert status["kubernetes_api"]["running"] is True
        table = run_pikube("lab", "status", "--name", name).stdout
        assert "kube-apiserver" not in table
        assert (
            "Kubernetes API: in-memory API stand-in (pikube's own, in Python) at "
            "https://198.51.100.20:6443\n"
        ) in table
    finally:
        Lab(name).down()


def test_hints_name_the_lab_unless_it_is_the_default() -> None:
    name = new_lab_name()
    for command in ("kubeconfig", "cluster-spec"):
        result = run_pikube("lab", command, "--name", name)
        assert result.returncode == 1
        assert result.stderr == (
            f"pikube: error: lab {name!r} is not up; start it with `pikube lab up --name {name}`\n"
        )
