"""MetalLB v0.14.9 itself in the lab, to measure pikube against it on the same real Kubernetes.

Owns: MetalLB's two images, named as its own release manifest names them
(quay.io/metallb/controller:v0.14.9, quay.io/metallb/speaker:v0.14.9), made without a container
engine the way the lab's other images are (images.py: one layer holding the binary built from
MetalLB's published Go module by the gobuild component `metallb`, at the path upstream's
Dockerfiles copy it to, and its entrypoint); serving them from a registry of their own on the
router, which the Pis' containerd uses for quay.io (registry.py); and MetalLB's release manifest
`config/manifests/metallb-native.yaml`, read unmodified from that module in the Go module cache
(never copied into this repository).

Upstream's images are `gcr.io/distroless/static` plus the binary (and, for the speaker, FRR
helpers its native mode never runs): the binaries are static, and the manifest runs them as
the users it names, so the layer holding the binary is all they need.

Pure: `IMAGES`. The rest is the adapter. Why: decisions 0115 and 0116.
"""

from __future__ import annotations

from pathlib import Path

from pikube.lab.kubernetes import binaries, gobuild, images, registry
from pikube.lab.kubernetes.components import BY_NAME
from pikube.lab.kubernetes.images import BinaryFile, ImageLayout, ImageSpec, LayerSpec, Source
from pikube.lab.lab import Lab

VERSION = BY_NAME["metallb"].version  # v0.14.9
MANIFEST_PATH = "config/manifests/metallb-native.yaml"
CONTROLLER_IMAGE = f"quay.io/metallb/controller:{VERSION}"
SPEAKER_IMAGE = f"quay.io/metallb/speaker:{VERSION}"
IMAGES = (
    ImageSpec(
        CONTROLLER_IMAGE,
        (LayerSpec(Source.BINARIES, (BinaryFile("metallb-controller", "controller"),)),),
        entrypoint=("/controller",),
    ),
    ImageSpec(
        SPEAKER_IMAGE,
        (LayerSpec(Source.BINARIES, (BinaryFile("metallb-speaker", "speaker"),)),),
        entrypoint=("/speaker",),
    ),
)
# What MetalLB's manifest installs that a switch to pikube removes (the rest stays).
CONTROLLER_DEPLOYMENT = "controller"
SPEAKER_DAEMONSET = "speaker"


def manifest() -> str:
    """metallb-native.yaml as the v0.14.9 module holds it (downloaded and checked against the
    wrapper's go.sum by the go command first if the module cache lacks it)."""
    return gobuild.module_file("metallb", MANIFEST_PATH).decode()


def ensure_layout() -> ImageLayout:
    """The OCI layout of MetalLB's two images (built once, then a cache hit)."""
    built = binaries.built_binaries(images.required_binaries(IMAGES))
    return images.ensure_images(built, IMAGES)


def serve_images(lab: Lab) -> Path:
    """MetalLB's images in the lab: pushed into their own registry storage once, served
    read-only by the router on port 5002 (quay.io for the Pis' containerd)."""
    storage = registry.ensure_storage(ensure_layout())
    registry.serve_registry(
        lab,
        storage,
        name=registry.METALLB_REGISTRY_PROCESS,
        port=registry.METALLB_REGISTRY_PORT,
    )
    return storage
