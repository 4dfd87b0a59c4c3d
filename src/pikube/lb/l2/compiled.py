"""An optional accelerator for the speaker simulation: its pure modules compiled with mypyc.

The pure Python modules are the reference and what the daemon and the wheel run; this only
builds a copy of the package in a cache directory (never in the repository), with the
simulation's modules (`MODULES`: the simulation, the speaker's core and what it calls on the
hot path) compiled to C extensions beside their sources, which Python then prefers. Putting that
directory first on `PYTHONPATH` runs the very same code, compiled (docs/decisions/0107).

A build takes about half a minute (mypyc and gcc; setuptools drives them) and is kept under a
key made of every source file of the package, Python's and mypy's versions: any change to the
sources builds afresh (the three newest builds are kept).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pikube

MODULES = (
    "pikube/lb/announcements.py",
    "pikube/lb/election.py",
    "pikube/lb/membership/protocol.py",
    "pikube/lb/l2/bridge.py",
    "pikube/lb/l2/core.py",
    "pikube/lb/l2/decide.py",
    "pikube/lb/l2/events.py",
    "pikube/lb/l2/invariants.py",
    "pikube/lb/l2/lifecycle.py",
    "pikube/lb/l2/liveness.py",
    "pikube/lb/l2/plan.py",
    "pikube/lb/l2/schedule.py",
    "pikube/lb/l2/sim.py",
)
_DONE = ".mypyc-built"
KEPT = 3  # builds kept in the cache (about 5 MB each)


class BuildError(RuntimeError):
    """mypyc or the C compiler failed (its output is the message)."""


def cache_root() -> Path:
    """Where builds are kept: $PIKUBE_MYPYC_CACHE, else pikube/mypyc in the user's cache."""
    chosen = os.environ.get("PIKUBE_MYPYC_CACHE")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pikube" / "mypyc"


def source_key(package: Path) -> str:
    """What a build depends on: every source file of the package, Python's and mypy's versions."""
    import mypy.version  # noqa: PLC0415 (a development tool: only when building)

    digest = hashlib.sha256(f"{sys.version} {mypy.version.__version__}".encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def build(root: Path | None = None) -> Path:
    """The directory to put first on PYTHONPATH (built now if it is not in the cache)."""
    package = Path(pikube.__file__).parent
    root = cache_root() if root is None else root
    tree = root / source_key(package)
    if (tree / _DONE).exists():
        return tree
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        raise BuildError(
            f"mypyc needs Python's C headers and {headers} is missing "
            "(on Debian: apt-get install python3-dev)"
        )
    work = root / f"{tree.name}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(package, work / "pikube", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "mypyc", *MODULES],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise BuildError(f"mypyc failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
    for scratch in ("build", ".mypy_cache"):  # the C sources and objects: not needed to run
        shutil.rmtree(work / scratch, ignore_errors=True)
    (work / _DONE).write_text(" ".join(MODULES) + "\n")
    try:
        work.rename(tree)
    except OSError:  # built meanwhile by another process: keep that one
        shutil.rmtree(work, ignore_errors=True)
    prune(root)
    return tree


def prune(root: Path, keep: int = KEPT) -> list[Path]:
    """Remove all but the `keep` newest builds (every change of a source makes one); return
    those removed. A process still running an old one keeps its open files."""
    builds = sorted(
        (p for p in root.iterdir() if (p / _DONE).exists()),
        key=lambda p: (p / _DONE).stat().st_mtime,
        reverse=True,
    )
    for old in builds[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return builds[keep:]


def is_compiled(module: object) -> bool:
    """Whether a module was loaded from a compiled extension rather than its source."""
    return not str(getattr(module, "__file__", "")).endswith(".py")
