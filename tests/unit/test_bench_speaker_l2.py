"""bench/speaker_l2.py refuses a lab name already up: two runs sharing one lab would stop each
other's speakers and mix their figures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "speaker_l2.py"


class UpAlready:
    def __init__(self, name: str) -> None:
        self.name = name

    def exists(self) -> bool:
        return True

    def up(self) -> None:
        raise AssertionError("must not bring up (and later tear down) another run's lab")


def test_a_lab_name_in_use_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("speaker_l2_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "Lab", UpAlready)
    monkeypatch.setattr(sys, "argv", ["speaker_l2.py", "--name", "mine"])
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    assert stopped.value.code == "speaker_l2: a lab named mine is up (another run?); pass --name"
