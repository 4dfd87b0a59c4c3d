"""The Kubernetes .deb packages: upstream's names, versions, paths, unit and drop-in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pikube.cluster.operations import kubelet_defaults
from pikube.errors import PikubeError
from pikube.lab.kubernetes import debs


def _package(name: str) -> debs.DebPackage:
    return next(p for p in debs.lab_packages() if p.name == name)


def test_the_repository_has_upstreams_five_packages_and_versions() -> None:
    versions = {p.name: p.version for p in debs.lab_packages()}
    assert versions == {
        "kubelet": "1.31.5-1.1",
        "kubeadm": "1.31.5-1.1",
        "kubectl": "1.31.5-1.1",
        "cri-tools": "1.30.0-1.1",  # the version built (decision 0051)
        "kubernetes-cni": "1.5.1-1.1",
    }


def test_kubelet_control_file_has_upstreams_depends() -> None:
    control = debs.control_text(_package("kubelet"), "amd64", 123)
    fields = dict(line.split(": ", 1) for line in control.splitlines() if not line[0].isspace())
    assert fields["Package"] == "kubelet"
    assert fields["Version"] == "1.31.5-1.1"
    assert fields["Architecture"] == "amd64"
    assert fields["Installed-Size"] == "123"
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert "kubernetes-cni (>= 1.2.0)" in depends
    assert "iptables (>= 1.4.21)" in depends
    assert {"conntrack", "ethtool", "iproute2", "mount", "util-linux"} <= set(depends)


def test_kubeadm_needs_cri_tools_and_kubectl_needs_nothing() -> None:
    assert _package("kubeadm").depends == ("cri-tools (>= 1.30.0)",)
    assert "Depends:" not in debs.control_text(_package("kubectl"), "amd64", 1)


def test_files_land_where_upstreams_packages_put_them() -> None:
    assert debs.layout(_package("kubelet")) == [
        "/etc/",
        "/etc/default/",
        "/etc/default/kubelet",
        "/usr/",
        "/usr/bin/",
        "/usr/bin/kubelet",
        "/usr/lib/",
        "/usr/lib/systemd/",
        "/usr/lib/systemd/system/",
        "/usr/lib/systemd/system/kubelet.service",
    ]
    assert "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf" in debs.layout(
        _package("kubeadm")
    )
    assert "/usr/bin/crictl" in debs.layout(_package("cri-tools"))
    cni = debs.layout(_package("kubernetes-cni"))
    for plugin in ("bridge", "host-local", "loopback", "portmap"):  # what flannel chains
        assert f"/opt/cni/bin/{plugin}" in cni


def _unit_settings(text: str) -> list[tuple[str, str]]:
    return [
        (key, value)
        for line in text.splitlines()
        if "=" in line and not line.startswith("#")
        for key, _, value in [line.partition("=")]
    ]


def test_kubelet_unit_restarts_forever_after_the_network() -> None:
    settings = dict(_unit_settings(debs.KUBELET_UNIT))
    assert settings["ExecStart"] == "/usr/bin/kubelet"
    assert settings["Restart"] == "always"
    assert settings["StartLimitInterval"] == "0"
    assert settings["RestartSec"] == "10"
    assert settings["Wants"] == settings["After"] == "network-online.target"


def test_the_kubeadm_drop_in_starts_kubelet_with_kubeadms_arguments() -> None:
    settings = _unit_settings(debs.KUBEADM_DROP_IN)
    exec_starts = [value for key, value in settings if key == "ExecStart"]
    assert exec_starts == [
        "",
        "/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS "
        "$KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS",
    ]
    files = [value for key, value in settings if key == "EnvironmentFile"]
    assert files == ["-/var/lib/kubelet/kubeadm-flags.env", "-/etc/default/kubelet"]
    environment = " ".join(value for key, value in settings if key == "Environment")
    assert "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf" in environment
    assert "--kubeconfig=/etc/kubernetes/kubelet.conf" in environment
    assert "--config=/var/lib/kubelet/config.yaml" in environment


def test_etc_default_kubelet_is_a_conffile_the_builder_leaves_alone() -> None:
    kubelet = _package("kubelet")
    assert kubelet.conffiles == ("/etc/default/kubelet",)
    shipped = next(f.text for f in kubelet.files if f.path == "/etc/default/kubelet")
    # What the builder writes when swap is disabled is exactly what the package ships.
    assert kubelet_defaults(shipped, tolerate_swap=False) == shipped
    assert (
        kubelet_defaults(shipped, tolerate_swap=True) == "KUBELET_EXTRA_ARGS=--fail-swap-on=false\n"
    )


def test_installed_size_counts_kib_per_file_rounded_up() -> None:
    assert debs.installed_size_kib([1, 1024, 1025]) == 1 + 1 + 2


def _stand_in_binaries(directory: Path) -> dict[str, Path]:
    binaries = {}
    for name in debs.required_binaries(debs.lab_packages()):
        path = directory / name
        path.write_text(f"#!/bin/sh\necho {name}\n")
        binaries[name] = path
    return binaries


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_built_debs_hold_the_layout_and_are_reproducible(tmp_path: Path) -> None:
    binaries = _stand_in_binaries(tmp_path)
    first = debs.build_debs(debs.lab_packages(), binaries, tmp_path / "a", "amd64")
    second = debs.build_debs(debs.lab_packages(), binaries, tmp_path / "b", "amd64")
    assert [p.name for p in first] == [
        "kubelet_1.31.5-1.1_amd64.deb",
        "kubeadm_1.31.5-1.1_amd64.deb",
        "kubectl_1.31.5-1.1_amd64.deb",
        "cri-tools_1.30.0-1.1_amd64.deb",
        "kubernetes-cni_1.5.1-1.1_amd64.deb",
    ]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    kubelet = first[0]
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(kubelet)], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in listing.splitlines()]
    paths = {row[-1].lstrip(".") for row in rows}
    assert {"/usr/bin/kubelet", "/usr/lib/systemd/system/kubelet.service"} <= paths
    modes = {row[-1].lstrip("."): row[0] for row in rows}
    assert modes["/usr/bin/kubelet"] == "-rwxr-xr-x"
    assert all(row[1] == "root/root" for row in rows)
    conffiles = subprocess.run(
        ["dpkg-deb", "-I", str(kubelet), "conffiles"], capture_output=True, text=True, check=True
    ).stdout
    assert conffiles == "/etc/default/kubelet\n"
    assert (
        subprocess.run(
            ["dpkg-deb", "-f", str(kubelet), "Version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "1.31.5-1.1"
    )


def test_a_missing_binary_is_named(tmp_path: Path) -> None:
    binaries = _stand_in_binaries(tmp_path)
    del binaries["crictl"]
    with pytest.raises(PikubeError, match="no binary for crictl"):
        debs.build_debs(debs.lab_packages(), binaries, tmp_path / "out", "amd64")


UPSTREAM_UNIT = """\
[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd

Type=notify
"""


def test_containerd_is_the_seeds_version_under_debians_package_name() -> None:
    package = debs.containerd_package(debs.containerd_unit(UPSTREAM_UNIT))
    assert (package.name, package.version) == ("containerd", "1.7.25-1")
    paths = {f.path for f in package.files}
    assert paths == {
        "/usr/bin/containerd",
        "/usr/bin/containerd-shim-runc-v2",
        "/usr/bin/ctr",
        "/usr/lib/systemd/system/containerd.service",
    }
    assert any(d.startswith("runc ") for d in package.depends)
    assert "Homepage: https://containerd.io" in debs.control_text(package, "amd64", 1)


def test_containerd_unit_starts_the_daemon_from_usr_bin() -> None:
    unit = debs.containerd_unit(UPSTREAM_UNIT)
    assert "ExecStart=/usr/bin/containerd\n" in unit
    assert "/usr/local/bin" not in unit
    assert "ExecStartPre=-/sbin/modprobe overlay" in unit  # everything else as upstream's


def test_a_changed_upstream_unit_is_refused_not_silently_kept() -> None:
    with pytest.raises(PikubeError, match="no longer starts"):
        debs.containerd_unit("[Service]\nExecStart=/opt/containerd/bin/containerd\n")
