"""Leader election's rule (pure): create, renew, follow, or take over an expired Lease."""

from __future__ import annotations

from pikube.lb.kube.lease import LeaseAction, lease_action


def test_no_lease_is_created() -> None:
    assert lease_action(None, False, 0.0, "one", 15.0) is LeaseAction.CREATE


def test_the_holder_renews() -> None:
    assert lease_action("one", True, 100.0, "one", 15.0) is LeaseAction.RENEW


def test_a_standby_follows_a_lease_that_changes() -> None:
    assert lease_action("one", True, 14.9, "two", 15.0) is LeaseAction.FOLLOW


def test_a_standby_takes_over_a_lease_unchanged_for_a_whole_duration() -> None:
    assert lease_action("one", True, 15.0, "two", 15.0) is LeaseAction.TAKE_OVER


def test_a_released_lease_is_taken_at_once() -> None:
    assert lease_action("", True, 0.0, "two", 15.0) is LeaseAction.TAKE_OVER
