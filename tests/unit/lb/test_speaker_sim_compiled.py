"""The optional mypyc build of the simulation (`pikube.lb.l2.compiled`, docs/decisions/0107):
compiled, it must do exactly what the pure modules do (the determinism guard's digest), and a
build is kept only as long as the sources it was made from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pikube.lb.l2 import compiled, sim

HERE = Path(__file__).parent

_CHILD = """
import importlib
import test_speaker_sim_determinism as guard
from pikube.lb.l2 import compiled
modules = [m[:-3].replace("/", ".") for m in compiled.MODULES]
print(all(compiled.is_compiled(importlib.import_module(m)) for m in modules))
print(guard.digest() == guard.DIGEST)
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="mypyc needs a C compiler (gcc)")
def test_the_compiled_modules_give_the_guards_digest() -> None:
    tree = compiled.build()  # about 30 s the first time; then from the cache
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tree), str(HERE)))}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]  # every module compiled; the same digest


def test_here_the_modules_are_the_pure_ones() -> None:
    assert not compiled.is_compiled(sim)
    assert compiled.is_compiled(type("fake", (), {"__file__": "sim.cpython-311-x86_64.so"})())


def test_a_build_is_keyed_by_every_source_file(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    first = compiled.source_key(tmp_path)
    assert compiled.source_key(tmp_path) == first
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert compiled.source_key(tmp_path) != first


def test_the_cache_is_where_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIKUBE_MYPYC_CACHE", str(tmp_path / "mine"))
    assert compiled.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("PIKUBE_MYPYC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiled.cache_root() == tmp_path / "xdg" / "pikube" / "mypyc"


def test_only_the_newest_builds_are_kept(tmp_path: Path) -> None:
    for age, name in enumerate(("newest", "newer", "older", "oldest")):
        (tmp_path / name).mkdir()
        done = tmp_path / name / ".mypyc-built"
        done.write_text("")
        os.utime(done, (1000.0 - age, 1000.0 - age))
    (tmp_path / "half-built.1.tmp").mkdir()  # not finished: never removed by another process
    assert compiled.prune(tmp_path, keep=2) == [tmp_path / "older", tmp_path / "oldest"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half-built.1.tmp", "newer", "newest"]


def test_without_pythons_headers_the_build_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sysconfig.get_paths", lambda: {"include": str(tmp_path)})
    with pytest.raises(compiled.BuildError, match="apt-get install python3-dev"):
        compiled.build(tmp_path / "cache")
