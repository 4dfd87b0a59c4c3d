"""The election's memo (`l2.plan`): the same inputs give the same plan, whichever core asks;
different inputs another; the table stays within its bound (docs/decisions/0106)."""

from __future__ import annotations

from pikube.lb import election
from pikube.lb.announcements import DesiredState
from pikube.lb.l2 import events as ev
from pikube.lb.l2.core import SpeakerCore
from pikube.lb.l2.plan import Plans
from tests.unit.lb.test_lifecycle import VIP, Peer, announcement, make_core


def _core(
    node: str, desired: DesiredState, peer: Peer, now: float, claims: tuple[str, ...]
) -> SpeakerCore:
    core = make_core(node)
    core.handle(ev.Configured(0.0, desired))
    core.handle(ev.Tick(now, (peer.says(now, claims),)))
    return core


def test_equal_inputs_give_the_same_plan_and_other_inputs_another() -> None:
    plans = Plans()
    desired = DesiredState((announcement(),))
    first = _core("node01", desired, Peer("node02"), 0.05, ())
    again = _core("node01", DesiredState((announcement(),)), Peer("node02"), 0.06, ())
    claimed = _core("node01", desired, Peer("node02"), 0.05, (VIP,))
    plan = plans.plan(first, joining=False)
    assert plans.plan(again, joining=False) is plan  # an equal configuration, another object
    assert plans.made == 1
    other = plans.plan(claimed, joining=False)
    assert other is not plan
    assert plans.made == 2
    assert plan.owners == {VIP: "node01"}
    assert other.owners == {VIP: "node02"}
    assert other.rivals == {VIP: frozenset({"node02"})}
    # What the election itself says for the same inputs.
    target = election.Target(VIP, (VIP,), frozenset({"node01", "node02"}))
    assert plan.owners == election.elect([target], {"node01", "node02"}, {})


def test_the_table_keeps_at_most_its_bound_of_targets() -> None:
    plans = Plans(kept=4)  # two plans of one target each (a plan counts its targets + 1)
    desired = DesiredState((announcement(),))
    for i in range(10):
        core = _core("node01", desired, Peer(f"node{i + 10:02d}"), 0.05, ())
        plans.plan(core, joining=False)
        assert plans.size <= 4
        assert len(plans.plans) <= 2
    assert plans.made == 10


def test_a_core_still_joining_gets_its_own_plan() -> None:
    plans = Plans()
    core = make_core("node01")
    core.handle(ev.Configured(0.0, DesiredState((announcement(),))))
    assert plans.plan(core, joining=True) is not plans.plan(core, joining=False)
