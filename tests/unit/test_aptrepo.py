"""The lab's apt repository cache key: a new build of the packed binaries is a new repository."""

from __future__ import annotations

from pathlib import Path

from pikube.lab.hosts import aptrepo
from pikube.lab.kubernetes import debs


def _binaries(build_dir: str) -> dict[str, Path]:
    names = debs.required_binaries(aptrepo.packed_packages())
    return {name: Path(build_dir) / "bin" / name for name in names}


def test_the_repository_key_follows_the_builds_it_packs() -> None:
    first = aptrepo.repo_path(_binaries("/cache/gobuild/kubernetes-v1.31.5-aaaa"))
    assert first == aptrepo.repo_path(_binaries("/cache/gobuild/kubernetes-v1.31.5-aaaa"))
    assert first != aptrepo.repo_path(_binaries("/cache/gobuild/kubernetes-v1.31.5-bbbb"))
    assert first.parent.name == "apt"


def test_the_repository_packs_containerd_and_takes_runc_from_debian() -> None:
    names = [p.name for p in aptrepo.packed_packages()]
    assert names[-1] == "containerd"
    assert "containerd" not in aptrepo.DEBIAN_PACKAGES  # not Debian's 1.6.20
    assert "runc" in aptrepo.DEBIAN_PACKAGES
    binaries = debs.required_binaries(aptrepo.packed_packages())
    assert {"containerd", "ctr", "containerd-shim-runc-v2"} <= set(binaries)
