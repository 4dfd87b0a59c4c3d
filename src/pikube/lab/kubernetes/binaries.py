"""Built binaries by their own names: which component builds `kubelet`, `crictl` or `bridge`.

Owns the step from "this package or image needs these programs" to files in the build cache.
The component table (components.py) says which component holds a binary; the build itself
(once, cached) is gobuild.py's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pikube.errors import PikubeError
from pikube.lab.kubernetes import gobuild
from pikube.lab.kubernetes.components import COMPONENTS, Component


def component_of(binary: str) -> Component:
    for comp in COMPONENTS:
        if any(b.name == binary for b in comp.binaries):
            return comp
    raise PikubeError(f"no pinned component builds a binary named {binary!r}")


def built_binaries(names: Iterable[str]) -> dict[str, Path]:
    """name -> the built file, building each component needed first (a cache hit after)."""
    directories: dict[str, Path] = {}
    result = {}
    for name in sorted(set(names)):
        comp = component_of(name)
        if comp.name not in directories:
            directories[comp.name] = gobuild.ensure_built(comp.name)
        result[name] = directories[comp.name] / name
    return result
