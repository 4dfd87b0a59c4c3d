"""The order that lets lab test modules share one seed cluster (tests/lab/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from tests.lab.conftest import SHARED_FIXTURE, grouped


@dataclass(frozen=True)
class Item:
    nodeid: str
    fixturenames: tuple[str, ...] = ()


def item(module: str, test: str, shared: bool = False) -> Item:
    return Item(f"tests/lab/{module}.py::{test}", (SHARED_FIXTURE,) if shared else ("lab",))


def ids(items: list[Item]) -> list[str]:
    return [i.nodeid.removeprefix("tests/lab/") for i in items]


def test_the_modules_sharing_the_cluster_run_one_after_the_other_whole() -> None:
    items = [
        item("a", "t1"),
        item("seed", "t1", shared=True),
        item("seed", "t2", shared=True),
        item("b", "t1"),
        item("c", "t1"),
        item("install", "t0"),  # a test of a sharing module that does not use it moves too
        item("install", "t1", shared=True),
        item("d", "t1"),
    ]
    assert ids(grouped(items)) == [
        "a.py::t1",
        "seed.py::t1",
        "seed.py::t2",
        "install.py::t0",
        "install.py::t1",
        "b.py::t1",
        "c.py::t1",
        "d.py::t1",
    ]


def test_one_sharing_module_or_none_leaves_the_order_alone() -> None:
    alone = [item("a", "t1"), item("seed", "t1", shared=True), item("b", "t1")]
    assert grouped(alone) == alone
    none = [item("a", "t1"), item("b", "t1")]
    assert grouped(none) == none
