"""Builds the seed's components (components.py) into pikube's cache, once per recipe.

The API other parts use:

    ensure_built(name) -> Path    the directory holding the component's binaries (named as
                                  upstream names them: kubeadm, kubelet, etcd, crictl, bridge...)
    build(name) -> BuildResult    the same, plus whether it was a cache hit, time and sizes

A build lands in <cache>/gobuild/<name>-<version>-<key>/ (bin/ and build.json). It is atomic
(built in a temporary directory renamed into place) and serialised between processes by an
flock, so parallel test processes build once and share it; a cache hit reads two files and
runs nothing. Go's own module and build caches live beside it (<cache>/go/{mod,build}), so a
rebuild after a recipe change recompiles only what changed.

Must not: download anything itself (the go command fetches modules from the module proxy and
checks them against the wrapper's go.sum), or write into the repository.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pikube.errors import InvalidInput, PikubeError
from pikube.lab.hosts.rootfs import cache_dir, cache_lock
from pikube.lab.kubernetes.components import (
    BY_NAME,
    COMPONENTS,
    Component,
    Toolchain,
    build_steps,
    cache_key,
    entry_name,
    go_toolchain,
)
from pikube.system import require_commands

WRAPPER_FILES = ("go.mod", "go.sum", "tools.go")
MANIFEST = "build.json"
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


@dataclass(frozen=True)
class BuildResult:
    name: str
    version: str
    directory: Path  # the binaries
    cached: bool  # found in the cache: nothing was run
    build_s: float  # how long the build took when it ran (from the manifest on a cache hit)
    sizes: dict[str, int]  # binary name -> bytes

    def to_json(self) -> dict[str, object]:
        return {
            "component": self.name,
            "version": self.version,
            "directory": str(self.directory),
            "cached": self.cached,
            "build_s": round(self.build_s, 1),
            "bytes": sum(self.sizes.values()),
            "binaries": self.sizes,
        }


def lookup(name: str) -> Component:
    comp = BY_NAME.get(name)
    if comp is None:
        raise InvalidInput(
            f"unknown component {name!r}: choose one of {', '.join(c.name for c in COMPONENTS)}"
        )
    return comp


def goarch() -> str:
    machine = platform.machine()
    return _GOARCH.get(machine, machine)


def wrapper_files(comp: Component) -> dict[str, bytes]:
    """The wrapper module's committed files (package data)."""
    base = resources.files("pikube").joinpath("data", "gobuild", comp.wrapper_dir)
    files: dict[str, bytes] = {}
    for name in WRAPPER_FILES:
        entry = base.joinpath(name)
        if not entry.is_file():
            raise PikubeError(
                f"component {comp.name}: its wrapper module has no {name} "
                f"(pikube/data/gobuild/{comp.wrapper_dir}/{name}); reinstall pikube"
            )
        files[name] = entry.read_bytes()
    return files


def go_env(cache: Path) -> dict[str, str]:
    """The go command's environment: pikube's module and build caches (Go releases fetched for
    GOTOOLCHAIN land in the module cache too), module files read-only (go.sum must already be
    complete). Each build step sets GOTOOLCHAIN to its component's Go release."""
    go = cache / "go"
    return {
        "GOPATH": str(go),
        "GOMODCACHE": str(go / "mod"),
        "GOCACHE": str(go / "build"),
        "GOFLAGS": "-modcacherw -mod=readonly",
        "GOTOOLCHAIN": "local",
    }


def entry_dir(comp: Component) -> Path:
    return (
        cache_dir() / "gobuild" / entry_name(comp, cache_key(comp, wrapper_files(comp), goarch()))
    )


def build(name: str) -> BuildResult:
    """The component's binaries, built first unless the cache has them. Safe to call
    concurrently from many processes."""
    comp = lookup(name)
    entry = entry_dir(comp)
    found = _cached(comp, entry)
    if found is not None:
        return found
    _require_tools(comp)
    with cache_lock(f"gobuild-{entry.name}"):
        found = _cached(comp, entry)  # built by another process meanwhile
        if found is not None:
            return found
        for stale in entry.parent.glob(f"{entry.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a build that was killed
        tmp = entry.parent / f"{entry.name}.tmp-{os.getpid()}"
        try:
            seconds = _build_into(comp, tmp)
            os.rename(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result = _cached(comp, entry)
    assert result is not None  # just written
    return BuildResult(result.name, result.version, result.directory, False, seconds, result.sizes)


def ensure_built(name: str) -> Path:
    """The directory of the component's binaries (see the module docstring)."""
    return build(name).directory


def _cached(comp: Component, entry: Path) -> BuildResult | None:
    manifest = entry / MANIFEST
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    return BuildResult(
        name=comp.name,
        version=comp.version,
        directory=entry / "bin",
        cached=True,
        build_s=float(data["build_s"]),
        sizes={str(k): int(v) for k, v in data["binaries"].items()},
    )


def _require_tools(comp: Component) -> None:
    if shutil.which("go") is None:
        raise PikubeError(
            f"building {comp.name} {comp.version} needs the go command (Go 1.21 or newer, which "
            "fetches the Go release each component is built with) on PATH; install Go from "
            "go.dev/dl and put its bin/ on PATH"
        )
    if comp.toolchain is Toolchain.C or any(b.cgo for b in comp.binaries):
        require_commands("cc")


def _run(argv: tuple[str, ...], cwd: Path, env: dict[str, str], log: Path, comp: Component) -> str:
    """Run one command, appending its output to the build's log; its stdout."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    with log.open("a") as out:
        settings = " ".join(f"{k}={env[k]}" for k in ("GOTOOLCHAIN", "CGO_ENABLED") if k in env)
        out.write(f"$ {settings} {shlex.join(argv)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise build_error(comp, proc.stderr + proc.stdout, log)
    return proc.stdout


def build_error(comp: Component, output: str, log: Path) -> PikubeError:
    lines = [line for line in output.splitlines() if line.strip()]
    for line in lines:
        if "not available" in line or "403 Forbidden" in line or "404 Not Found" in line:
            return PikubeError(
                f"building {comp.name} {comp.version}: a module version is not on the Go module "
                f"proxy: {line.strip()} (pin an available version in "
                f"pikube/lab/kubernetes/components.py and its wrapper module; log {log})"
            )
    last = lines[-1].strip() if lines else "no output"
    return PikubeError(f"building {comp.name} {comp.version} failed: {last} (full log {log})")


def _build_into(comp: Component, tmp: Path) -> float:
    """Run the component's build steps into tmp/bin and write tmp/build.json; the seconds."""
    started = time.monotonic()
    src, out = tmp / "src", tmp / "bin"
    src.mkdir(parents=True)
    out.mkdir()
    for name, data in wrapper_files(comp).items():
        (src / name).write_bytes(data)
    logs = cache_dir() / "gobuild" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{tmp.name.split('.tmp-')[0]}.log"
    log.write_text("")
    env = {**os.environ, **go_env(cache_dir())}
    module_dir = ""
    if comp.toolchain is Toolchain.C:
        # The module's source tree, fetched into the module cache and checked against go.sum.
        listing = _run(
            ("go", "mod", "download", "-json", f"{comp.module}@{comp.version}"), src, env, log, comp
        )
        module_dir = str(json.loads(listing)["Dir"])
    for step in build_steps(comp, str(out), module_dir):
        _run(step.argv, src, {**env, **dict(step.env)}, log, comp)
        for made, wanted in step.renames:
            os.rename(out / made, out / wanted)
    seconds = time.monotonic() - started
    sizes = {b.name: (out / b.name).stat().st_size for b in comp.binaries}
    # `go version`, not `go env GOVERSION`: the Go 1.15 that builds one component lacks it.
    toolchain_env = {**env, "GOTOOLCHAIN": go_toolchain(comp)}
    go_version = _run(("go", "version"), src, toolchain_env, log, comp).split()[2]
    manifest = {
        "component": comp.name,
        "module": comp.module,
        "version": comp.version,
        "pinned": comp.pinned,
        "toolchain": go_version,
        "goarch": goarch(),
        "build_s": round(seconds, 1),
        "binaries": sizes,
    }
    shutil.rmtree(src)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return seconds


def module_file(name: str, path: str) -> bytes:
    """A file of the component's upstream module, from the Go module cache (downloaded and
    checked against the wrapper's go.sum first if needed), e.g. flannel's kube-flannel.yml."""
    comp = lookup(name)
    with tempfile.TemporaryDirectory(prefix="pikube-module-") as tmp:
        for file_name, data in wrapper_files(comp).items():
            Path(tmp, file_name).write_bytes(data)
        env = {**os.environ, **go_env(cache_dir()), "GOTOOLCHAIN": go_toolchain(comp)}
        listing = _run(
            ("go", "mod", "download", "-json", f"{comp.module}@{comp.version}"),
            Path(tmp),
            env,
            Path(tmp, "download.log"),
            comp,
        )
    source = Path(json.loads(listing)["Dir"]) / path
    if not source.is_file():
        raise PikubeError(f"{comp.module}@{comp.version} has no {path}")
    return source.read_bytes()
