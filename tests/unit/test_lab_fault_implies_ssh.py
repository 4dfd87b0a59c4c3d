"""`pikube lab up --fault HOST=FAULT` without `--ssh` boots the SSH hosts with that fault: a
fault exists only on an SSH host, so asking for one asks for them (decision 0147). Nothing is
built here: the lab, the API stand-in and the SSH hosts' boot are replaced by recorders."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from pikube.cli import cluster_view
from pikube.cli import lab as lab_cli
from pikube.lab.hosts.processes import ProcessRecord
from pikube.lab.kubeapi import launch
from pikube.lab.lab import Lab, LabStatus, UpReport


@pytest.fixture
def booted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...]]]:
    calls: list[tuple[str, tuple[str, ...]]] = []

    def up(_self: Lab) -> UpReport:
        return UpReport(created=True, elapsed_s=0.0)

    def status(self: Lab) -> LabStatus:
        return LabStatus(self.name, True, True, (), ())

    def start_in_lab(lab: Lab, **_: Any) -> Any:
        record = ProcessRecord(launch.PROCESS_NAME, "master", 1, 1, (), "log")
        config, sock = launch.kubeconfig_path(lab.name), launch.admin_socket_path(lab.name)
        return launch.KubeApi(record, "https://198.51.100.20:6443", config, sock)

    monkeypatch.setattr(Lab, "up", up)
    monkeypatch.setattr(Lab, "status", status)
    monkeypatch.setattr(launch, "start_in_lab", start_in_lab)
    monkeypatch.setattr(
        cluster_view,
        "print_ssh_hosts_up",
        lambda lab, faults: calls.append((lab.name, tuple(faults))),
    )
    return calls


def test_a_fault_boots_the_ssh_hosts_without_ssh(booted: list[Any]) -> None:
    result = CliRunner().invoke(lab_cli.lab, ["up", "-n", "t1", "--fault", "node02=cri-disabled"])
    assert result.exit_code == 0, result.output
    assert booted == [("t1", ("node02=cri-disabled",))]


def test_without_ssh_or_fault_there_are_no_ssh_hosts(booted: list[Any]) -> None:
    result = CliRunner().invoke(lab_cli.lab, ["up", "-n", "t1"])
    assert result.exit_code == 0, result.output
    assert booted == []
