"""MetalLB's images for the lab: named as its release manifest names them, the binary where
upstream's Dockerfiles put it, quay.io mirrored to their own registry."""

from __future__ import annotations

from pathlib import Path

from pikube.lab.kubernetes import images, metallb, registry


def test_images_are_named_as_metallb_native_yaml_names_them() -> None:
    assert [i.reference for i in metallb.IMAGES] == [
        "quay.io/metallb/controller:v0.14.9",
        "quay.io/metallb/speaker:v0.14.9",
    ]
    assert images.required_binaries(metallb.IMAGES) == ["metallb-controller", "metallb-speaker"]


def test_each_image_is_its_binary_at_upstreams_path(tmp_path: Path) -> None:
    built = {name: tmp_path / name for name in ("metallb-controller", "metallb-speaker")}
    for image, path in zip(metallb.IMAGES, ("controller", "speaker"), strict=True):
        (layer,) = image.layers
        (entry,) = images.binary_layer_entries(layer, built)
        assert entry.path == path
        assert image.entrypoint == (f"/{path}",)
        assert entry.source == built[f"metallb-{path}"]


def test_quay_io_is_mirrored_to_the_metallb_registry_when_asked() -> None:
    files = registry.containerd_mirror_files(
        "http://198.51.100.1:5000", metallb_mirror_url="http://198.51.100.1:5002"
    )
    quay = files["/etc/containerd/certs.d/quay.io/hosts.toml"]
    assert 'server = "https://quay.io"' in quay
    assert '[host."http://198.51.100.1:5002"]' in quay
    assert "/etc/containerd/certs.d/quay.io/hosts.toml" not in registry.containerd_mirror_files(
        "http://198.51.100.1:5000"
    )
