"""Preconditions on the machine pikube runs on: root, and the Debian packages it calls.

The command-to-package table lives in `data/debian-packages.txt`, which `script/bootstrap`
reads too, so a missing command is always reported with the package that provides it.
"""

from __future__ import annotations

import functools
import os
import shutil
from importlib import resources

from pikube.errors import PikubeError


@functools.cache
def debian_packages() -> dict[str, str]:
    """Map each command pikube runs to the Debian package that provides it."""
    text = resources.files("pikube").joinpath("data/debian-packages.txt").read_text()
    table: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split(None, 2)
        if len(fields) >= 2 and not line.startswith("#"):
            table[fields[0]] = fields[1]
    return table


def require_root(action: str) -> None:
    """Fail with a clear message unless running as root."""
    if os.geteuid() != 0:
        raise PikubeError(
            f"{action} needs root (it creates network namespaces); run it as root, e.g. with sudo"
        )


def require_commands(*commands: str) -> None:
    """Fail naming the Debian package to install if any command is missing from PATH."""
    missing = [c for c in commands if shutil.which(c) is None]
    if not missing:
        return
    packages = sorted({debian_packages().get(c, c) for c in missing})
    raise PikubeError(
        f"missing command{'s' if len(missing) > 1 else ''} {', '.join(missing)}: "
        f"install with `apt-get install {' '.join(packages)}` (or run script/bootstrap)"
    )
