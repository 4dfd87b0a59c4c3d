"""The manifest-directory source: desired state from a directory of Kubernetes YAML.

Reads MetalLB's IPAddressPool and L2Advertisement, Services of type LoadBalancer, their
EndpointSlices, and Nodes (pikube.lb.config), gives services their IPs (pikube.lb.ipam: the IP a
service holds in status.loadBalancer.ingress, asks for, or gets from a pool), and turns that into
announcements (pikube.lb.announcements). It notices changes with inotify (a slow poll where there is
none) and compares the files' sizes and mtimes; an invalid file is reported by name and the
last valid state stays in force.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pikube.errors import PikubeError
from pikube.lb import announcements, ipam
from pikube.lb.announcements import DesiredState
from pikube.lb.config import load_manifests, manifest_files
from pikube.lb.ipam import Allocation, AllocationResult
from pikube.lb.model import ClusterResources
from pikube.lb.sources.watch import DirectoryWatch

log = logging.getLogger("pikube.source")


def state_from(
    resources: ClusterResources, previous: Mapping[str, Allocation] | None = None
) -> tuple[DesiredState, AllocationResult]:
    """The announcements for these resources, and the allocation they rest on.

    A directory of manifests has no status to remember IPs in, so the previous allocation is
    passed back in: deleting or changing one service never moves another (MetalLB #2723).
    """
    result = ipam.allocate(resources, previous=previous)
    allocations = {key: a.ips for key, a in result.allocations.items()}
    problems = [f"service {key}: {why}" for key, why in sorted(result.errors.items())]
    return announcements.desired_state(resources, allocations, problems), result


def _signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        files = manifest_files([directory])
    except PikubeError:
        return ()
    signature = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        signature.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(signature)


@dataclass
class ManifestDirectory:
    directory: Path
    recheck_s: float = 30.0  # with inotify; without it, the directory is polled every second

    async def updates(self) -> AsyncIterator[DesiredState]:
        watch = DirectoryWatch(self.directory)
        wait_s = self.recheck_s if watch.uses_inotify else 1.0
        try:
            async for state in self._states(watch, wait_s):
                yield state
        finally:
            watch.close()

    async def _states(self, watch: DirectoryWatch, wait_s: float) -> AsyncIterator[DesiredState]:
        seen: tuple[tuple[str, int, int], ...] | None = None
        previous: Mapping[str, Allocation] | None = None
        last_error = ""
        while True:
            signature = _signature(self.directory)
            if signature != seen:
                seen = signature
                try:
                    state, allocation = state_from(load_manifests([self.directory]), previous)
                except PikubeError as exc:
                    if exc.message != last_error:
                        log.error("%s; keeping the last valid configuration", exc.message)
                    last_error = exc.message
                else:
                    last_error = ""
                    previous = allocation.allocations
                    log.info(
                        "configuration from %s: %d announcements, %d problems",
                        self.directory,
                        len(state.announcements),
                        len(state.problems),
                    )
                    yield state
            await watch.changed(wait_s)
