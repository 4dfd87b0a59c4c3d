"""The installable package: a wheel built from this checkout works on its own.

As the README's "Install on your workstation" says: build a wheel, install it where no checkout
is (here a fresh virtual environment with the locked dependencies, as `uv tool install` or
`pipx install` make one), and `pikube` runs from it, with its package data (the CRDs, the
Debian package list, the cluster schema it writes) inside the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".cache" / "tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is missing: run script/bootstrap"
    return found


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the bin directory of an isolated environment it is installed in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    uv = _uv()
    # Offline: the build backend and the locked dependencies come from uv's cache, which
    # script/bootstrap filled; the test must not depend on the network.
    _run([uv, "build", "--wheel", "--offline", "--quiet", "--out-dir", str(tmp / "dist")], ROOT)
    (wheel,) = (tmp / "dist").glob("pikube-*.whl")
    venv = tmp / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PYTHON": "python3",
    }
    env.pop("VIRTUAL_ENV", None)
    sync = [uv, "sync", "--frozen", "--no-dev", "--no-install-project", "--offline", "--quiet"]
    _run(sync, ROOT, env)
    python = str(venv / "bin" / "python")
    install = [uv, "pip", "install", "--offline", "--no-deps", "--quiet", "--python", python]
    _run([*install, str(wheel)], ROOT)
    return wheel, venv / "bin"


def _bare_env() -> dict[str, str]:
    """No checkout on any path: nothing from src/ can be imported by accident."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root")}


def _package_data() -> set[str]:
    """Every file under src/pikube that is not Python: what pikube reads at run time."""
    src = ROOT / "src"
    return {
        str(path.relative_to(src))
        for path in (src / "pikube").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }


def test_the_wheel_holds_the_package_data(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    data = _package_data()
    for expected in (
        "pikube/data/debian-packages.txt",
        "pikube/data/crds/metallb.io_ipaddresspools.yaml",
        "pikube/data/deploy/pikube.yaml",  # the load balancer's install manifest
        "pikube/data/gobuild/kubernetes/go.sum",  # the lab's Go build wrappers
    ):
        assert expected in data  # the list below is not empty by accident
    assert data - names == set()


# Run by the installed interpreter: each kind of package data read the way pikube reads it.
_LOADS = """
import json, yaml
from importlib.resources import files
from pikube.cluster.addons import lb_manifest
from pikube.lab.kubeapi.openapi import builtin_schemas
from pikube.lab.kubernetes import gobuild
from pikube.lab.kubernetes.components import COMPONENTS
from pikube.system import debian_packages
import pikube
kinds = sorted({d["kind"] for d in yaml.safe_load_all(lb_manifest()) if d})
crds = sorted(p.name for p in (files("pikube") / "data" / "crds").iterdir())
wrappers = {c.name: sorted(gobuild.wrapper_files(c)) for c in COMPONENTS}
print(json.dumps({
    "from": pikube.__file__, "manifest_kinds": kinds, "crds": crds, "wrappers": wrappers,
    "openapi": len(builtin_schemas()), "debian_packages": len(debian_packages()),
}))
"""


def test_the_installed_package_loads_its_data(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, bin_dir = installed
    loaded = json.loads(_run([str(bin_dir / "python"), "-c", _LOADS], tmp_path, _bare_env()))
    assert str(bin_dir.parent) in loaded["from"]
    assert {"CustomResourceDefinition", "DaemonSet", "Deployment"} <= set(loaded["manifest_kinds"])
    assert "metallb.io_ipaddresspools.yaml" in loaded["crds"]
    assert len(loaded["wrappers"]) >= 9
    assert all(files == ["go.mod", "go.sum", "tools.go"] for files in loaded["wrappers"].values())
    assert loaded["openapi"] > 0
    assert loaded["debian_packages"] > 0


def test_pikube_runs_from_the_isolated_install(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, bin_dir = installed
    version = _run([str(bin_dir / "pikube"), "--version"], tmp_path, _bare_env())
    assert version.strip() == "pikube, version 0.1.0"
    where = _run(
        [str(bin_dir / "python"), "-c", "import pikube; print(pikube.__file__)"],
        tmp_path,
        _bare_env(),
    )
    assert str(bin_dir.parent) in where  # the installed copy, not the checkout's src/
    _run([str(bin_dir / "pikube"), "cluster", "init"], tmp_path, _bare_env())
    assert (tmp_path / "cluster.yaml").exists()
    assert (tmp_path / "cluster.schema.json").exists()
    crds = _run(
        [
            str(bin_dir / "python"),
            "-c",
            "from importlib.resources import files; "
            "print(sorted(p.name for p in (files('pikube') / 'data' / 'crds').iterdir()))",
        ],
        tmp_path,
        _bare_env(),
    )
    assert "metallb.io_ipaddresspools.yaml" in crds
