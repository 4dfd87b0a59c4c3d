"""The lab's registry on the router: containerd in a lab host pulls the seed's images from it
through the hosts.toml files every lab Pi gets (real docker-registry, real containerd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pikube.lab.kubernetes import binaries, images, registry
from pikube.lab.lab import Lab
from pikube.lab.processes import FileExists

pytestmark = pytest.mark.lab

PAUSE = "registry.k8s.io/pause:3.10"
NGINX = "docker.io/library/nginx:latest"


def _containerd_config(work: Path) -> str:
    return f"""\
version = 2
root = "{work}/root"
state = "{work}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{work}/containerd.sock"
"""


def test_containerd_in_the_lab_pulls_the_seeds_images_from_the_router(
    lab: Lab, tmp_path: Path
) -> None:
    wanted = [i for i in images.lab_images() if i.reference in (PAUSE, NGINX)]
    layout = images.ensure_images(binaries.built_binaries(images.required_binaries(wanted)), wanted)
    registry.serve_registry(lab, registry.ensure_storage(layout))

    work = tmp_path / "containerd"
    work.mkdir()
    certs = work / "certs.d"
    for path, text in registry.containerd_mirror_files(
        registry.mirror_url(lab), str(certs)
    ).items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    config = work / "config.toml"
    config.write_text(_containerd_config(work))
    lab.start(
        "client",
        "containerd",
        ["containerd", "--config", str(config)],
        ready=FileExists(str(work / "containerd.sock")),
    )
    ctr = ["ctr", "--address", str(work / "containerd.sock"), "--namespace", "k8s.io"]
    for reference in (PAUSE, NGINX):
        pull = [*ctr, "images", "pull", "--snapshotter", "native", "--hosts-dir", str(certs)]
        result = lab.run("client", [*pull, reference], timeout_s=120)
        assert result.returncode == 0, result.stdout + result.stderr
    listing = lab.run("client", [*ctr, "images", "ls"], check=True).stdout
    digests = {line.split()[0]: line.split()[2] for line in listing.splitlines()[1:]}
    # Exactly the manifests pikube rendered, under the names the manifests use.
    assert digests[PAUSE] == layout.manifests[PAUSE].digest
    assert digests[NGINX] == layout.manifests[NGINX].digest

    # The router's registry serves; it does not take pushes.
    upload = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"]
    url = f"{registry.mirror_url(lab)}/v2/pause/blobs/uploads/"
    assert lab.run("client", [*upload, url], check=True).stdout != "202"
