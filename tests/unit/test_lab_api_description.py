"""What `pikube lab status` says serves a lab's Kubernetes API: the in-memory stand-in, real
Kubernetes (`lab up --kubernetes`), or nothing; never calls the stand-in kube-apiserver."""

from __future__ import annotations

from pathlib import Path

import pytest

from pikube.lab.hosts.processes import ProcessRecord
from pikube.lab.kubeapi import launch
from pikube.lab.lab import Lab, ProcessStatus


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    monkeypatch.setenv("PIKUBE_RUN_DIR", str(tmp_path))
    return Lab("t1")


def _process(name: str, host: str = "master", running: bool = True) -> ProcessStatus:
    record = ProcessRecord(name, host, 42, 1, ("python3", "-m", "pikube.lab.kubeapi"), "log")
    return ProcessStatus(record, running)


def test_a_lab_without_an_api_has_none(lab: Lab) -> None:
    assert launch.describe(lab, [_process("nginx", "node01")]) is None


def test_the_stand_in_is_called_what_it_is(lab: Lab) -> None:
    api = launch.describe(lab, [_process(launch.PROCESS_NAME, running=False)])
    assert api is not None
    assert (api.kind, api.server_url, api.running) == (
        "stand-in",
        "https://198.51.100.20:6443",
        False,
    )
    assert api.what.startswith("in-memory API stand-in")
    assert "kube-apiserver" not in api.what
    assert api.to_json()["kubeconfig"] == str(launch.kubeconfig_path("t1"))


def test_real_kubernetes_is_said_to_be_real(lab: Lab) -> None:
    directory = launch.kubernetes_dir(lab.name)
    directory.mkdir(parents=True)
    (directory / "admin.conf").write_text("apiVersion: v1\n")
    assert launch.describe(lab, []) is None  # an admin.conf alone: no cluster was made
    (directory / "cluster.yaml").write_text("nodes: []\n")
    api = launch.describe(lab, [])
    assert api is not None
    assert (api.kind, api.what) == ("kubernetes", launch.KUBERNETES_WHAT)
    assert api.what.startswith("real Kubernetes v1.31.5")
