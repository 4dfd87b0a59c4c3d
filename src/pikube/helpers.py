"""Small things many modules need, written once: polling with a deadline, atomic file writes,
and the constants several parts share.

Rules of this module: no imports from the rest of pikube except `errors`; nothing here knows
about labs, clusters or load balancers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pikube.errors import PikubeError

METRICS_PORT = 7472  # MetalLB's metrics port; pikube's controller and speakers use it too
POLL_S = 0.02  # how often `wait_until` asks, unless told

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str,
    poll_s: float = POLL_S,
    error: Callable[[str], Exception] = PikubeError,
) -> T:
    """Ask `predicate` every `poll_s` until its answer is truthy, and return that answer.

    After `timeout_s` (measured on the monotonic clock) raise `error("timed out after N s
    waiting for WHAT")`: a `PikubeError` for the CLI, an `AssertionError` in tests.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part:
    a temporary file beside it (created with `mode`), then a rename over it. Creates the
    parent directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
