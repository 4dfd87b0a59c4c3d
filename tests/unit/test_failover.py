"""The failover bench's pure parts: choosing implementations, the JSON shape, the table."""

from __future__ import annotations

import json

import pytest

from pikube.bench.failover import (
    IMPLEMENTATIONS,
    KeepalivedBaseline,
    PikubeKubeSpeakers,
    PikubeSpeakers,
    RunResult,
    Scenario,
    implementation,
    parse_impls,
    summarise,
    table_rows,
)
from pikube.errors import PikubeError


def _run(impl: str, scenario: Scenario, run: int, outage: float, failed: int) -> RunResult:
    return RunResult(impl, scenario, run, outage, failed, "node01", "node02")


def test_impl_lists_keep_their_order_and_drop_repeats() -> None:
    assert parse_impls("keepalived-100ms, keepalived-1s") == ("keepalived-100ms", "keepalived-1s")
    assert parse_impls("keepalived-1s,keepalived-1s,pikube") == ("keepalived-1s", "pikube")
    assert parse_impls(",".join(IMPLEMENTATIONS)) == IMPLEMENTATIONS


@pytest.mark.parametrize(("text", "message"), [("", "at least one"), ("vrrp", "unknown")])
def test_bad_impl_lists_are_explained(text: str, message: str) -> None:
    with pytest.raises(PikubeError, match=message):
        parse_impls(text)


def test_each_name_gets_its_adapter() -> None:
    fast = implementation("keepalived-100ms")
    slow = implementation("keepalived-1s")
    assert isinstance(fast, KeepalivedBaseline)
    assert fast.advert_int_s == 0.1
    assert isinstance(slow, KeepalivedBaseline)
    assert slow.advert_int_s == 1.0
    assert isinstance(implementation("pikube"), PikubeSpeakers)
    assert isinstance(implementation("pikube-kube"), PikubeKubeSpeakers)
    with pytest.raises(PikubeError, match="unknown implementation"):
        implementation("metallb")


def test_scenarios_say_what_they_break() -> None:
    assert Scenario.CRASH.kills_daemon
    assert Scenario.CRASH.downs_link
    assert Scenario.GRACEFUL.kills_daemon
    assert not Scenario.GRACEFUL.downs_link
    assert not Scenario.LINK_DOWN.kills_daemon
    assert Scenario.LINK_DOWN.downs_link


def test_the_summary_has_exactly_the_agreed_shape() -> None:
    results = [
        _run("keepalived-100ms", Scenario.CRASH, 1, 341.04, 33),
        _run("keepalived-100ms", Scenario.CRASH, 2, 320.0, 31),
        _run("keepalived-100ms", Scenario.CRASH, 3, 362.5, 35),
        _run("keepalived-100ms", Scenario.GRACEFUL, 1, 11.8, 0),
        _run("keepalived-1s", Scenario.LINK_DOWN, 1, 2900.0, 280),
    ]
    summary = summarise(results, runs=3)
    assert json.loads(json.dumps(summary)) == summary
    assert set(summary) == {"runs", "results"}
    assert summary["runs"] == 3
    first = summary["results"][0]
    assert set(first) == {"impl", "scenario", "outages_ms", "p50_ms", "max_ms", "failed_probes"}
    assert first == {
        "impl": "keepalived-100ms",
        "scenario": "crash",
        "outages_ms": [341.0, 320.0, 362.5],
        "p50_ms": 341.0,
        "max_ms": 362.5,
        "failed_probes": [33, 31, 35],
    }
    assert [(e["impl"], e["scenario"]) for e in summary["results"]] == [
        ("keepalived-100ms", "crash"),
        ("keepalived-100ms", "graceful"),
        ("keepalived-1s", "link-down"),
    ]
    rows = table_rows(summary)
    assert rows[0] == ("keepalived-100ms", "crash", "341", "362", "341 320 362", "33 31 35")
