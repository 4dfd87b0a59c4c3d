"""The manifest-directory source: desired state from a directory of Kubernetes YAML.

Reads MetalLB's IPAddressPool and L2Advertisement, Services of type LoadBalancer, their
EndpointSlices, and Nodes (pikube.lb.config), gives services their IPs (pikube.lb.ipam: the IP a
service holds in status.loadBalancer.ingress, asks for, or gets from a pool), and turns that into
announcements (pikube.lb.layer2). It notices changes by polling the files' sizes and mtimes
(cheap, and it works on every filesystem); an invalid file is reported by name and the last
valid state stays in force.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pikube.errors import PikubeError
from pikube.lb import layer2
from pikube.lb.config import load_manifests, manifest_files
from pikube.lb.model import ClusterResources, IPAddress, ServiceType
from pikube.lb.sources import DesiredState
from pikube.lb.sources.watch import DirectoryWatch

log = logging.getLogger("pikube.source")


def allocations_for(
    resources: ClusterResources,
) -> tuple[dict[str, Sequence[IPAddress]], list[str]]:
    """Each LoadBalancer service's IPs, and what went wrong for the others.

    Interim (until pikube.lb.ipam lands): the IPs a service holds or explicitly asks for.
    """
    result: dict[str, Sequence[IPAddress]] = {}
    problems: list[str] = []
    for service in resources.services:
        if service.type is not ServiceType.LOAD_BALANCER:
            continue
        if service.ingress_ips:
            result[service.key] = service.ingress_ips
            continue
        requested = service.annotations.get("metallb.io/loadBalancerIPs") or (
            service.load_balancer_ip or ""
        )
        try:
            ips = [ipaddress.ip_address(p.strip()) for p in requested.split(",") if p.strip()]
        except ValueError:
            problems.append(f"service {service.key}: {requested!r} is not a list of IPs")
            continue
        if ips:
            result[service.key] = ips
        else:
            problems.append(f"service {service.key}: no IP requested (IPAM not yet available)")
    return result, problems


def state_from(resources: ClusterResources) -> DesiredState:
    allocations, problems = allocations_for(resources)
    return layer2.desired_state(resources, allocations, problems)


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
        last_error = ""
        while True:
            signature = _signature(self.directory)
            if signature != seen:
                seen = signature
                try:
                    state = state_from(load_manifests([self.directory]))
                except PikubeError as exc:
                    if exc.message != last_error:
                        log.error("%s; keeping the last valid configuration", exc.message)
                    last_error = exc.message
                else:
                    last_error = ""
                    log.info(
                        "configuration from %s: %d announcements, %d problems",
                        self.directory,
                        len(state.announcements),
                        len(state.problems),
                    )
                    yield state
            await watch.changed(wait_s)


def explicit_ips(resources: ClusterResources) -> Mapping[str, Sequence[IPAddress]]:
    """Services' IPs from their status only (for sources whose controller wrote them)."""
    return {
        s.key: s.ingress_ips
        for s in resources.services
        if s.type is ServiceType.LOAD_BALANCER and s.ingress_ips
    }
