"""Kubeconfig files: the cluster's credentials named after the spec, merged without losing or
shadowing anything, written atomically.

Pure apart from `write_private`: `rename` gives kubeadm's admin.conf (cluster `kubernetes` or
the spec's name, context `kubernetes-admin@...`, user `kubernetes-admin`) the spec's cluster
name for its cluster, context and user; `merge` puts those entries into an existing kubeconfig
replacing every entry of the same name (so a rebuilt cluster's new CA and key are used, not
the old ones a "first file wins" merge keeps) and keeping every other cluster's entries.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pikube.errors import InvalidInput

_SECTIONS = ("clusters", "contexts", "users")


def load(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(
            f"{source}: not a kubeconfig (YAML: {str(exc).splitlines()[0]})"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: not a kubeconfig (the top is not a mapping)")
    for section in _SECTIONS:
        entries = data.get(section)
        if entries is not None and not (
            isinstance(entries, list) and all(isinstance(e, dict) and "name" in e for e in entries)
        ):
            raise InvalidInput(f"{source}: {section} must be a list of named entries")
    return data


def rename(config: dict[str, Any], name: str, user: str | None = None) -> dict[str, Any]:
    """A one-cluster kubeconfig (kubeadm's) with its cluster and context named `name`, its user
    `user` (default: `name`), and `name` as the current context."""
    if len(config.get("clusters") or []) != 1 or len(config.get("users") or []) != 1:
        raise InvalidInput("expected kubeadm's kubeconfig: one cluster and one user")
    user = user or name
    cluster = copy.deepcopy(config["clusters"][0])
    cluster["name"] = name
    credentials = copy.deepcopy(config["users"][0])
    credentials["name"] = user
    context = {"name": name, "context": {"cluster": name, "user": user}}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "contexts": [context],
        "users": [credentials],
        "current-context": name,
        "preferences": {},
    }


def merge(existing: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`existing` with the entries of `new`: an entry of the same name is replaced (in its
    place), others are kept in order, and `new`'s current context becomes the current one."""
    result = copy.deepcopy(existing)
    result.setdefault("apiVersion", "v1")
    result.setdefault("kind", "Config")
    for section in _SECTIONS:
        incoming = {e["name"]: copy.deepcopy(e) for e in new.get(section) or []}
        merged = []
        for entry in result.get(section) or []:
            if entry["name"] in incoming:
                merged.append(incoming.pop(entry["name"]))
            else:
                merged.append(entry)
        merged.extend(incoming.values())
        result[section] = merged
    if new.get("current-context"):
        result["current-context"] = new["current-context"]
    return result


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def default_path() -> Path:
    """Where kubectl looks first: $KUBECONFIG's first file, else ~/.kube/config."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), None)
    return Path(first).expanduser() if first else Path("~/.kube/config").expanduser()


def write_private(path: Path, text: str) -> Path | None:
    """Write `text` to `path` atomically with mode 0600; an existing file is first copied to
    a backup next to it (returned)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    backup = None
    if path.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        backup = path.with_name(f"{path.name}.{stamp}.bak")
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(path.read_bytes())
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return backup
