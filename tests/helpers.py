"""Small helpers for tests: run the real `pikube` command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

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
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
