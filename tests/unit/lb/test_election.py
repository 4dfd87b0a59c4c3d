"""The election: balance, stickiness, determinism, and what moves on failure."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pikube.lb.election import Target, elect

NODES = [f"node{i:02d}" for i in range(1, 11)]


def _targets(count: int) -> list[Target]:
    return [Target(key=f"198.51.{100 + i // 250}.{i % 250}", ips=(f"ip{i}",)) for i in range(count)]


def _claims(owners: dict[str, str | None]) -> dict[str, list[str]]:
    claims: dict[str, list[str]] = {}
    for key, node in owners.items():
        if node is not None:
            claims.setdefault(node, []).append(key)
    return claims


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 10), st.integers(0, 2**32))
def test_200_ips_spread_with_max_over_mean_at_most_1_25(node_count: int, seed: int) -> None:
    nodes = random.Random(seed).sample(NODES, node_count)
    owners = elect(_targets(200), nodes, {})
    load = Counter(owners.values())
    assert None not in load
    assert set(load) <= set(nodes)
    mean = 200 / node_count
    assert max(load.values()) / mean <= 1.25


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 10), st.integers(1, 120), st.integers(0, 2**32))
def test_a_failed_node_moves_only_its_own_ips_and_its_return_moves_none(
    node_count: int, ip_count: int, seed: int
) -> None:
    rng = random.Random(seed)
    nodes = rng.sample(NODES, node_count)
    targets = _targets(ip_count)
    before = elect(targets, nodes, {})
    failed = rng.choice(nodes)
    survivors = [n for n in nodes if n != failed]
    claims = {n: keys for n, keys in _claims(before).items() if n != failed}
    after = elect(targets, survivors, claims)
    for key, owner in before.items():
        if owner != failed:
            assert after[key] == owner
        else:
            assert after[key] in survivors
    # The failed node comes back: nothing fails back to it.
    back = elect(targets, nodes, _claims(after))
    assert back == after


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 10), st.integers(1, 60), st.integers(0, 2**32))
def test_every_speaker_computes_the_same_answer_whatever_the_input_order(
    node_count: int, ip_count: int, seed: int
) -> None:
    rng = random.Random(seed)
    nodes = rng.sample(NODES, node_count)
    targets = _targets(ip_count)
    claims = {rng.choice(nodes): [t.key for t in targets[: ip_count // 3]]}
    expected = elect(targets, nodes, claims)
    shuffled_targets = targets[:]
    rng.shuffle(shuffled_targets)
    shuffled_nodes = nodes[:]
    rng.shuffle(shuffled_nodes)
    assert elect(shuffled_targets, shuffled_nodes, claims) == expected


def test_only_eligible_nodes_are_chosen_and_none_when_nobody_is() -> None:
    targets = [
        Target("198.51.100.230", ("198.51.100.230",), eligible=frozenset({"node02"})),
        Target("198.51.100.231", ("198.51.100.231",), eligible=frozenset({"node09"})),
    ]
    owners = elect(targets, ["node01", "node02", "node03"], {})
    assert owners == {"198.51.100.230": "node02", "198.51.100.231": None}


def test_a_claim_by_a_node_that_is_no_longer_eligible_is_not_kept() -> None:
    target = Target("198.51.100.230", ("198.51.100.230",), eligible=frozenset({"node02"}))
    owners = elect([target], ["node01", "node02"], {"node01": ["198.51.100.230"]})
    assert owners == {"198.51.100.230": "node02"}


def test_split_brain_is_resolved_the_same_way_by_both_claimants() -> None:
    targets = _targets(20)
    claims = {"node01": [t.key for t in targets], "node02": [t.key for t in targets]}
    owners = elect(targets, ["node01", "node02"], claims)
    assert set(owners.values()) <= {"node01", "node02"}
    # Both claim everything; each target goes to one of them, the same for both views.
    assert owners == elect(list(reversed(targets)), ["node02", "node01"], claims)
