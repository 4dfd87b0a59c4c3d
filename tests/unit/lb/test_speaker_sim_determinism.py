"""The simulation's outcome, step by step, for fixed seeds, against a digest recorded before its
speed-ups (docs/decisions/0106): making it cheaper must not change what it does.

Each step's trace is what every node answers for and its targets' states, after the event and
before the invariants' check; each run adds its `sim.summary` (steps, end, views,
counters, clients' ARP tables, owners, where the random streams stand) and its verdict. A
deliberate change of behaviour (of the core, the network model or the schedules) changes the
digest: record the new one with `python tests/unit/lb/test_speaker_sim_determinism.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pikube.lb.l2 import invariants, sim

SEEDS = range(300)
DIGEST = "261f5cdb85e94d274b80a4303eec6a26caed39737b853a9177ec4c25372a6c43"


@contextmanager
def _traced(trace: list[str]) -> Iterator[None]:
    check = invariants.check

    def traced_check(simulation: sim.Simulation) -> sim.Violation | None:
        states = []
        for node in simulation.nodes.values():
            core = node.core
            lives = () if core is None else tuple(life.state.value for life in core.lives.values())
            states.append((node.name, sorted(node.answering), lives))
        trace.append(f"{simulation.now!r} {states}")
        return check(simulation)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(invariants, "check", traced_check)
        yield


def digest(seeds: range = SEEDS) -> str:
    total = hashlib.sha256()
    for seed in seeds:
        trace: list[str] = []
        simulation = sim.Simulation(sim.random_schedule(seed))
        with _traced(trace):
            violation = simulation.run()
        total.update("\n".join(trace).encode())
        total.update(sim.summary(simulation).encode())
        total.update(str(violation).encode())
    return total.hexdigest()


def test_the_simulation_does_what_it_did_for_300_seeds() -> None:
    assert digest() == DIGEST


if __name__ == "__main__":
    print(digest())
