"""Reachability checks inside a lab, with the tools a person would use: ping, arping, ndisc6.

Used by `pikube lab demo` to show the LAN working and by the tests to assert it. All probes of
one check run concurrently, each bounded by its own timeout.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from pikube.lab.lab import Lab
from pikube.lab.network.topology import HOST_INTERFACE
from pikube.system import require_commands

_RTT = re.compile(r"= [\d.]+/([\d.]+)/")
_ARPING = re.compile(r"reply from \S+ \[([0-9a-fA-F:]{17})\]\s+([\d.]+)ms")
_NDISC = re.compile(r"Target link-layer address: ([0-9A-Fa-f:]{17})")


@dataclass(frozen=True)
class Probe:
    target: str  # host name
    kind: str  # ping, ping6, arping, ndisc6
    ok: bool
    detail: str  # round-trip time, or the MAC that answered, or why it failed


def _probe_argv(kind: str, address: str) -> list[str]:
    if kind == "ping":
        return ["ping", "-n", "-c", "1", "-W", "1", address]
    if kind == "ping6":
        return ["ping", "-6", "-n", "-c", "1", "-W", "1", address]
    if kind == "arping":
        return ["arping", "-c", "1", "-w", "1", "-I", HOST_INTERFACE, address]
    if kind == "ndisc6":
        return ["ndisc6", "-1", "-r", "1", "-w", "1000", address, HOST_INTERFACE]
    raise ValueError(kind)


def _interpret(kind: str, target: str, result: subprocess.CompletedProcess[str]) -> Probe:
    out = result.stdout
    if kind in ("ping", "ping6"):
        match = _RTT.search(out)
        if result.returncode == 0 and match:
            return Probe(target, kind, True, f"{float(match.group(1)):.2f} ms")
    elif kind == "arping":
        match = _ARPING.search(out)
        if result.returncode == 0 and match:
            return Probe(target, kind, True, match.group(1).lower())
    else:
        match = _NDISC.search(out)
        if result.returncode == 0 and match:
            return Probe(target, kind, True, match.group(1).lower())
    reason = (result.stderr or out).strip().splitlines()
    return Probe(target, kind, False, reason[-1] if reason else f"exit {result.returncode}")


PROBE_KINDS = ("ping", "ping6", "arping", "ndisc6")


def reachability(lab: Lab, source: str = "client") -> list[Probe]:
    """Probe every other host of the lab from `source`, all four ways, concurrently."""
    require_commands("ping", "arping", "ndisc6")
    jobs: list[tuple[str, str, subprocess.Popen[str]]] = []
    for host in lab.topology.hosts:
        if host.name == source:
            continue
        for kind in PROBE_KINDS:
            address = str(host.ipv6 if kind in ("ping6", "ndisc6") else host.ipv4)
            popen = subprocess.Popen(
                lab.command(source, _probe_argv(kind, address)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=lab.environment(),
            )
            jobs.append((host.name, kind, popen))
    probes = []
    for target, kind, popen in jobs:
        try:
            out, err = popen.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            popen.kill()
            out, err = popen.communicate()
        result = subprocess.CompletedProcess(popen.args, popen.returncode, out, err)
        probes.append(_interpret(kind, target, result))
    return probes
