"""The lab's apt repositories: what the cluster builder installs, served inside the lab.

Owns two signed repositories, built once and cached next to the lab root (rootfs.py):

- `debian/`: a Debian mirror subset holding the packages the builder installs on a fresh
  Raspberry Pi OS (curl, gpg, runc, ...) and their dependencies, downloaded from the
  machine's Debian mirror with apt-get. The dependency closure is computed against the lab
  root's own dpkg status, so every lab host finds all it needs and nothing else. Its
  `containerd` is the seed's 1.7.25 built from its module (kubernetes/debs.py), not Debian's
  1.6.20: decision 0170.
- `kubernetes/core:/stable:/v1.31/deb/`: laid out like pkgs.k8s.io (a flat repository with its
  `Release.key`), holding kubelet, kubeadm, kubectl, cri-tools and kubernetes-cni built from
  the pinned components (kubernetes/debs.py makes the packages, kubernetes/gobuild.py the
  binaries: a cold build takes a while, then it is a cache hit).

Both are signed with a lab key made once (gpg), so hosts use apt's normal signature checks:
the Debian subset's key is part of the lab image (as Raspberry Pi OS ships its archive key),
the Kubernetes one is fetched by the builder exactly as from pkgs.k8s.io.
The repositories are served over HTTP from the lab's router (see sshhosts.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pikube.errors import PikubeError
from pikube.lab.hosts import rootfs
from pikube.lab.kubernetes import binaries, debs, gobuild
from pikube.system import require_commands

KUBERNETES_VERSION = debs.KUBERNETES_VERSION
KUBERNETES_PACKAGE_VERSION = debs.KUBERNETES_PACKAGE_VERSION  # the form pkgs.k8s.io uses
KUBERNETES_REPO_PATH = "kubernetes/core:/stable:/v1.31/deb"
DEBIAN_REPO_PATH = "debian"
# The Debian packages the builder installs (prerequisites, container runtime) and the Debian
# dependencies of the Kubernetes packages (debs.py) that a fresh Raspberry Pi OS lacks.
DEBIAN_PACKAGES = (
    "apt-transport-https",
    "ca-certificates",
    "curl",
    "gpg",
    "runc",  # containerd's runtime; containerd itself is built (debs.containerd_package)
    "iptables",
    "conntrack",
    "socat",
    "ethtool",
)
LAB_KEY_FILE = "lab-archive-keyring.gpg"  # binary public key, as installed on hosts
RECIPE_VERSION = 3  # 2: real Kubernetes packages in place of the stand-ins; 3: containerd 1.7.25


def packed_packages(containerd_unit: str = "") -> tuple[debs.DebPackage, ...]:
    """Every package the lab builds itself: the five of pkgs.k8s.io, then containerd."""
    return (*debs.lab_packages(), debs.containerd_package(containerd_unit))


def packed_binaries() -> dict[str, Path]:
    """The built binaries the lab's own packages hold (built first if the cache lacks them)."""
    return binaries.built_binaries(debs.required_binaries(packed_packages()))


def repo_path(kube_binaries: Mapping[str, Path] | None = None) -> Path:
    """Where the repository is cached: its key names the recipe and the builds it packs."""
    kube_binaries = kube_binaries if kube_binaries is not None else packed_binaries()
    recipe = {
        "rootfs": rootfs.recipe_key(),
        "packages": DEBIAN_PACKAGES,
        "kubernetes": [repr(p) for p in packed_packages()],
        # A build's directory name carries its cache key (gobuild.py): a new build, a new key.
        "binaries": sorted({str(path.parent) for path in kube_binaries.values()}),
        "version": RECIPE_VERSION,
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    return rootfs.cache_dir() / "apt" / key


def ensure_repo() -> Path:
    """The cached repository tree (built first if missing). Safe to call concurrently."""
    kube_binaries = packed_binaries()
    target = repo_path(kube_binaries)
    if (target / "complete").exists():
        return target
    root = rootfs.ensure_rootfs()
    require_commands("apt-get", "apt-ftparchive", "dpkg-deb", "gpg")
    with rootfs.cache_lock(f"apt-{target.name}"):
        if (target / "complete").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f"{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.parent / f"{target.name}.tmp-{os.getpid()}"
        try:
            tmp.mkdir()
            # The signing key lives only for the build: nothing is ever signed again.
            with tempfile.TemporaryDirectory(prefix="pikube-gnupg-") as gnupg_dir:
                gnupg = Path(gnupg_dir) / "home"
                _make_signing_key(gnupg)
                try:
                    _export_key(gnupg, tmp)
                    debian = tmp / DEBIAN_REPO_PATH
                    _download_debian_packages(root, debian / "pool")
                    unit = gobuild.module_file("containerd", "containerd.service").decode()
                    debs.build_debs(
                        (debs.containerd_package(debs.containerd_unit(unit)),),
                        kube_binaries,
                        debian / "pool",
                        _dpkg_architecture(),
                    )
                    _index_debian(debian, gnupg)
                    kube = tmp / KUBERNETES_REPO_PATH
                    debs.build_debs(debs.lab_packages(), kube_binaries, kube, _dpkg_architecture())
                    _index_flat(kube, gnupg)
                finally:
                    subprocess.run(
                        ["gpgconf", "--homedir", str(gnupg), "--kill", "gpg-agent"],
                        capture_output=True,
                        check=False,
                    )
            shutil.copy(tmp / "Release.key", kube / "Release.key")
            (tmp / "complete").write_text("")
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _run(argv: list[str], what: str, *, cwd: Path | None = None, timeout_s: float = 300) -> str:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, cwd=cwd, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PikubeError(f"{what}: `{argv[0]}` did not finish in {timeout_s:g} s") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-8:])
        raise PikubeError(f"{what} failed (`{' '.join(argv[:3])} ...`):\n{tail}")
    return result.stdout


def _gpg(gnupg: Path, *args: str) -> list[str]:
    return ["gpg", "--homedir", str(gnupg), "--batch", "--pinentry-mode", "loopback", *args]


def _make_signing_key(gnupg: Path) -> None:
    gnupg.mkdir(mode=0o700)
    _run(
        _gpg(
            gnupg,
            "--passphrase",
            "",
            "--quick-gen-key",
            "pikube lab repository <lab-repository@pikube.invalid>",
            "ed25519",
            "sign",
            "never",
        ),
        "making the lab repository's signing key",
    )


def _export_key(gnupg: Path, into: Path) -> None:
    armored = _run(_gpg(gnupg, "--armor", "--export"), "exporting the lab key")
    (into / "Release.key").write_text(armored)
    binary = subprocess.run(_gpg(gnupg, "--export"), capture_output=True, check=True).stdout
    (into / LAB_KEY_FILE).write_bytes(binary)


def _download_debian_packages(root: Path, pool: Path) -> None:
    """apt-get --download-only against the lab root's dpkg status: exactly what hosts lack."""
    with tempfile.TemporaryDirectory(prefix="pikube-apt-") as work_dir:
        work = Path(work_dir)
        for sub in ("lists/partial", "archives/partial", "sources.list.d"):
            (work / sub).mkdir(parents=True)
        mirror = rootfs.debian_mirror()
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        suites = [f"{rootfs.SUITE}", f"{rootfs.SUITE}-updates"]
        lines = [f"deb [signed-by={keyring}] {mirror} {s} main" for s in suites]
        (work / "sources.list").write_text("\n".join(lines) + "\n")
        options = [
            "-o",
            f"Dir::State::status={root / 'var/lib/dpkg/status'}",
            "-o",
            f"Dir::State::Lists={work / 'lists'}",
            "-o",
            f"Dir::Cache={work}",
            "-o",
            f"Dir::Cache::Archives={work / 'archives'}",
            "-o",
            f"Dir::Etc::SourceList={work / 'sources.list'}",
            "-o",
            f"Dir::Etc::SourceParts={work / 'sources.list.d'}",
            "-o",
            "Dir::Etc::Preferences=/dev/null",
            "-o",
            f"Dir::Etc::PreferencesParts={work / 'sources.list.d'}",
            "-o",
            "Debug::NoLocking=true",
            "-o",
            "APT::Install-Recommends=false",
            "-q",
        ]
        what = f"downloading the lab's Debian packages from {mirror}"
        _run(["apt-get", *options, "update"], what)
        _run(
            ["apt-get", *options, "install", "--download-only", "-y", *DEBIAN_PACKAGES],
            what,
            timeout_s=600,
        )
        pool.mkdir(parents=True)
        debs = list((work / "archives").glob("*.deb"))
        if not debs:
            raise PikubeError(f"{what}: apt-get downloaded nothing")
        for deb in debs:
            shutil.move(str(deb), pool / deb.name)


def _sign_release(directory: Path, gnupg: Path) -> None:
    release = directory / "Release"
    _run(
        _gpg(gnupg, "--yes", "--clearsign", "-o", str(directory / "InRelease"), str(release)),
        "signing the lab repository",
    )
    _run(
        _gpg(gnupg, "--yes", "-abs", "-o", str(directory / "Release.gpg"), str(release)),
        "signing the lab repository",
    )


def _write_packages(directory: Path, listing: str) -> None:
    (directory / "Packages").write_text(listing)
    with gzip.open(directory / "Packages.gz", "wt") as fh:
        fh.write(listing)


def _index_debian(debian: Path, gnupg: Path) -> None:
    arch = _dpkg_architecture()
    dist = debian / "dists" / rootfs.SUITE
    binary = dist / "main" / f"binary-{arch}"
    binary.mkdir(parents=True)
    _write_packages(binary, _run(["apt-ftparchive", "packages", "pool"], "indexing", cwd=debian))
    release = _run(
        [
            "apt-ftparchive",
            "-o",
            "APT::FTPArchive::Release::Origin=pikube-lab",
            "-o",
            f"APT::FTPArchive::Release::Suite={rootfs.SUITE}",
            "-o",
            f"APT::FTPArchive::Release::Codename={rootfs.SUITE}",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "-o",
            f"APT::FTPArchive::Release::Architectures={arch}",
            "release",
            ".",
        ],
        "indexing",
        cwd=dist,
    )
    (dist / "Release").write_text(release)
    _sign_release(dist, gnupg)


def _index_flat(directory: Path, gnupg: Path) -> None:
    _write_packages(directory, _run(["apt-ftparchive", "packages", "."], "indexing", cwd=directory))
    release = _run(
        ["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=pikube-lab", "release", "."],
        "indexing",
        cwd=directory,
    )
    (directory / "Release").write_text(release)
    _sign_release(directory, gnupg)


def _dpkg_architecture() -> str:
    return _run(["dpkg", "--print-architecture"], "dpkg").strip()
