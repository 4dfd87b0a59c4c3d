"""Debian packages for the lab's images: the whole dependency closure of a list of packages,
for this machine's architecture or another, from the machine's Debian mirror (images.py and
appimage.py unpack them into image layers).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from pikube.errors import PikubeError
from pikube.lab.hosts import rootfs


def run_tool(argv: list[str], what: str, timeout_s: float = 600) -> str:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PikubeError(f"{what}: `{argv[0]}` did not finish in {timeout_s:g} s") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-6:])
        raise PikubeError(f"{what} failed (`{' '.join(argv[:3])} ...`):\n{tail}")
    return result.stdout


def dpkg_architecture() -> str:
    return run_tool(["dpkg", "--print-architecture"], "dpkg").strip()


class DebianSource:
    """Debian packages with their whole dependency closure, from the machine's Debian mirror.

    apt-get runs against an empty dpkg status (so every dependency is fetched, and nothing of
    this machine's own installation leaks in) and with Essential packages not forced in.
    """

    def __init__(self, architecture: str | None = None) -> None:
        self._state: Path | None = None  # apt's lists, fetched once per source
        self.architecture = architecture  # a Debian architecture; None: the machine's

    def download(self, packages: Sequence[str], into: Path) -> list[Path]:
        first = self._state is None
        state = self._state or into / "apt-state"
        self._state = state
        archives = into / "archives"
        (archives / "partial").mkdir(parents=True)
        mirror = rootfs.debian_mirror()
        if first:
            for sub in ("lists/partial", "sources.list.d"):
                (state / sub).mkdir(parents=True)
            (state / "status").write_text("")
            keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
            suites = [rootfs.SUITE, f"{rootfs.SUITE}-updates"]
            lines = [f"deb [signed-by={keyring}] {mirror} {s} main" for s in suites]
            (state / "sources.list").write_text("\n".join(lines) + "\n")
        options = []
        for key, value in (
            ("Dir::State::status", state / "status"),
            ("Dir::State::Lists", state / "lists"),
            ("Dir::Cache", state),
            ("Dir::Cache::Archives", archives),
            ("Dir::Etc::SourceList", state / "sources.list"),
            ("Dir::Etc::SourceParts", state / "sources.list.d"),
            ("Dir::Etc::Preferences", "/dev/null"),
            ("Dir::Etc::PreferencesParts", state / "sources.list.d"),
            ("Debug::NoLocking", "true"),
            ("APT::Install-Recommends", "false"),
            ("pkgCacheGen::Essential", "none"),
            *(
                (
                    ("APT::Architecture", self.architecture),
                    ("APT::Architectures", self.architecture),
                )
                if self.architecture
                else ()
            ),
        ):
            options += ["-o", f"{key}={value}"]
        what = f"downloading Debian packages for the lab's images from {mirror}"
        if first:
            run_tool(["apt-get", *options, "-q", "update"], what)
        run_tool(["apt-get", *options, "-q", "install", "--download-only", "-y", *packages], what)
        debs = sorted(archives.glob("*.deb"))
        if not debs:
            raise PikubeError(f"{what}: apt-get downloaded nothing")
        return debs
