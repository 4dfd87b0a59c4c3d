"""Where the speaker's desired state comes from: a directory of manifests, later the Kubernetes
API. Every source yields the same `DesiredState`, so the speaker does not know which it has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from pikube.lb.election import Target


@dataclass(frozen=True)
class Announcement:
    """A target to announce by ARP/NDP, with who may announce it and where."""

    target: Target
    services: tuple[str, ...]  # namespace/name of every service using these IPs
    interfaces: tuple[str, ...] = ()  # from L2Advertisement.interfaces; empty: all


@dataclass(frozen=True)
class DesiredState:
    announcements: tuple[Announcement, ...] = ()
    problems: tuple[str, ...] = ()  # what could not be announced, and why, in words


class Source(Protocol):
    def updates(self) -> AsyncIterator[DesiredState]:
        """Yield the desired state now and after every change; never end on bad input."""
        ...
