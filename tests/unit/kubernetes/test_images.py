"""OCI images without a container engine: names, deterministic layers, configs, manifests."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from pikube.errors import PikubeError
from pikube.lab.kubernetes import images
from pikube.lab.kubernetes.images import EntryKind, LayerEntry


def test_references_are_exactly_what_kubeadm_and_kube_flannel_yml_name() -> None:
    references = {i.reference for i in images.lab_images()}
    assert references == {
        "registry.k8s.io/kube-apiserver:v1.31.5",
        "registry.k8s.io/kube-controller-manager:v1.31.5",
        "registry.k8s.io/kube-scheduler:v1.31.5",
        "registry.k8s.io/kube-proxy:v1.31.5",
        "registry.k8s.io/etcd:3.5.15-0",
        "registry.k8s.io/coredns/coredns:v1.11.3",
        "registry.k8s.io/pause:3.10",
        "docker.io/flannel/flannel:v0.26.1",
        "docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2",
        "docker.io/library/nginx:latest",
    }


def test_reference_parts() -> None:
    coredns = next(i for i in images.lab_images() if "coredns" in i.reference)
    assert (coredns.registry, coredns.repository, coredns.tag) == (
        "registry.k8s.io",
        "coredns/coredns",
        "v1.11.3",
    )


def test_programs_needing_iptables_or_cp_get_the_debian_base() -> None:
    with_base = {
        i.reference.rsplit(":", 1)[0]
        for i in images.lab_images()
        if any(layer.source is images.Source.DEBIAN_BASE for layer in i.layers)
    }
    assert with_base == {
        "registry.k8s.io/kube-proxy",
        "docker.io/flannel/flannel",
        "docker.io/flannel/flannel-cni-plugin",
        "docker.io/library/nginx",
    }
    assert {"iptables", "conntrack", "coreutils"} <= set(images.BASE_PACKAGES)
    assert images.IPTABLES_LINKS["usr/sbin/iptables-restore"] == "xtables-nft-multi"


def test_binaries_sit_where_the_manifests_run_them() -> None:
    by_ref = {i.reference: i for i in images.lab_images()}
    proxy = by_ref["registry.k8s.io/kube-proxy:v1.31.5"]
    assert images.BinaryFile("kube-proxy", "usr/local/bin/kube-proxy") in proxy.layers[1].binaries
    flannel = by_ref["docker.io/flannel/flannel:v0.26.1"]
    assert flannel.entrypoint == ("/opt/bin/flanneld",)
    cni = by_ref["docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2"]
    assert images.BinaryFile("flannel", "flannel") in cni.layers[1].binaries  # `cp -f /flannel`
    # kubeadm's static Pods run `kube-apiserver ...` by name: it must be on the PATH.
    assert "/usr/local/bin" in images.PATH_ENV
    assert images.required_binaries(images.lab_images()) == sorted(
        [
            "coredns",
            "etcd",
            "etcdctl",
            "flannel",
            "flanneld",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-proxy",
            "kube-scheduler",
            "pause",
        ]
    )


def _layer(entries: list[LayerEntry]) -> bytes:
    out = io.BytesIO()
    images.write_layer(entries, out)
    return out.getvalue()


def test_layers_are_deterministic_sorted_root_owned_and_have_parents(tmp_path: Path) -> None:
    binary = tmp_path / "kube-proxy"
    binary.write_bytes(b"\x7fELF...")
    binary.chmod(0o700)
    entries = [
        LayerEntry("usr/sbin/iptables", EntryKind.SYMLINK, link_target="xtables-nft-multi"),
        LayerEntry("usr/local/bin/kube-proxy", EntryKind.FILE, 0o755, source=binary),
        LayerEntry("etc/passwd", EntryKind.FILE, 0o644, data=b"root:x:0:0::/root:/bin/sh\n"),
    ]
    first = _layer(entries)
    assert first == _layer(list(reversed(entries)))
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {"usr", "usr/local", "usr/local/bin", "usr/sbin", "etc"} <= set(names)
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
        proxy = tar.getmember("usr/local/bin/kube-proxy")
        assert proxy.mode == 0o755  # the recipe's mode, not the file's on this machine
        extracted = tar.extractfile(proxy)
        assert extracted is not None
        assert extracted.read() == b"\x7fELF..."
        assert tar.getmember("usr/sbin/iptables").linkname == "xtables-nft-multi"


def test_gzip_is_deterministic() -> None:
    data = b"layer" * 1000
    assert images.gzip_bytes(data) == images.gzip_bytes(data)


def test_config_lists_layers_and_runs_the_entrypoint() -> None:
    pause = next(i for i in images.lab_images() if i.reference.endswith("pause:3.10"))
    config = json.loads(images.image_config(pause, ["sha256:" + "a" * 64], "amd64"))
    assert config["architecture"] == "amd64"
    assert config["os"] == "linux"
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert "created" not in config  # no clock: the digest is the same on every build
    assert images.image_config(pause, ["sha256:" + "a" * 64], "amd64") == images.image_config(
        pause, ["sha256:" + "a" * 64], "amd64"
    )


def test_manifest_and_index_name_blobs_by_digest() -> None:
    config = images.Blob.of(images.CONFIG_MEDIA_TYPE, b"{}")
    layer = images.Blob.of(images.LAYER_MEDIA_TYPE, b"tar")
    manifest = json.loads(images.image_manifest(config, [layer]))
    assert manifest["schemaVersion"] == 2
    assert manifest["config"]["digest"] == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    assert manifest["layers"][0]["size"] == 3
    blob = images.Blob.of(images.MANIFEST_MEDIA_TYPE, b"m")
    index = json.loads(images.layout_index({"registry.k8s.io/pause:3.10": blob}, "amd64"))
    [entry] = index["manifests"]
    assert entry["annotations"] == {
        "io.containerd.image.name": "registry.k8s.io/pause:3.10",
        "org.opencontainers.image.ref.name": "3.10",
    }


def test_trimming_drops_documentation_only() -> None:
    assert images.is_trimmed("usr/share/doc/iptables/copyright")
    assert images.is_trimmed("usr/share/doc")
    assert not images.is_trimmed("usr/sbin/xtables-nft-multi")
    assert not images.is_trimmed("usr/share/nginx/html/index.html")


def _binaries(directory: Path) -> dict[str, Path]:
    result = {}
    for name in images.required_binaries(images.lab_images()):
        path = directory / name
        path.write_bytes(f"binary {name}\n".encode())
        result[name] = path
    return result


def test_a_layout_is_built_once_and_its_digests_are_stable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images of built binaries only (no Debian layer, so no mirror needed)."""
    binaries = _binaries(tmp_path)
    only_binaries = [
        i
        for i in images.lab_images()
        if all(layer.source is images.Source.BINARIES for layer in i.layers)
    ]
    monkeypatch.setenv("PIKUBE_CACHE_DIR", str(tmp_path / "cache-a"))
    first = images.ensure_images(binaries, only_binaries)
    assert (first.path / "oci-layout").exists()
    assert first.path.is_relative_to(tmp_path / "cache-a" / "images")
    monkeypatch.setenv("PIKUBE_CACHE_DIR", str(tmp_path / "cache-b"))
    second = images.ensure_images(binaries, only_binaries)
    assert first.manifests == second.manifests  # same inputs, same digests, another run
    assert images.ensure_images(binaries, only_binaries).path == second.path  # a cache hit
    manifest = first.manifest("registry.k8s.io/etcd:3.5.15-0")
    layers = manifest["layers"]
    assert isinstance(layers, list)
    for descriptor in layers:
        blob = first.blob_path(descriptor["digest"]).read_bytes()
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == descriptor["digest"]
    # A changed binary is a new image.
    binaries["etcd"].write_bytes(b"another etcd\n")
    third = images.ensure_images(binaries, only_binaries)
    assert third.path != second.path
    assert (
        third.manifests["registry.k8s.io/etcd:3.5.15-0"]
        != second.manifests["registry.k8s.io/etcd:3.5.15-0"]
    )
    assert (
        third.manifests["registry.k8s.io/pause:3.10"]
        == second.manifests["registry.k8s.io/pause:3.10"]
    )


def test_a_missing_binary_is_named(tmp_path: Path) -> None:
    binaries = _binaries(tmp_path)
    del binaries["coredns"]
    with pytest.raises(PikubeError, match="no binary for coredns"):
        images.ensure_images(binaries)
