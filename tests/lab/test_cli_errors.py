"""Errors a user can cause end in one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pikube.lab.lab import Lab
from pikube.lab.network import netns
from tests.conftest import new_lab_name
from tests.helpers import run_pikube

pytestmark = pytest.mark.lab


def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("pikube: error: ")
    return lines[0]


def test_a_lab_name_in_use_by_something_else_is_refused() -> None:
    name = new_lab_name()
    foreign = f"pk-{name}-lan"
    netns.create(foreign)  # as if someone else had made it
    try:
        result = run_pikube("lab", "up", "--name", name)
        assert result.returncode == 1
        line = _one_line_error(result.stderr)
        assert "in use by something else" in line
        assert foreign in line
        assert netns.exists(foreign)  # left alone
        down = run_pikube("lab", "down", "--name", name)
        assert down.returncode == 1
        assert "left alone" in _one_line_error(down.stderr)
        assert netns.exists(foreign)
    finally:
        netns.remove(foreign)
        Lab(name).down()


def test_not_root_is_refused_with_a_clear_message(tmp_path: object) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    result = subprocess.run(
        [
            # Another user who may still read the checkout wherever it is (a clone under /root
            # is not readable by "nobody"): the only difference left is not being root.
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            sys.executable,
            "-m",
            "pikube",
            "lab",
            "up",
            "--name",
            new_lab_name(),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PIKUBE_RUN_DIR": str(tmp_path), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert result.returncode == 1
    assert "needs root" in _one_line_error(result.stderr)


def test_a_missing_program_names_the_debian_package(tmp_path: object) -> None:
    result = run_pikube("lab", "up", "--name", new_lab_name(), env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    line = _one_line_error(result.stderr)
    assert "apt-get install iproute2" in line


def test_unknown_host_and_lab_not_up_are_explained() -> None:
    name = new_lab_name()
    result = run_pikube("lab", "exec", "--name", name, "node09", "--", "true")
    assert result.returncode == 2
    assert "no host 'node09'" in _one_line_error(result.stderr)
    result = run_pikube("lab", "exec", "--name", name, "node01", "--", "true")
    assert result.returncode == 1
    assert "is not up" in _one_line_error(result.stderr)
    result = run_pikube("lab", "up", "--name", "Bad_Name")
    assert result.returncode == 2
    assert "invalid lab name" in _one_line_error(result.stderr)
