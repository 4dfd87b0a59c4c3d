"""`pikube bench cluster`: four fresh lab Pis to nginx answering HTTP 200 with one
`pikube cluster apply`, and the second apply (nothing to do).

The lab's Pis are booted as fresh Kubernetes nodes (builder.up_for_builder: not timed); then,
as a user runs it from the lab's client host:
  - the first apply: host preparation (packages, kernel, containerd, reboot), kubeadm init,
    flannel, three joins, the load balancer, nginx, the HTTP check; once, with each stage's
    share from its command log (goal: under 5 minutes);
  - the second apply (zero changes): RUNS runs, median and spread (goal: under 5 s), with
    where its time went (start-up until the first command, the reads, the rest);
  - as a peer in the same run, the same second apply with `cluster.bootstrap: false` (host
    preparation only), RUNS runs: the ratio is what the cluster stages add.
The other peer is k0sctl's published figure for its own two-node cluster (2 min 2 s, from its
README's example run), quoted, not measured here. The machine is shared: the load average
before and after is part of the figures. Never fails on time.

Python runs as a user's would: writing its bytecode cache (an installed wheel has it compiled),
even where the environment says otherwise.

Pure: `stage_spans`, `second_apply_parts`, `summarise`. The rest drives a lab.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pikube.errors import PikubeError
from pikube.lab.lab import Lab

K0SCTL_TWO_NODES_S = 122.0  # k0sctl's published apply of a two-node cluster
FIRST_GOAL_S, SECOND_GOAL_S = 300.0, 5.0


@dataclass(frozen=True)
class ApplyRun:
    wall_s: float
    started: float  # epoch seconds, when the command was started
    report: dict[str, Any]
    log: list[dict[str, Any]]


def _entries(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _end(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["time"]).timestamp()


def stage_spans(entries: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Seconds per change or step id, over all nodes (first start to last end)."""
    spans: dict[str, list[float]] = {}
    for entry in entries:
        end = _end(entry)
        start = end - float(entry["duration_s"])
        span = spans.setdefault(entry["change"], [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return {k: round(v[1] - v[0], 2) for k, v in spans.items()}


def second_apply_parts(run: ApplyRun) -> dict[str, float]:
    """Where a second apply's wall time went: start-up (Python, the spec, SSH connections)
    until its first command, the reads on the nodes (first start to last end), the rest (the
    HTTP check, closing, exit)."""
    if not run.log:
        return {"wall_s": round(run.wall_s, 2)}
    starts = [_end(e) - float(e["duration_s"]) for e in run.log]
    ends = [_end(e) for e in run.log]
    startup = min(starts) - run.started
    reads = max(ends) - min(starts)
    return {
        "wall_s": round(run.wall_s, 2),
        "startup_s": round(startup, 2),
        "reads_s": round(reads, 2),
        "rest_s": round(run.wall_s - startup - reads, 2),
        "commands": len(run.log),
    }


def apply(lab: Lab, spec: Path, log: Path) -> ApplyRun:
    """`pikube cluster apply -o json` from the lab's client, timed."""
    log.unlink(missing_ok=True)
    argv = ["env", "-u", "PYTHONDONTWRITEBYTECODE", sys.executable, "-m", "pikube"]
    argv += ["cluster", "apply", "-f", str(spec), "--yes", "--log", str(log), "-o", "json"]
    started = time.time()
    clock = time.monotonic()
    result = lab.run("client", argv, timeout_s=1800.0)
    wall = time.monotonic() - clock
    if result.returncode != 0:
        raise PikubeError(f"apply failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return ApplyRun(wall, started, json.loads(result.stdout), _entries(log))


def summarise(
    first: ApplyRun | None,
    second: Sequence[ApplyRun],
    hosts_only: Sequence[ApplyRun],
    load_before: Sequence[float],
    load_after: Sequence[float],
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if first is not None:
        cluster = first.report.get("cluster") or {}
        figures |= {
            "first_apply_s": round(first.wall_s, 1),
            "first_apply_goal_s": FIRST_GOAL_S,
            "url": cluster.get("url"),
            "http_status": cluster.get("http_status"),
            "changes_first": first.report.get("changes_applied"),
            "stages_s": stage_spans([e for e in first.log if "read_only" not in e]),
            "peer_k0sctl_two_nodes_published_s": K0SCTL_TWO_NODES_S,
            "ratio_first_apply_to_k0sctl": round(first.wall_s / K0SCTL_TWO_NODES_S, 2),
        }
    seconds = [r.wall_s for r in second]
    if seconds:
        parts = [second_apply_parts(r) for r in second]
        figures |= {
            "second_apply_median_s": round(statistics.median(seconds), 2),
            "second_apply_runs_s": [round(s, 2) for s in seconds],
            "second_apply_goal_s": SECOND_GOAL_S,
            "second_apply_changes": [r.report.get("changes_applied") for r in second],
            "second_apply_http_status": [
                (r.report.get("cluster") or {}).get("http_status") for r in second
            ],
            "second_apply_parts_median": {
                key: round(statistics.median(p[key] for p in parts), 2)
                for key in parts[0]
                if all(key in p for p in parts)
            },
        }
    if hosts_only:
        peer = statistics.median(r.wall_s for r in hosts_only)
        figures["peer_hosts_only_second_apply_median_s"] = round(peer, 2)
        if seconds:
            figures["ratio_second_apply_to_hosts_only"] = round(
                statistics.median(seconds) / peer, 2
            )
    figures["load_before"] = [round(x, 1) for x in load_before]
    figures["load_after"] = [round(x, 1) for x in load_after]
    return figures


def run_bench(
    lab: Lab,
    runs: int,
    say: Callable[[str], None],
    fresh: bool = True,
) -> dict[str, Any]:
    """Build (when `fresh`) and time; `fresh=False` times only the second applies of a lab
    whose cluster an earlier `--keep` run built."""
    from pikube.lab import state  # noqa: PLC0415
    from pikube.lab.kubernetes import builder  # noqa: PLC0415

    load_before = os.getloadavg()
    logs = Path(f"/tmp/pikube-bench-{lab.name}")
    logs.mkdir(exist_ok=True)
    first = None
    if fresh:
        lab.up()
        say("booting the lab's Pis as fresh Kubernetes nodes (not timed)")
        spec = builder.up_for_builder(lab, say=lambda _line: None)
        say("first apply: four fresh Pis to HTTP 200")
        first = apply(lab, spec, logs / "first.jsonl")
        say(f"first apply: {first.wall_s:.1f} s")
    else:
        lab.require_up()
        spec = state.lab_dir(lab.name) / "kubernetes" / "cluster.yaml"
    second = []
    for i in range(runs):
        second.append(apply(lab, spec, logs / f"again-{i}.jsonl"))
        say(f"second apply {i + 1}/{runs}: {second[-1].wall_s:.2f} s")
    host_only = spec.with_name("hosts-only.yaml")
    host_only.write_text(spec.read_text().replace("  bootstrap: true\n", "  bootstrap: false\n"))
    peer = []
    for i in range(runs):
        peer.append(apply(lab, host_only, logs / f"hosts-{i}.jsonl"))
        say(f"hosts-only apply {i + 1}/{runs}: {peer[-1].wall_s:.2f} s")
    return summarise(first, second, peer, load_before, os.getloadavg())
