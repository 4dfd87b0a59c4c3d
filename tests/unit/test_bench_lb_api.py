"""The lb-api bench's summary (pure): nearest-rank percentiles and ratios to the API floor."""

from __future__ import annotations

from pikube.bench.lb_api import ApiRun, percentile, summarise


def test_nearest_rank_percentiles() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 0.99) == 99.0
    assert percentile(samples, 0.5) == 50.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([1.0, 9.0], 0.99) == 9.0


def test_summary_has_each_figure_and_its_ratio_to_the_api_floor() -> None:
    runs = [ApiRun(1, 10.0, 30.0, 40.0), ApiRun(2, 10.0, 50.0, 60.0), ApiRun(3, 10.0, 40.0, 80.0)]
    summary = summarise(runs)
    assert summary["runs"] == 3
    assert summary["figures"]["ip_ms"] == {
        "samples": [30.0, 50.0, 40.0], "p50": 40.0, "p99": 50.0, "max": 50.0,
    }  # fmt: skip
    assert summary["ratio_p50_to_api"] == {"ip_ms": 4.0, "http_ms": 6.0}


def test_the_ip_floor_is_the_create_and_one_status_write_as_the_api_delivers_them() -> None:
    runs = [ApiRun(1, 10.0, 30.0, 40.0, write_ms=15.0), ApiRun(2, 12.0, 32.0, 41.0, write_ms=18.0)]
    summary = summarise(runs)
    assert summary["figures"]["ip_floor_ms"]["samples"] == [25.0, 30.0]
    assert summary["ratio_p50_ip_to_ip_floor"] == round(31.0 / 27.5, 2)
