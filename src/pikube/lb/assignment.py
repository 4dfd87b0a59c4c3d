"""What the controller owes a Service after the allocator decided: a status write and Events.
Pure.

MetalLB's controller (and so pikube's) writes, in ONE update of the Service's status
subresource, `status.loadBalancer.ingress` (one `{ip}` per address, nothing else) and the
annotation `metallb.io/ip-allocated-from-pool: <pool>`; the real API server keeps metadata
changes sent to a Service's /status. Events go on the Service, from `metallb-controller`:
- Normal `IPAllocated` "Assigned IP [...]" when the Service's IPs change;
- Warning `AllocationFailed` "Failed to allocate IP for "ns/name": why" when it gets none
  (once per distinct reason, not on every resync);
- Normal `ClearAssignment` when IPs it held are taken back (it stopped being a LoadBalancer,
  or its IPs are no longer valid for it);
- Warning `deprecatedAnnotation` for `metallb.universe.tf/` annotations.
A Service of another load-balancer class is not touched at all: another implementation owns
its status.

Must not: allocate (pikube.lb.ipam), talk to the API, or read the clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pikube.lb.ipam import LEGACY_ANNOTATION_PREFIX, Allocation

POOL_ANNOTATION = "metallb.io/ip-allocated-from-pool"
CONTROLLER_COMPONENT = "metallb-controller"


class EventType(enum.Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class StatusWrite:
    """The Service's status ingress IPs and pool annotation after the write (None: remove)."""

    ips: tuple[str, ...]
    pool: str | None


@dataclass(frozen=True)
class Current:
    """What the Service says now (from the API)."""

    ingress_ips: tuple[str, ...]
    pool_annotation: str | None
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Outcome:
    """What the allocator decided for a handled Service: IPs from a pool, or why none."""

    allocation: Allocation | None
    error: str | None


@dataclass(frozen=True)
class Decision:
    write: StatusWrite | None
    events: tuple[Event, ...]


def _quoted(ips: Sequence[str]) -> str:
    # Go's %q of a []string, as MetalLB prints it: ["a" "b"]
    return "[" + " ".join(f'"{ip}"' for ip in ips) + "]"


def decide(
    key: str,
    current: Current,
    outcome: Outcome | None,
    *,
    previous: Outcome | None = None,
) -> Decision:
    """The write and Events for Service `key`.

    `outcome` None: the controller does not handle this Service (not a LoadBalancer, or not of
    its class). `previous`: the outcome already reported for it, so Events are not repeated.
    """
    events: list[Event] = []
    if outcome is None:
        # Only take back what pikube (or MetalLB) gave: the pool annotation says so.
        if current.pool_annotation is None:
            return Decision(None, ())
        if current.ingress_ips:
            events.append(
                Event(
                    EventType.NORMAL,
                    "ClearAssignment",
                    "service is no longer a LoadBalancer handled by this controller",
                )
            )
        return Decision(StatusWrite((), None), tuple(events))
    if outcome != previous and any(
        k.startswith(LEGACY_ANNOTATION_PREFIX) for k in current.annotations
    ):
        events.append(
            Event(
                EventType.WARNING,
                "deprecatedAnnotation",
                f"{LEGACY_ANNOTATION_PREFIX} annotations are deprecated; use metallb.io/",
            )
        )
    if outcome.allocation is not None:
        ips = tuple(str(ip) for ip in outcome.allocation.ips)
        pool = outcome.allocation.pool
        if ips == current.ingress_ips and pool == current.pool_annotation:
            return Decision(None, tuple(events))
        if ips != current.ingress_ips:
            events.append(Event(EventType.NORMAL, "IPAllocated", f"Assigned IP {_quoted(ips)}"))
        return Decision(StatusWrite(ips, pool), tuple(events))
    write = None
    if current.ingress_ips or current.pool_annotation is not None:
        write = StatusWrite((), None)
        if current.ingress_ips:
            events.append(
                Event(
                    EventType.NORMAL,
                    "ClearAssignment",
                    f"current IP {_quoted(current.ingress_ips)} not allowed: {outcome.error}",
                )
            )
    if previous is None or previous.error != outcome.error or write is not None:
        events.append(
            Event(
                EventType.WARNING,
                "AllocationFailed",
                f'Failed to allocate IP for "{key}": {outcome.error}',
            )
        )
    return Decision(write, tuple(events))
