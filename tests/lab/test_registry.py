"""The lab's registry on the router: containerd in a lab host pulls the seed's images from it
the way kubelet does (CRI, crictl), through the hosts.toml files every lab Pi gets and the
`config_path` the lab sets (real docker-registry, real containerd)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pikube.lab.hosts.processes import FileExists
from pikube.lab.kubernetes import binaries, images, registry
from pikube.lab.lab import Lab

pytestmark = pytest.mark.lab

PAUSE = "registry.k8s.io/pause:3.10"
NGINX = "docker.io/library/nginx:latest"


def _containerd_config(work: Path) -> str:
    """What matters of a Pi's containerd config: the CRI plugin, its registry section as
    `containerd config default` has it (config_path empty), and a snapshotter that needs no
    mounts (this test's containerd is not a Pi's)."""
    return f"""\
version = 2
root = "{work}/root"
state = "{work}/state"

[grpc]
  address = "{work}/containerd.sock"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE}"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "native"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""
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
    config.write_text(registry.with_config_path(_containerd_config(work), str(certs)))
    socket = work / "containerd.sock"
    lab.start(
        "client",
        "containerd",
        ["containerd", "--config", str(config)],
        ready=FileExists(str(socket)),
    )
    crictl = str(binaries.built_binaries(["crictl"])["crictl"])
    crictl_argv = [crictl, "--runtime-endpoint", f"unix://{socket}"]
    crictl_argv += ["--image-endpoint", f"unix://{socket}"]
    # `nginx` as the seed's `kubectl create deployment nginx --image=nginx` names it.
    for name, reference in (("nginx", NGINX), (PAUSE, PAUSE)):
        pulled = lab.run("client", [*crictl_argv, "pull", name], timeout_s=120)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        inspected = lab.run("client", [*crictl_argv, "inspecti", "-o", "json", name], check=True)
        repo_digests = json.loads(inspected.stdout)["status"]["repoDigests"]
        # Exactly the manifest pikube rendered, under the name the manifests use.
        repository = reference.rsplit(":", 1)[0]
        assert repo_digests == [f"{repository}@{layout.manifests[reference].digest}"]

    # The router's registry serves; it does not take pushes.
    upload = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"]
    url = f"{registry.mirror_url(lab)}/v2/pause/blobs/uploads/"
    assert lab.run("client", [*upload, url], check=True).stdout != "202"


def test_the_router_serves_every_image_the_seed_pulls(lab: Lab) -> None:
    url = registry.up_registry(lab)
    catalog = lab.run("client", ["curl", "-s", f"{url}/v2/_catalog"], check=True).stdout
    assert sorted(json.loads(catalog)["repositories"]) == sorted(
        i.repository for i in images.lab_images()
    )
    accept = f"Accept: {images.MANIFEST_MEDIA_TYPE}"
    for image in images.lab_images():
        head = ["curl", "-s", "-I", "-H", accept]
        answer = lab.run(
            "client", [*head, f"{url}/v2/{image.repository}/manifests/{image.tag}"], check=True
        ).stdout.lower()
        assert answer.startswith("http/1.1 200"), (image.reference, answer)
        assert "docker-content-digest: sha256:" in answer
