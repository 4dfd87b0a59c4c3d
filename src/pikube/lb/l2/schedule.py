"""The simulation's schedules: random partitions of every shape, faults and a heal. Pure.

A `Schedule` is: a cold start on a whole network, a few chaotic segments (each a partition
shape, flapping or not, with loss and delay, and node events: crash, return, restart, link
down/up), then a heal: a whole network, no loss, for long enough to settle, perhaps with a
planned leave (SIGTERM). `random_schedule(seed)` makes one; the seed reproduces it.
`pikube.lb.l2.sim` runs it.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from pikube.lb.l2.core import CoreSettings

KEY = b"pikube-simulation-key-0123456789"
INTERFACE = "eth0"


class Shape(enum.Enum):
    """Which heartbeats a segment's network drops (clients always hear live links)."""

    WHOLE = "whole"
    SYMMETRIC = "symmetric"  # two groups that cannot hear each other
    ONE_WAY = "one-way"  # group A does not hear group B; B hears A
    DEAF = "deaf"  # one node hears nobody; everybody hears it
    MUTE = "mute"  # nobody hears one node; it hears everybody


class Fault(enum.Enum):
    CRASH = "crash"
    RETURN = "return"
    RESTART = "restart"
    LINK_DOWN = "link-down"
    LINK_UP = "link-up"
    LEAVE = "leave"  # SIGTERM: hand over, then exit


@dataclass(frozen=True)
class Segment:
    duration_s: float
    shape: Shape
    group: frozenset[str] = frozenset()  # the shape's group A, or its one node
    flap_s: float = 0.0  # > 0: alternate between the shape and whole every flap_s
    loss: float = 0.0
    delay_max_s: float = 0.0
    faults: tuple[tuple[float, Fault, str], ...] = ()  # (offset, what, node)


@dataclass(frozen=True)
class Schedule:
    seed: int
    nodes: tuple[str, ...]
    ips: tuple[str, ...]
    clients: int
    start_s: float  # the cold start, whole
    segments: tuple[Segment, ...]
    heal: Segment  # whole, no loss

    def describe(self) -> str:
        parts = [f"seed {self.seed}: {len(self.nodes)} nodes, {len(self.ips)} IPs"]
        for s in self.segments:
            flap = f" flapping every {s.flap_s * 1000:.0f} ms" if s.flap_s else ""
            group = ",".join(sorted(s.group))
            faults = "".join(f"; {f.value} {n} at +{t * 1000:.0f} ms" for t, f, n in s.faults)
            parts.append(
                f"{s.duration_s * 1000:.0f} ms {s.shape.value}({group}){flap} loss {s.loss:.2f} "
                f"delay<={s.delay_max_s * 1000:.0f} ms{faults}"
            )
        leave = "".join(f"; {f.value} {n} at +{t * 1000:.0f} ms" for t, f, n in self.heal.faults)
        parts.append(f"heal {self.heal.duration_s * 1000:.0f} ms{leave}")
        return " | ".join(parts)


@dataclass(frozen=True)
class Violation:
    schedule: Schedule
    at_s: float
    what: str

    def __str__(self) -> str:
        return f"at {self.at_s * 1000:.0f} ms: {self.what} [{self.schedule.describe()}]"


SETTINGS = CoreSettings(
    node="",
    key=KEY,
    interval_ms=60,
    multiplier=3,
    probe_wait_s=0.06,
    startup_grace_s=0.3,  # the daemon's is 2 s; shorter here to keep schedules short
    bridge_s=0.0,  # connection bridges are nftables rules: nothing to model
)
HEAL_DELAY_MAX_S = 0.002


def random_schedule(seed: int) -> Schedule:
    rng = random.Random(seed)
    nodes = tuple(f"node{i:02d}" for i in range(1, rng.randint(2, 4) + 1))
    ips = tuple(f"198.51.100.{230 + i}" for i in range(rng.randint(1, 3)))
    segments = tuple(_random_segment(rng, nodes) for _ in range(rng.randint(1, 3)))
    crashed: set[str] = set()
    link_down: set[str] = set()
    for segment in segments:
        for _, fault, node in segment.faults:
            if fault is Fault.CRASH:
                crashed.add(node)
            elif fault in (Fault.RETURN, Fault.RESTART):
                crashed.discard(node)
            elif fault is Fault.LINK_DOWN:
                link_down.add(node)
            elif fault is Fault.LINK_UP:
                link_down.discard(node)
    faults: tuple[tuple[float, Fault, str], ...] = ()
    live = [n for n in nodes if n not in crashed | link_down]
    detect = SETTINGS.detect_s
    if len(live) >= 2 and rng.random() < 0.25:
        faults = ((detect * 2 + rng.uniform(0, 0.3), Fault.LEAVE, rng.choice(live)),)
    heal = Segment(detect * 2 + 1.0, Shape.WHOLE, delay_max_s=HEAL_DELAY_MAX_S, faults=faults)
    start = SETTINGS.startup_grace_s + detect + 0.3
    return Schedule(seed, nodes, ips, rng.randint(1, 2), start, segments, heal)


def _random_segment(rng: random.Random, nodes: tuple[str, ...]) -> Segment:
    shape = rng.choice(list(Shape))
    if shape in (Shape.DEAF, Shape.MUTE):
        group = frozenset({rng.choice(nodes)})
    else:
        cut = rng.randint(1, len(nodes) - 1)
        group = frozenset(rng.sample(nodes, cut))
    duration = rng.uniform(0.1, 1.2)
    faults = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        fault = rng.choice(
            (Fault.CRASH, Fault.RESTART, Fault.LINK_DOWN, Fault.RETURN, Fault.LINK_UP)
        )
        faults.append((rng.uniform(0, duration), fault, rng.choice(nodes)))
    return Segment(
        duration_s=duration,
        shape=shape,
        group=group,
        flap_s=rng.choice((0.0, 0.0, rng.uniform(0.03, 0.3))),
        loss=rng.choice((0.0, 0.0, 0.05, 0.3)),
        delay_max_s=rng.choice((0.0, 0.002, 0.01)),
        faults=tuple(sorted(faults)),
    )
