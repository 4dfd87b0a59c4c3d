"""The cached minimal Debian root that every lab SSH host boots from (as an overlay's lower layer).

Owns: building it once with debootstrap from the machine's Debian mirror, dressing it up as
Raspberry Pi OS where the cluster builder looks (see `_dress_as_raspberry_pi_os`), and caching
it outside the repository (/var/cache/pikube, or $PIKUBE_CACHE_DIR). The build is atomic (a
temporary directory renamed into place) and serialised between processes by an flock, so
concurrent test processes on a clean machine build it once and share it. It must not hold
anything specific to one host: host keys, machine-id and hostname are per host (sshhosts.py).

The build takes about 40 s and 270 MB; the cache key changes whenever the recipe does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from pikube.errors import PikubeError
from pikube.system import require_commands, require_root

SUITE = "bookworm"  # Raspberry Pi OS 12 is Debian 12
# What Raspberry Pi OS Lite has and the lab needs: systemd as init, sshd, the tools the builder's
# facts read, and dphys-swapfile (Raspberry Pi OS's swap file, which kubelet must not meet).
INCLUDE = (
    "systemd",
    "openssh-server",
    "iproute2",
    "procps",
    "kmod",
    "dphys-swapfile",
    "iputils-ping",
)
RECIPE_VERSION = 1  # bump when _dress_as_raspberry_pi_os changes
# The machine's own architecture: a 64-bit userland, like Raspberry Pi OS (64-bit). A lab host
# with a 32-bit userland (the `32-bit-userland` fault) boots a root of THIRTY_TWO_BIT instead:
# real i386 programs on the machine's 64-bit kernel, as Raspberry Pi OS (32-bit) runs armhf
# programs on a Pi 4's 64-bit kernel.
NATIVE = "amd64"
THIRTY_TWO_BIT = "i386"
_BUILD_TIMEOUT_S = 900.0


def cache_dir() -> Path:
    return Path(os.environ.get("PIKUBE_CACHE_DIR", "/var/cache/pikube"))


def recipe_key(arch: str = NATIVE) -> str:
    recipe: dict[str, object] = {"suite": SUITE, "include": INCLUDE, "version": RECIPE_VERSION}
    if arch != NATIVE:  # the native root's key predates other architectures
        recipe["arch"] = arch
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def rootfs_path(arch: str = NATIVE) -> Path:
    name = SUITE if arch == NATIVE else f"{SUITE}-{arch}"
    return cache_dir() / "rootfs" / f"{name}-{recipe_key(arch)}"


def debian_mirror() -> str:
    """The machine's Debian mirror, from its apt sources (deb822 or one-line format)."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for line in deb822.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[0] == "deb" and "security" not in fields[-2]:
                return next(f for f in fields[1:] if f.startswith(("http", "file")))
    raise PikubeError(
        "cannot find a Debian mirror in /etc/apt/sources.list.d/debian.sources or "
        "/etc/apt/sources.list; the lab's SSH hosts are built from it with debootstrap"
    )


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """An exclusive flock on <cache>/<name>.lock, shared by every process on the machine."""
    path = cache_dir() / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_rootfs(arch: str = NATIVE) -> Path:
    """The cached root for `arch`, built first if missing (about 40 s). Safe to call
    concurrently."""
    target = rootfs_path(arch)
    if (target / "etc" / "os-release").exists():
        return target
    require_root("building the lab's Debian root")
    require_commands("debootstrap")
    with cache_lock(f"rootfs-{target.name}"):
        if (target / "etc" / "os-release").exists():  # built by another process meanwhile
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f"{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a build that was killed
        tmp = target.parent / f"{target.name}.tmp-{os.getpid()}"
        try:
            _debootstrap(tmp, arch)
            _dress_as_raspberry_pi_os(tmp)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _debootstrap(into: Path, arch: str) -> None:
    mirror = debian_mirror()
    argv = [
        "debootstrap",
        f"--arch={arch}",
        "--variant=minbase",
        f"--include={','.join(INCLUDE)}",
        SUITE,
        str(into),
        mirror,
    ]
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PikubeError(
            f"debootstrap of the lab root from {mirror} did not finish in {_BUILD_TIMEOUT_S:g} s"
        ) from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        raise PikubeError(
            f"debootstrap of the lab root from {mirror} failed after "
            f"{time.monotonic() - started:.0f} s (status {result.returncode}):\n{tail}"
        )


# Raspberry Pi OS Lite (bookworm, 64-bit) where the builder looks. The kernel's view (device-tree
# model, /proc/cmdline, /proc/cgroups) is presented per host at boot by pihost.py.
_BOOT_STUB = (
    "DO NOT EDIT THIS FILE\n\nThe file you are looking for has moved to /boot/firmware/{name}\n"
)
_SSHD_LAB = (
    "# pikube lab: many commands in flight per connection, keys only.\n"
    "MaxSessions 64\n"
    "PermitRootLogin prohibit-password\n"
    "PasswordAuthentication no\n"
    "UseDNS no\n"
)
_DPHYS = "# /etc/dphys-swapfile as Raspberry Pi OS ships it\nCONF_SWAPSIZE=100\n"
# Units that cannot work inside a namespace and would only mark every boot "degraded".
_MASKED_UNITS = ("console-getty.service", "getty@tty1.service", "systemd-logind.service")


def _dress_as_raspberry_pi_os(root: Path) -> None:
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()  # every host gets its own
    (root / "etc" / "ssh" / "sshd_config.d" / "pikube-lab.conf").write_text(_SSHD_LAB)
    (root / "etc" / "dphys-swapfile").write_text(_DPHYS)
    (root / "boot" / "firmware").mkdir(parents=True, exist_ok=True)
    for name in ("cmdline.txt", "config.txt"):
        (root / "boot" / name).write_text(_BOOT_STUB.format(name=name))
    (root / "etc" / "rpi-issue").write_text(
        "Raspberry Pi reference 2024-11-19\n"
        "Generated using pi-gen, https://github.com/RPi-Distro/pi-gen (pikube lab image)\n"
    )
    (root / "etc" / "machine-id").write_text("")
    (root / "etc" / "hostname").write_text("raspberrypi\n")
    for unit in _MASKED_UNITS:
        link = root / "etc" / "systemd" / "system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to("/dev/null")
    # The lab's hosts get their apt sources from the lab repository (sshhosts.py).
    (root / "etc" / "apt" / "sources.list").write_text("")
    for lists in (root / "var" / "lib" / "apt" / "lists").glob("*"):
        if lists.is_file():
            lists.unlink()
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
