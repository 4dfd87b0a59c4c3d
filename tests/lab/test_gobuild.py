"""Building a component from its Go module: once, atomically, then from pikube's cache.

Uses the smallest component (the flannel CNI plugin, a few seconds with Go's caches warm) in a
fresh pikube cache whose Go module and build caches are the machine's, so only pikube's own
cache starts empty.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pikube.lab.hosts.rootfs import cache_dir
from tests.helpers import run_pikube

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("go") is None, reason="needs the go command"),
]

COMPONENT = "flannel-cni-plugin"


@pytest.fixture
def fresh_cache(tmp_path: Path) -> Path:
    shared_go = cache_dir() / "go"
    shared_go.mkdir(parents=True, exist_ok=True)
    (tmp_path / "go").symlink_to(shared_go)
    return tmp_path


def _build(cache: Path, path: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PIKUBE_CACHE_DIR": str(cache)}
    if path is not None:
        env["PATH"] = path
    return subprocess.Popen(
        [sys.executable, "-m", "pikube", "lab", "build", "--component", COMPONENT, "-o", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    (result,) = json.loads(out)["components"]
    assert isinstance(result, dict)
    return result


def test_parallel_builds_build_once_and_a_second_build_is_a_cache_hit(fresh_cache: Path) -> None:
    first, second = _build(fresh_cache), _build(fresh_cache)
    results = [_result(first), _result(second)]
    assert sorted(bool(r["cached"]) for r in results) == [False, True]  # one built, one waited
    assert results[0]["directory"] == results[1]["directory"]
    directory = Path(str(results[0]["directory"]))
    assert sorted(p.name for p in directory.iterdir()) == ["flannel"]
    assert not list(directory.parent.parent.glob("*.tmp-*"))  # nothing half-built left

    # A cache hit runs nothing: it succeeds with no go (nor anything else) on PATH.
    again = _result(_build(fresh_cache, path="/nonexistent"))
    assert again["cached"] is True
    assert again["directory"] == results[0]["directory"]

    version = subprocess.run(
        [str(directory / "flannel")],
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "0.3.1" in json.loads(version.stdout)["supportedVersions"]  # kube-flannel.yml's


def test_a_missing_go_is_one_clear_line(fresh_cache: Path) -> None:
    result = run_pikube(
        "lab",
        "build",
        "--component",
        COMPONENT,
        env={"PIKUBE_CACHE_DIR": str(fresh_cache), "PATH": "/nonexistent"},
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "needs the go command" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_component_is_refused_before_building(fresh_cache: Path) -> None:
    result = run_pikube(
        "lab", "build", "--component", "nope", env={"PIKUBE_CACHE_DIR": str(fresh_cache)}
    )
    assert result.returncode == 2  # invalid input (decision 0140)
    assert "unknown component 'nope'" in result.stderr
    assert "kubernetes" in result.stderr
    assert not (fresh_cache / "gobuild").exists()
