"""The Debian base of the lab's images runs: its programs find their libraries and links.

Unpacks the nginx image's layers (base + nginx) and runs its programs under chroot (root, no
namespace or network involved): the checks kube-proxy, flanneld, flannel's init containers and
nginx depend on.
"""

from __future__ import annotations

import gzip
import subprocess
import tarfile
from pathlib import Path

import pytest

from pikube.lab.kubernetes import binaries, images

pytestmark = pytest.mark.lab

NGINX = "docker.io/library/nginx:latest"


def _chroot(root: Path, *argv: str) -> str:
    result = subprocess.run(
        ["chroot", str(root), *argv], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def test_the_debian_base_has_iptables_conntrack_cp_and_nginx_works(tmp_path: Path) -> None:
    wanted = [i for i in images.lab_images() if i.reference == NGINX]
    layout = images.ensure_images({}, wanted)
    root = tmp_path / "root"
    root.mkdir()
    layers = layout.manifest(NGINX)["layers"]
    assert isinstance(layers, list)
    assert len(layers) == 2  # the shared Debian base, then nginx
    for descriptor in layers:
        with (
            gzip.open(layout.blob_path(descriptor["digest"])) as raw,
            tarfile.open(fileobj=raw) as tar,
        ):
            tar.extractall(root, filter="tar")
    assert "nf_tables" in _chroot(root, "/usr/sbin/iptables", "--version")
    assert "nf_tables" in _chroot(root, "/usr/sbin/ip6tables-restore", "--version")
    assert "conntrack" in _chroot(root, "/usr/sbin/conntrack", "--version")
    _chroot(root, "/bin/cp", "/etc/passwd", "/tmp/copied")  # flannel's init containers
    assert (root / "tmp" / "copied").read_text().startswith("root:x:0:0:")
    # nginx logs to /dev/stdout and /dev/stderr, which a container runtime provides.
    (root / "dev").mkdir()
    (root / "dev" / "stdout").write_text("")
    (root / "dev" / "stderr").write_text("")
    assert "successful" in _chroot(root, "/usr/sbin/nginx", "-t")
    assert "Welcome to nginx" in (root / "usr/share/nginx/html/index.html").read_text()
    assert not (root / "usr/share/doc").exists()  # trimmed


def test_the_images_are_exactly_what_the_built_kubeadm_asks_for() -> None:
    kubeadm = binaries.built_binaries(["kubeadm"])["kubeadm"]
    listed = subprocess.run(
        [str(kubeadm), "config", "images", "list", "--kubernetes-version", "v1.31.5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    ours = {i.reference for i in images.lab_images()}
    assert set(listed) <= ours
    assert len(listed) == 7
