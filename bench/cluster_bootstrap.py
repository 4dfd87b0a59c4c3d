"""Four fresh lab Pis to nginx answering HTTP 200 with one `pikube cluster apply`, and the
second apply (nothing to do).

Run as root: .venv/bin/python bench/cluster_bootstrap.py [--runs N] [--json PATH]
Boots a lab's Pis as fresh Kubernetes nodes (builder.up_for_builder: not timed), then times,
as a user runs it from the lab's client host:
  - the first apply: host preparation (packages, kernel, containerd, reboot), kubeadm init,
    flannel, three joins, nginx, the HTTP check; once, with each stage's share from the log,
  - the second apply (zero changes): N runs, median and spread,
  - as a peer in the same run, the same second apply with `cluster.bootstrap: false` (host
    preparation only: what apply did before the cluster stages), N runs: the ratio is what the
    cluster stages' read-only checks add on this machine at this load.
The other peer is k0sctl's published figure for its own two-node cluster (2 min 2 s, from its
README's example run), quoted, not measured here; the ratio is ours over it. The machine is
shared: the load average before and after is printed with the figures. Never fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pikube.lab.kubernetes import builder
from pikube.lab.lab import Lab

K0SCTL_TWO_NODES_S = 122.0  # k0sctl's published apply of a two-node cluster


def _apply(lab: Lab, spec: Path, log: Path) -> tuple[float, dict[str, object]]:
    argv = [sys.executable, "-m", "pikube", "cluster", "apply", "-f", str(spec), "--yes"]
    argv += ["--log", str(log), "-o", "json"]
    started = time.monotonic()
    result = lab.run("client", argv, timeout_s=1800.0)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"apply failed:\n{result.stdout}\n{result.stderr[-3000:]}")
    report: dict[str, object] = json.loads(result.stdout)
    return elapsed, report


def _stages(log: Path) -> dict[str, float]:
    """Seconds per change/step id, summed over nodes' wall time (first start to last end)."""
    spans: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        end = _seconds(entry["time"])
        start = end - float(entry["duration_s"])
        span = spans.setdefault(entry["change"], [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return {k: round(v[1] - v[0], 1) for k, v in spans.items()}


def _seconds(stamp: str) -> float:
    from datetime import datetime  # noqa: PLC0415

    return datetime.fromisoformat(stamp).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="second applies to time")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    lab = Lab(f"i14boot{os.getpid() % 10000}")
    load_before = os.getloadavg()
    try:
        lab.up()
        spec = builder.up_for_builder(lab, say=lambda _line: None)
        logs = Path(f"/tmp/pikube-bench-{lab.name}")
        logs.mkdir(exist_ok=True)
        first_s, report = _apply(lab, spec, logs / "first.jsonl")
        cluster = report.get("cluster")
        assert isinstance(cluster, dict)
        seconds = []
        changes = []
        for i in range(args.runs):
            elapsed, again = _apply(lab, spec, logs / f"again-{i}.jsonl")
            seconds.append(elapsed)
            changes.append(again["changes_applied"])
        host_only = spec.with_name("hosts-only.yaml")
        host_only.write_text(
            spec.read_text().replace("  bootstrap: true\n", "  bootstrap: false\n")
        )
        peer = [_apply(lab, host_only, logs / f"hosts-{i}.jsonl")[0] for i in range(args.runs)]
        figures = {
            "first_apply_s": round(first_s, 1),
            "first_apply_goal_s": 300,
            "url": cluster.get("url"),
            "http_status": cluster.get("http_status"),
            "changes_first": report["changes_applied"],
            "stages_s": _stages(logs / "first.jsonl"),
            "second_apply_median_s": round(statistics.median(seconds), 2),
            "second_apply_runs_s": [round(s, 2) for s in seconds],
            "second_apply_changes": changes,
            "second_apply_goal_s": 5,
            "peer_hosts_only_second_apply_median_s": round(statistics.median(peer), 2),
            "ratio_second_apply_to_hosts_only": round(
                statistics.median(seconds) / statistics.median(peer), 2
            ),
            "peer_k0sctl_two_nodes_published_s": K0SCTL_TWO_NODES_S,
            "ratio_first_apply_to_k0sctl": round(first_s / K0SCTL_TWO_NODES_S, 2),
            "load_before": [round(x, 1) for x in load_before],
            "load_after": [round(x, 1) for x in os.getloadavg()],
        }
    finally:
        subprocess.run(
            [sys.executable, "-m", "pikube", "lab", "down", "-n", lab.name],
            capture_output=True,
            check=False,
        )
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
