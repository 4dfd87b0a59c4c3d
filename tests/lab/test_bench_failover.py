"""`pikube bench failover` from the command line: the JSON shape, the table, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pikube.lab.network import netns
from tests.conftest import new_lab_name
from tests.helpers import run_pikube

pytestmark = pytest.mark.lab


def test_one_keepalived_run_per_scenario_writes_the_agreed_json(tmp_path: Path) -> None:
    name = new_lab_name()
    path = tmp_path / "failover.json"
    result = run_pikube(
        "bench",
        "failover",
        "--impl",
        "keepalived-100ms",
        "--runs",
        "1",
        "--json",
        str(path),
        "--name",
        name,
        timeout_s=180,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(path.read_text())
    assert set(data) == {"runs", "results"}
    assert data["runs"] == 1
    assert [(r["impl"], r["scenario"]) for r in data["results"]] == [
        ("keepalived-100ms", "crash"),
        ("keepalived-100ms", "graceful"),
        ("keepalived-100ms", "link-down"),
    ]
    for entry in data["results"]:
        assert set(entry) == {"impl", "scenario", "outages_ms", "p50_ms", "max_ms", "failed_probes"}
        (outage,) = entry["outages_ms"]
        assert isinstance(outage, float)
        assert outage > 0
        assert entry["p50_ms"] == entry["max_ms"] == outage
        (failed,) = entry["failed_probes"]
        assert isinstance(failed, int)
    crash = data["results"][0]
    assert crash["failed_probes"][0] > 0  # eth0 went down: probes were lost
    assert "keepalived-100ms" in result.stdout
    assert "p50 ms" in result.stdout
    assert "run 1: outage" in result.stderr  # progress, one line per run
    assert not any(ns.startswith(f"pk-{name}-") for ns in netns.list_namespaces())


@pytest.mark.parametrize(
    ("impl", "message"),
    [("keepalived-2s", "unknown implementation 'keepalived-2s'")],
)
def test_an_unknown_implementation_is_one_clear_line(impl: str, message: str) -> None:
    name = new_lab_name()
    result = run_pikube("bench", "failover", "--impl", impl, "--runs", "1", "--name", name)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pikube: error: ")
    assert message in lines[0]
    assert not any(ns.startswith(f"pk-{name}-") for ns in netns.list_namespaces())
