"""The Kubernetes .deb packages the lab's pkgs.k8s.io mirror serves, built from real binaries.

Owns what the five packages of the pkgs.k8s.io v1.31 repository are (kubelet, kubeadm, kubectl,
cri-tools, kubernetes-cni): their names, version strings, Depends, the paths their files take on
a host, kubelet's systemd unit, kubeadm's drop-in for it and /etc/default/kubelet, and turning
that recipe plus a directory of built binaries into .deb files with dpkg-deb.

The recipe (`lab_packages`, `control_text`, `layout`) is pure: plain data in and out. Only
`build_debs` touches files. Where the binaries come from is not this module's business: the
caller hands it a mapping of binary name to file (the Go build, or stand-ins in unit tests).
What differs from upstream's packages: docs/decisions/0055.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pikube.errors import PikubeError
from pikube.lab.kubernetes.components import BY_NAME


def package_version(component: str) -> str:
    """The version pkgs.k8s.io would give the built component: upstream-<rev>.<build>, with
    upstream the version actually built (cri-tools is built at v1.30.0: decision 0051)."""
    return BY_NAME[component].version.removeprefix("v") + "-1.1"


KUBERNETES_VERSION = BY_NAME["kubernetes"].version.removeprefix("v")
KUBERNETES_PACKAGE_VERSION = package_version("kubernetes")
CRI_TOOLS_PACKAGE_VERSION = package_version("cri-tools")
KUBERNETES_CNI_PACKAGE_VERSION = package_version("cni-plugins")
# containerd as the seed runs it (1.7.25), packaged for the lab's Debian subset under Debian's
# own package name, so the builder's `apt-get install containerd` takes it (decision 0170).
CONTAINERD_PACKAGE_VERSION = BY_NAME["containerd"].version.removeprefix("v") + "-1"
CONTAINERD_UPSTREAM_BINARY = "/usr/local/bin/containerd"
# The plugins of containernetworking/plugins v1.5.1, all of which kubernetes-cni ships.
CNI_PLUGINS = (
    "bandwidth",
    "bridge",
    "dhcp",
    "dummy",
    "firewall",
    "host-device",
    "host-local",
    "ipvlan",
    "loopback",
    "macvlan",
    "portmap",
    "ptp",
    "sbr",
    "static",
    "tap",
    "tuning",
    "vlan",
    "vrf",
)
CNI_BIN_DIR = "/opt/cni/bin"
UNIT_DIR = "/usr/lib/systemd/system"
KUBELET_DEFAULTS = "/etc/default/kubelet"
MAINTAINER = "pikube lab <lab-repository@pikube.invalid>"
HOMEPAGE = "https://kubernetes.io"
# Every file in a package gets this mtime, so the same binaries give the same .deb bytes.
_EPOCH = 1736951524  # v1.31.5's build date, 2025-01-15T14:32:04Z

KUBELET_UNIT = """\
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""
# kubeadm's drop-in: how a kubeadm-made node starts kubelet. The variable names and the
# ExecStart line are upstream's (kubeadm writes kubeadm-flags.env with KUBELET_KUBEADM_ARGS);
# the comments are ours.
KUBEADM_DROP_IN = f"""\
# Installed by the kubeadm package: kubelet as kubeadm init/join configure it.
[Service]
# The node's credentials: the bootstrap token's kubeconfig until the TLS bootstrap has
# written kubelet.conf, then kubelet.conf.
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
# The KubeletConfiguration kubeadm writes from the cluster's kubelet-config ConfigMap.
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# Written by kubeadm init/join at run time: sets KUBELET_KUBEADM_ARGS for this node.
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# The administrator's last word, KUBELET_EXTRA_ARGS (prefer the kubeadm configuration's
# kubeletExtraArgs where you can).
EnvironmentFile=-{KUBELET_DEFAULTS}
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""  # noqa: E501 (systemd lines cannot be wrapped without changing them)
# A conffile: the cluster builder edits KUBELET_EXTRA_ARGS here (cluster/operations.py), and
# apt keeps the edited file on upgrades.
KUBELET_DEFAULTS_TEXT = "KUBELET_EXTRA_ARGS=\n"


@dataclass(frozen=True)
class PackageFile:
    """One file a package installs: its text, or the built binary it is a copy of."""

    path: str  # absolute, as on the host
    mode: int
    text: str | None = None
    binary: str | None = None  # a key of the binaries mapping


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    summary: str
    description: tuple[str, ...]  # the long description, one paragraph line per item
    depends: tuple[str, ...]
    files: tuple[PackageFile, ...]
    conffiles: tuple[str, ...] = ()
    homepage: str = HOMEPAGE


def lab_packages(
    cri_tools_version: str = CRI_TOOLS_PACKAGE_VERSION,
    cni_plugins: Sequence[str] = CNI_PLUGINS,
) -> tuple[DebPackage, ...]:
    """The five packages of the lab's pkgs.k8s.io v1.31 repository."""
    kube = KUBERNETES_PACKAGE_VERSION
    return (
        DebPackage(
            name="kubelet",
            version=kube,
            summary="Node agent for Kubernetes clusters",
            description=(
                "The kubelet runs on every node: it starts the containers of the Pods bound "
                "to its node through the container runtime and reports their state.",
            ),
            depends=(
                "iptables (>= 1.4.21)",
                "kubernetes-cni (>= 1.2.0)",
                "iproute2",
                "mount",
                "util-linux",
                "conntrack",
                "ethtool",
            ),
            files=(
                PackageFile("/usr/bin/kubelet", 0o755, binary="kubelet"),
                PackageFile(f"{UNIT_DIR}/kubelet.service", 0o644, text=KUBELET_UNIT),
                PackageFile(KUBELET_DEFAULTS, 0o644, text=KUBELET_DEFAULTS_TEXT),
            ),
            conffiles=(KUBELET_DEFAULTS,),
        ),
        DebPackage(
            name="kubeadm",
            version=kube,
            summary="Command-line utility for administering a Kubernetes cluster",
            description=(
                "kubeadm creates a cluster's control plane (kubeadm init) and joins nodes to "
                "it (kubeadm join); it also ships the kubelet drop-in those commands rely on.",
            ),
            depends=("cri-tools (>= 1.30.0)",),
            files=(
                PackageFile("/usr/bin/kubeadm", 0o755, binary="kubeadm"),
                PackageFile(
                    f"{UNIT_DIR}/kubelet.service.d/10-kubeadm.conf", 0o644, text=KUBEADM_DROP_IN
                ),
            ),
        ),
        DebPackage(
            name="kubectl",
            version=kube,
            summary="Command-line utility for interacting with a Kubernetes cluster",
            description=("kubectl talks to a cluster's API server: it reads and changes objects.",),
            depends=(),
            files=(PackageFile("/usr/bin/kubectl", 0o755, binary="kubectl"),),
        ),
        DebPackage(
            name="cri-tools",
            version=cri_tools_version,
            summary="Command-line utility for interacting with a container runtime",
            description=("crictl inspects and debugs container runtimes through the CRI.",),
            depends=(),
            files=(PackageFile("/usr/bin/crictl", 0o755, binary="crictl"),),
        ),
        DebPackage(
            name="kubernetes-cni",
            version=KUBERNETES_CNI_PACKAGE_VERSION,
            summary="Binaries required to provision kubernetes container networking",
            description=(
                "The reference CNI plugins (bridge, host-local, loopback, portmap, ...) in "
                f"{CNI_BIN_DIR}, where kubelet and flannel look for them.",
            ),
            depends=(),
            files=tuple(
                PackageFile(f"{CNI_BIN_DIR}/{plugin}", 0o755, binary=plugin)
                for plugin in sorted(cni_plugins)
            ),
        ),
    )


def containerd_unit(upstream_unit: str) -> str:
    """containerd's own systemd unit (containerd.service of its module) with the daemon where
    a package puts it, /usr/bin, as Debian's and Docker's containerd packages both do."""
    if f"ExecStart={CONTAINERD_UPSTREAM_BINARY}\n" not in upstream_unit:
        raise PikubeError(
            f"containerd's unit no longer starts {CONTAINERD_UPSTREAM_BINARY}: "
            "the package recipe needs a look"
        )
    return upstream_unit.replace(
        f"ExecStart={CONTAINERD_UPSTREAM_BINARY}\n", "ExecStart=/usr/bin/containerd\n"
    )


def containerd_package(unit: str = "") -> DebPackage:
    """containerd 1.7.25 built from its module, as a `containerd` package for the lab's Debian
    subset: the daemon, ctr and the runc v2 shim; runc itself is Debian's."""
    return DebPackage(
        name="containerd",
        version=CONTAINERD_PACKAGE_VERSION,
        summary="daemon to control runC",
        description=(
            "containerd manages the complete container lifecycle of its host system, from "
            "image transfer and storage to container execution and supervision.",
            "Built by pikube from github.com/containerd/containerd "
            f"{BY_NAME['containerd'].version}, the version the seed cluster runs.",
        ),
        depends=("runc (>= 1.1.0)", "libc6 (>= 2.34)"),
        files=(
            PackageFile("/usr/bin/containerd", 0o755, binary="containerd"),
            PackageFile(
                "/usr/bin/containerd-shim-runc-v2", 0o755, binary="containerd-shim-runc-v2"
            ),
            PackageFile("/usr/bin/ctr", 0o755, binary="ctr"),
            PackageFile(f"{UNIT_DIR}/containerd.service", 0o644, text=unit),
        ),
        homepage="https://containerd.io",
    )


def control_text(package: DebPackage, architecture: str, installed_size_kib: int) -> str:
    """The package's DEBIAN/control."""
    lines = [
        f"Package: {package.name}",
        f"Version: {package.version}",
        f"Architecture: {architecture}",
        f"Maintainer: {MAINTAINER}",
        f"Installed-Size: {installed_size_kib}",
    ]
    if package.depends:
        lines.append(f"Depends: {', '.join(package.depends)}")
    lines += [
        "Section: admin",
        "Priority: optional",
        f"Homepage: {package.homepage}",
        f"Description: {package.summary}",
    ]
    lines += [f" {line}" for line in package.description]
    return "\n".join(lines) + "\n"


def installed_size_kib(file_sizes: Sequence[int]) -> int:
    """dpkg's Installed-Size: KiB, each file rounded up (as dpkg-gencontrol counts)."""
    return sum(math.ceil(size / 1024) for size in file_sizes)


def deb_filename(package: DebPackage, architecture: str) -> str:
    return f"{package.name}_{package.version}_{architecture}.deb"


def layout(package: DebPackage) -> list[str]:
    """Every directory and file the package installs, sorted, as `dpkg -c` names them."""
    entries: set[str] = set()
    for item in package.files:
        parts = item.path.strip("/").split("/")
        for depth in range(1, len(parts)):
            entries.add("/" + "/".join(parts[:depth]) + "/")
        entries.add(item.path)
    return sorted(entries)


def required_binaries(packages: Sequence[DebPackage]) -> list[str]:
    return sorted({f.binary for p in packages for f in p.files if f.binary is not None})


def build_debs(
    packages: Sequence[DebPackage],
    binaries: Mapping[str, Path],
    out_dir: Path,
    architecture: str,
) -> list[Path]:
    """dpkg-deb each package into out_dir; the same inputs give the same bytes."""
    missing = [name for name in required_binaries(packages) if name not in binaries]
    if missing:
        raise PikubeError(
            f"cannot build the Kubernetes packages: no binary for {', '.join(missing)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    with tempfile.TemporaryDirectory(prefix="pikube-debs-") as work_dir:
        for package in packages:
            stage = Path(work_dir) / package.name
            sizes = []
            for item in package.files:
                target = stage / item.path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                if item.binary is not None:
                    shutil.copyfile(binaries[item.binary], target)
                else:
                    target.write_text(item.text or "")
                target.chmod(item.mode)
                sizes.append(target.stat().st_size)
            debian = stage / "DEBIAN"
            debian.mkdir()
            size = installed_size_kib(sizes)
            (debian / "control").write_text(control_text(package, architecture, size))
            if package.conffiles:
                (debian / "conffiles").write_text("".join(f"{c}\n" for c in package.conffiles))
            for path in [stage, *stage.rglob("*")]:
                if path.is_dir():
                    path.chmod(0o755)
                os.utime(path, (_EPOCH, _EPOCH), follow_symlinks=False)
            out = out_dir / deb_filename(package, architecture)
            result = subprocess.run(
                ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(stage), str(out)],
                capture_output=True,
                text=True,
                env={**os.environ, "SOURCE_DATE_EPOCH": str(_EPOCH)},
                check=False,
            )
            if result.returncode != 0:
                tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
                raise PikubeError(f"dpkg-deb could not build {out.name}: {' '.join(tail)}")
            built.append(out)
    return built
