"""The shared helpers: polling with a deadline and atomic writes."""

from __future__ import annotations

import itertools
import stat
from pathlib import Path

import pytest

from pikube import helpers
from pikube.errors import PikubeError


def test_wait_until_returns_the_first_truthy_answer() -> None:
    answers = iter([None, 0, "found"])
    assert helpers.wait_until(lambda: next(answers), 1.0, "x", poll_s=0.0) == "found"


def test_wait_until_names_what_it_waited_for_after_the_deadline() -> None:
    calls = itertools.count()
    with pytest.raises(PikubeError, match=r"timed out after 0.05 s waiting for the moon"):
        helpers.wait_until(lambda: next(calls) < 0, 0.05, "the moon", poll_s=0.01)
    with pytest.raises(AssertionError, match="the moon"):
        helpers.wait_until(lambda: False, 0.0, "the moon", error=AssertionError)


def test_write_atomic_replaces_the_file_whole_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    helpers.write_atomic(path, "old")
    helpers.write_atomic(path, b"new", mode=0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left


def test_write_atomic_leaves_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    helpers.write_atomic(path, "old")
    with pytest.raises(TypeError):
        helpers.write_atomic(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
