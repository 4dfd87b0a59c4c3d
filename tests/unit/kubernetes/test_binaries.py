"""Which component builds a binary."""

from __future__ import annotations

import pytest

from pikube.errors import PikubeError
from pikube.lab.kubernetes import debs, images
from pikube.lab.kubernetes.binaries import component_of


def test_every_binary_a_package_or_image_needs_has_a_component() -> None:
    needed = debs.required_binaries(debs.lab_packages())
    needed += images.required_binaries(images.lab_images())
    assert {component_of(name).name for name in needed} == {
        "kubernetes",
        "pause",
        "etcd",
        "coredns",
        "cri-tools",
        "cni-plugins",
        "flannel",
        "flannel-cni-plugin",
    }
    assert component_of("crictl").name == "cri-tools"
    assert component_of("flannel").name == "flannel-cni-plugin"


def test_an_unknown_binary_is_named() -> None:
    with pytest.raises(PikubeError, match="'dockerd'"):
        component_of("dockerd")
