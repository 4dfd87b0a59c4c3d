"""One real Kubernetes lab shared by the test modules that take it as the seed builds it.

Building a lab with real Kubernetes v1.31.5 (`seedcluster.up_kubernetes`) takes 75-120 s on this
machine; test_kubernetes_seed and test_lb_install both need exactly that cluster, so they share
one (the `seed_kubernetes` fixture) instead of building two. Sharing is safe because:

- the modules that use it run one after the other (`pytest_collection_modifyitems` below moves
  them next to each other, whole modules, in their collected order), so it never idles while
  unrelated tests run;
- a module that leaves the cluster as it found it says so with `SeedKubernetes.clean` (the seed
  module deletes its nginx); one that changes it for good (test_lb_install installs MetalLB and
  pikube and powers a node off) calls `SeedKubernetes.discard` at its end, and whoever comes
  next gets a freshly built cluster;
- the cluster goes down right after the last test that uses it (`pytest_runtest_teardown`), and
  at the session's end whatever happens.

Decision 0120.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

import pytest

from pikube.lab.kubernetes import seedcluster
from pikube.lab.lab import Lab
from tests.conftest import new_lab_name

SHARED_FIXTURE = "seed_kubernetes"


class SeedKubernetes:
    """The session's shared lab with real Kubernetes, built on first use."""

    def __init__(self) -> None:
        self._lab: Lab | None = None

    def lab(self) -> Lab:
        if self._lab is None:
            lab = Lab(new_lab_name())
            try:
                lab.up()
                seedcluster.up_kubernetes(lab, say=lambda _line: None)
            except BaseException:
                lab.down()
                raise
            self._lab = lab
        return self._lab

    def clean(self, undo: Callable[[Lab], object]) -> None:
        """Give the cluster back after `undo` (a module's own objects removed); if `undo`
        fails, the cluster is discarded, so that the next user gets a fresh one."""
        if self._lab is None:
            return
        try:
            undo(self._lab)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Tear the lab down (the next `lab()` builds a new one)."""
        lab, self._lab = self._lab, None
        if lab is not None:
            lab.down()


_SHARED = SeedKubernetes()


@pytest.fixture(scope="session")
def seed_kubernetes() -> Iterator[SeedKubernetes]:
    try:
        yield _SHARED
    finally:
        _SHARED.discard()


class _Item(Protocol):
    @property
    def nodeid(self) -> str: ...


ItemT = TypeVar("ItemT", bound=_Item)


def _uses_shared(item: _Item) -> bool:
    return SHARED_FIXTURE in getattr(item, "fixturenames", ())


def _module(item: _Item) -> str:
    return item.nodeid.split("::", 1)[0]


def grouped(items: Sequence[ItemT]) -> list[ItemT]:
    """`items` with every module that uses the shared cluster moved to just after the first
    such module, whole modules in their order: the cluster is built once and used at a go."""
    sharing = {_module(item) for item in items if _uses_shared(item)}
    if len(sharing) < 2:
        return list(items)
    first = next(i for i, item in enumerate(items) if _module(item) in sharing)
    users = [item for item in items if _module(item) in sharing]
    before = list(items[:first])
    after = [item for item in items[first:] if _module(item) not in sharing]
    return before + users + after


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items[:] = grouped(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        # The item's own fixtures first (module-scoped ones at its module's end).
        return (yield)
    finally:
        if _uses_shared(item) and (nextitem is None or not _uses_shared(nextitem)):
            _SHARED.discard()
