"""The lab registry's configuration and containerd's mirror configuration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from pikube.lab.kubernetes import registry

# The registry part of what `containerd config default` prints (containerd 1.6/1.7), with the
# sections around it.
DEFAULT_CONFIG = """\
version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.8"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""

      [plugins."io.containerd.grpc.v1.cri".registry.auths]

      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
"""


def _cri(config: str) -> dict[str, object]:
    cri = tomllib.loads(config)["plugins"]["io.containerd.grpc.v1.cri"]
    assert isinstance(cri, dict)
    return cri


def test_config_path_replaces_the_default_and_keeps_the_rest() -> None:
    config = registry.with_config_path(DEFAULT_CONFIG)
    cri = _cri(config)
    assert cri["registry"] == {"config_path": "/etc/containerd/certs.d", "auths": {}, "mirrors": {}}
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.8"
    assert cri["containerd"] == {"runtimes": {"runc": {"options": {"SystemdCgroup": True}}}}
    assert registry.with_config_path(config) == config  # idempotent


def test_config_path_is_added_to_a_registry_section_without_it() -> None:
    config = DEFAULT_CONFIG.replace('      config_path = ""\n', "")
    assert _cri(registry.with_config_path(config))["registry"] == {
        "config_path": "/etc/containerd/certs.d",
        "auths": {},
        "mirrors": {},
    }


def test_config_path_section_is_added_to_a_file_without_one() -> None:
    config = registry.with_config_path('version = 2\n\n[plugins."io.containerd.grpc.v1.cri"]\n')
    assert _cri(config)["registry"] == {"config_path": "/etc/containerd/certs.d"}


def test_hosts_toml_sends_both_registries_to_the_lab_mirror_over_http() -> None:
    files = registry.containerd_mirror_files("http://198.51.100.1:5000")
    assert sorted(files) == [
        "/etc/containerd/certs.d/docker.io/hosts.toml",
        "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
    ]
    k8s = tomllib.loads(files["/etc/containerd/certs.d/registry.k8s.io/hosts.toml"])
    assert k8s["server"] == "https://registry.k8s.io"
    assert k8s["host"] == {"http://198.51.100.1:5000": {"capabilities": ["pull", "resolve"]}}
    docker = tomllib.loads(files["/etc/containerd/certs.d/docker.io/hosts.toml"])
    assert docker["server"] == "https://registry-1.docker.io"


def test_registry_config_serves_storage_read_only() -> None:
    config = yaml.safe_load(
        registry.registry_config(
            Path("/cache/registry/x"), listen="198.51.100.1:5000", readonly=True
        )
    )
    assert config["storage"]["filesystem"]["rootdirectory"] == "/cache/registry/x"
    assert config["storage"]["maintenance"]["readonly"]["enabled"] is True
    assert config["storage"]["maintenance"]["uploadpurging"]["enabled"] is False
    assert config["http"] == {"net": "tcp", "addr": "198.51.100.1:5000"}
    filling = yaml.safe_load(
        registry.registry_config(Path("/s"), listen="/tmp/r.sock", unix=True, readonly=False)
    )
    assert filling["http"] == {"net": "unix", "addr": "/tmp/r.sock"}
    assert filling["storage"]["maintenance"]["readonly"]["enabled"] is False


def test_upload_target_keeps_the_registrys_state_and_adds_the_digest() -> None:
    location = "http://localhost/v2/pause/blobs/uploads/abc?_state=xyz%3D"
    assert (
        registry.upload_target(location, "sha256:00")
        == "/v2/pause/blobs/uploads/abc?_state=xyz%3D&digest=sha256%3A00"
    )
    assert registry.upload_target("/v2/p/blobs/uploads/u", "sha256:1") == (
        "/v2/p/blobs/uploads/u?digest=sha256%3A1"
    )
