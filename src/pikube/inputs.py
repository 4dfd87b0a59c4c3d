"""Reading the user's input files with a size bound, so a huge or endless input (a 50 MB
manifest, /dev/zero) is refused in one line before it is parsed, instead of costing minutes
and gigabytes.

The limits (documented in the README, "Input limits"):
- the cluster spec: 1 MiB (the seed's spec is 2 KiB; a thousand nodes fit in 200 KiB);
- manifests (`pikube lb allocate -f ...`, the speaker's `--source dir:`): 8 MiB in all per
  reading, which is a dump of several thousand Services and parses in a few seconds;
- the speakers' shared key file (`--key-file`): 4 KiB (a key is 44 characters of base64).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

from pikube.errors import InvalidInput

MIB = 1024 * 1024
SPEC_LIMIT_BYTES = 1 * MIB
MANIFESTS_LIMIT_BYTES = 8 * MIB
KEY_LIMIT_BYTES = 4096


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"


class TooLarge(InvalidInput):
    """An input over its limit."""


class InputBudget:
    """What one reading may still take; every file read through it counts against it."""

    def __init__(
        self,
        limit_bytes: int,
        what: str,
        advice: str = "split the input or leave out what pikube does not need",
    ) -> None:
        self.limit_bytes = limit_bytes
        self.left_bytes = limit_bytes
        self.what = what
        self.advice = advice

    def _refuse(self, name: str, at_least: int) -> TooLarge:
        return TooLarge(
            f"{name}: too large: {self.what} may be at most {_size(self.limit_bytes)} in all, "
            f"and this brings them to {_size(at_least)} or more; {self.advice}"
        )

    def _take(self, stream: BinaryIO, name: str) -> bytes:
        data = stream.read(self.left_bytes + 1)
        if len(data) > self.left_bytes:
            raise self._refuse(name, self.limit_bytes - self.left_bytes + len(data))
        self.left_bytes -= len(data)
        return data

    def read_bytes(self, path: Path) -> bytes:
        """The file's bytes. Raises TooLarge over the budget (a pipe or a device such as
        /dev/zero is read only up to it); OSError as reading would."""
        with path.open("rb") as stream:
            try:
                size = path.stat().st_size
            except OSError:
                size = 0
            if size > self.left_bytes:  # a regular file: refuse before reading a byte
                raise self._refuse(str(path), self.limit_bytes - self.left_bytes + size)
            return self._take(stream, str(path))

    def read_text(self, path: Path) -> str:
        """The file's text (UTF-8). Raises TooLarge over the budget; OSError and
        UnicodeDecodeError as reading would."""
        return self.read_bytes(path).decode("utf-8")

    def read_stdin(self) -> str:
        return self._take(sys.stdin.buffer, "<stdin>").decode("utf-8", errors="replace")
