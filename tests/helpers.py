"""Small helpers for tests: run the real `pikube` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import TypeVar

from pikube import helpers

T = TypeVar("T")


def run_pikube(
    *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run `python -m pikube ARGS` as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "pikube", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
        check=False,
    )


def wait_until(
    predicate: Callable[[], T | bool | None], timeout_s: float, what: str, poll_s: float = 0.02
) -> T:
    """Poll until `predicate()` is truthy and return it; fail naming `what` after the bound."""
    return helpers.wait_until(predicate, timeout_s, what, poll_s, error=AssertionError)  # type: ignore[return-value]
