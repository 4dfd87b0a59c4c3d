"""`pikube bench cluster`'s arithmetic: stage spans from a command log, where a second apply's
time went, and the summary with its peers (pure; no lab)."""

from __future__ import annotations

from typing import Any

from pikube.bench import cluster as bench


def _entry(change: str, end: str, duration: float, node: str = "master") -> dict[str, Any]:
    return {"time": f"2026-12-02T04:00:{end}+00:00", "change": change, "node": node,
            "duration_s": duration}  # fmt: skip


START = 1796184000.0  # 2026-12-02T04:00:00Z


def test_stage_spans_run_from_the_first_start_to_the_last_end() -> None:
    entries = [_entry("join", "10.000", 4.0, "node01"), _entry("join", "12.000", 3.0, "node02"),
               _entry("init", "05.000", 5.0)]  # fmt: skip
    assert bench.stage_spans(entries) == {"join": 6.0, "init": 5.0}


def test_a_second_apply_splits_into_start_up_reads_and_the_rest() -> None:
    log = [_entry("facts", "03.000", 1.0), _entry("api-facts", "03.500", 1.5)]
    run = bench.ApplyRun(5.0, START, {"changes_applied": 0}, log)
    assert bench.second_apply_parts(run) == {
        "wall_s": 5.0, "startup_s": 2.0, "reads_s": 1.5, "rest_s": 1.5, "commands": 2
    }  # fmt: skip


def test_the_summary_has_medians_ratios_and_the_load() -> None:
    report = {"changes_applied": 0, "cluster": {"http_status": 200, "url": "http://x/"}}
    second = [bench.ApplyRun(w, START, report, []) for w in (4.0, 6.0, 5.0)]
    peer = [bench.ApplyRun(w, START, report, []) for w in (2.0, 2.5)]
    first = bench.ApplyRun(244.0, START, {**report, "changes_applied": 75}, [])
    figures = bench.summarise(first, second, peer, [1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert figures["first_apply_s"] == 244.0
    assert figures["ratio_first_apply_to_k0sctl"] == 2.0
    assert figures["second_apply_median_s"] == 5.0
    assert figures["second_apply_http_status"] == [200, 200, 200]
    assert figures["ratio_second_apply_to_hosts_only"] == 2.22
    assert figures["load_before"] == [1.0, 2.0, 3.0]
    assert "first_apply_s" not in bench.summarise(None, second, [], [0.0], [0.0])
