"""The informer's pure parts: cache updates from lists and watch events, what each watch line
means, and the retry schedule."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pikube.lb.kube.informer import (
    Action,
    Backoff,
    Cache,
    ChangeType,
    interpret,
    object_key,
)


def svc(name: str, rv: int, namespace: str = "default", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(rv)},
        **extra,
    }


def test_keys_are_namespace_slash_name_or_the_name_of_cluster_scoped_objects() -> None:
    assert object_key(svc("web", 1)) == "default/web"
    assert object_key({"metadata": {"name": "node01"}}) == "node01"


def test_a_relist_reports_what_was_missed_including_deletions() -> None:
    cache = Cache()
    first = cache.replace([svc("a", 1), svc("b", 2)], "2")
    assert [(c.type, c.key) for c in first] == [
        (ChangeType.ADDED, "default/a"),
        (ChangeType.ADDED, "default/b"),
    ]
    assert cache.synced
    assert cache.resource_version == "2"
    again = cache.replace([svc("b", 5), svc("c", 6)], "7")
    assert sorted((c.type.value, c.key) for c in again) == [
        ("ADDED", "default/c"),
        ("DELETED", "default/a"),
        ("MODIFIED", "default/b"),
    ]
    assert set(cache.objects) == {"default/b", "default/c"}
    assert cache.resource_version == "7"


def test_a_relist_of_the_same_objects_changes_nothing() -> None:
    cache = Cache()
    cache.replace([svc("a", 1)], "1")
    assert cache.replace([svc("a", 1)], "9") == []
    assert cache.resource_version == "9"


def test_watch_events_update_the_cache_and_its_resource_version() -> None:
    cache = Cache()
    cache.replace([], "1")
    added = cache.apply(ChangeType.ADDED, svc("a", 2))
    assert added is not None
    assert added.type is ChangeType.ADDED
    modified = cache.apply(ChangeType.MODIFIED, svc("a", 3, spec={"x": 1}))
    assert modified is not None
    assert modified.type is ChangeType.MODIFIED
    assert cache.apply(ChangeType.MODIFIED, svc("a", 3, spec={"x": 1})) is None  # a replay
    deleted = cache.apply(ChangeType.DELETED, svc("a", 4))
    assert deleted is not None
    assert deleted.type is ChangeType.DELETED
    assert cache.apply(ChangeType.DELETED, svc("a", 4)) is None
    assert cache.objects == {}
    assert cache.resource_version == "4"


def test_an_added_event_for_a_known_object_is_a_modification() -> None:
    # After a resume, the server may send ADDED for an object the cache already holds.
    cache = Cache()
    cache.replace([svc("a", 1)], "1")
    change = cache.apply(ChangeType.ADDED, svc("a", 2))
    assert change is not None
    assert change.type is ChangeType.MODIFIED


def test_watch_lines_bookmark_gone_error_and_changes() -> None:
    bookmark = interpret({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}})
    assert bookmark.action is Action.BOOKMARK
    assert bookmark.resource_version == "42"
    gone = interpret({"type": "ERROR", "object": {"code": 410, "message": "too old"}})
    assert gone.action is Action.RELIST
    expired = interpret({"type": "ERROR", "object": {"reason": "Expired", "message": "x"}})
    assert expired.action is Action.RELIST
    other = interpret({"type": "ERROR", "object": {"code": 500, "message": "etcd down"}})
    assert other.action is Action.RETRY
    assert other.message == "etcd down"
    change = interpret({"type": "MODIFIED", "object": svc("a", 7)})
    assert change.action is Action.APPLY
    assert change.change_type is ChangeType.MODIFIED
    assert change.resource_version == "7"
    assert interpret({"type": "WHAT", "object": {}}).action is Action.RETRY
    assert interpret({"type": "ADDED"}).action is Action.RETRY


def test_backoff_grows_to_its_cap_and_jitters_within_half_of_it() -> None:
    backoff = Backoff(first_s=0.1, cap_s=10.0)
    assert backoff.delay_s(0, 0.5) == 0.0
    assert backoff.delay_s(1, 0.0) == 0.05
    assert backoff.delay_s(1, 0.999) < 0.1
    assert backoff.delay_s(4, 0.0) == 0.4
    assert backoff.delay_s(50, 0.0) == 5.0
    assert backoff.delay_s(50, 0.999) < 10.0


@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0, max_value=0.999999))
def test_backoff_never_exceeds_the_cap_nor_drops_below_half_the_step(
    failures: int, unit: float
) -> None:
    backoff = Backoff()
    step = min(backoff.cap_s, backoff.first_s * backoff.factor ** (failures - 1))
    assert step / 2 <= backoff.delay_s(failures, unit) <= step
