"""Where the speaker's desired state comes from: a directory of manifests, later the Kubernetes
API. Every source yields the same `DesiredState` (pikube.lb.announcements, re-exported here so
sources keep importing it from one place), so the speaker does not know which it has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from pikube.lb.announcements import Announcement, DesiredState

__all__ = ["Announcement", "DesiredState", "Source"]


class Source(Protocol):
    def updates(self) -> AsyncIterator[DesiredState]:
        """Yield the desired state now and after every change; never end on bad input."""
        ...
