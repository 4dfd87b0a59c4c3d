"""The controller's duty to a Service (pure): one status write with the pool annotation, and
MetalLB's Events, each once."""

from __future__ import annotations

import ipaddress

from pikube.lb.assignment import Current, EventType, Outcome, StatusWrite, decide
from pikube.lb.ipam import Allocation

NONE = Current((), None, {})
GIVEN = Outcome(Allocation((ipaddress.ip_address("198.51.100.230"),), "seed-pool"), None)
FAILED = Outcome(None, "no available IPs in pool seed-pool")


def test_a_new_allocation_is_one_write_of_ip_and_pool_and_an_ipallocated_event() -> None:
    decision = decide("default/web", NONE, GIVEN)
    assert decision.write == StatusWrite(("198.51.100.230",), "seed-pool")
    assert [(e.type, e.reason, e.message) for e in decision.events] == [
        (EventType.NORMAL, "IPAllocated", 'Assigned IP ["198.51.100.230"]')
    ]


def test_a_service_already_holding_its_allocation_needs_nothing() -> None:
    held = Current(("198.51.100.230",), "seed-pool", {})
    decision = decide("default/web", held, GIVEN, previous=GIVEN)
    assert decision.write is None
    assert decision.events == ()


def test_a_missing_pool_annotation_is_written_without_a_new_event() -> None:
    decision = decide("default/web", Current(("198.51.100.230",), None, {}), GIVEN)
    assert decision.write == StatusWrite(("198.51.100.230",), "seed-pool")
    assert decision.events == ()


def test_allocation_failure_is_reported_once_per_reason() -> None:
    first = decide("default/web", NONE, FAILED)
    assert first.write is None
    assert [(e.type, e.reason) for e in first.events] == [(EventType.WARNING, "AllocationFailed")]
    assert first.events[0].message == (
        'Failed to allocate IP for "default/web": no available IPs in pool seed-pool'
    )
    assert decide("default/web", NONE, FAILED, previous=FAILED).events == ()


def test_ips_no_longer_valid_are_cleared_with_both_events() -> None:
    held = Current(("198.51.100.99",), "old-pool", {})
    decision = decide("default/web", held, FAILED, previous=GIVEN)
    assert decision.write == StatusWrite((), None)
    assert [e.reason for e in decision.events] == ["ClearAssignment", "AllocationFailed"]


def test_a_service_no_longer_handled_loses_only_what_we_gave_it() -> None:
    ours = Current(("198.51.100.230",), "seed-pool", {})
    decision = decide("default/web", ours, None)
    assert decision.write == StatusWrite((), None)
    assert [e.reason for e in decision.events] == ["ClearAssignment"]
    # Another implementation's IP (no pool annotation) is left alone.
    theirs = Current(("203.0.113.5",), None, {})
    assert decide("default/web", theirs, None).write is None


def test_legacy_annotations_get_a_deprecation_warning() -> None:
    legacy = Current((), None, {"metallb.universe.tf/address-pool": "seed-pool"})
    decision = decide("default/web", legacy, GIVEN)
    assert "deprecatedAnnotation" in [e.reason for e in decision.events]
