"""A lab's record on disk: which namespaces and processes it owns.

Written *before* anything is created (so a crash mid-`up` leaves a record `down` can follow)
and updated as processes start and stop. Lives under the run directory (/run/pikube by default,
a tmpfs that a reboot clears together with the namespaces; PIKUBE_RUN_DIR overrides it).
Writes are atomic (write a temporary file, then rename); concurrent pikube commands on one lab
serialise on an flock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pikube.errors import PikubeError
from pikube.helpers import write_atomic
from pikube.lab.hosts.processes import ProcessRecord

STATE_VERSION = 1


def run_dir() -> Path:
    return Path(os.environ.get("PIKUBE_RUN_DIR", "/run/pikube"))


def lab_dir(lab: str) -> Path:
    return run_dir() / "labs" / lab


@dataclass
class LabState:
    lab: str
    namespaces: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    complete: bool = False  # True once `up` finished

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "lab": self.lab,
            "namespaces": self.namespaces,
            "processes": [p.to_json() for p in self.processes],
            "complete": self.complete,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        return cls(
            lab=str(data["lab"]),
            namespaces=[str(n) for n in data["namespaces"]],
            processes=[ProcessRecord.from_json(p) for p in data["processes"]],
            complete=bool(data.get("complete", False)),
        )


def state_path(lab: str) -> Path:
    return lab_dir(lab) / "state.json"


def load(lab: str) -> LabState | None:
    path = state_path(lab)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PikubeError(f"the state file of lab {lab!r} ({path}) is unreadable: {exc}") from exc
    try:
        return LabState.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PikubeError(f"the state file of lab {lab!r} ({path}) is damaged: {exc}") from exc


def save(state: LabState) -> None:
    write_atomic(state_path(state.lab), json.dumps(state.to_json(), indent=2))


@contextlib.contextmanager
def locked(lab: str) -> Iterator[None]:
    """Hold the lab's lock: one pikube command changes a lab at a time."""
    directory = lab_dir(lab)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def known_labs() -> list[str]:
    try:
        return sorted(p.name for p in (run_dir() / "labs").iterdir() if (p / "state.json").exists())
    except FileNotFoundError:
        return []
