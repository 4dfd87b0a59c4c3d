"""Small helpers for tests: run the real `pikube` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping


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
