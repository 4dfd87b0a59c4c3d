"""What the lab's real Kubernetes costs: time to four Ready nodes, memory, idle CPU, builds, disk.

Run as root: .venv/bin/python bench/kubernetes_lab.py [--runs N] [--idle-s S] [--json PATH]

Each run brings up a fresh lab with `pikube lab up --kubernetes` (stage times from its output),
then measures, per lab Pi, the memory its cgroup holds (rss + mapped files of the v1 memory
controller) and its CPU over an idle interval (cpuacct), and takes the lab down. Before the
runs it times `pikube lab build` with every component cached and reads each component's cold
build time from its cache manifest; after them it sizes pikube's cache. Never fails on time.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pikube.lab.hosts import rootfs
from pikube.lab.hosts.pihost import cgroup_name

HOSTS = ("master", "node01", "node02", "node03")
V1 = Path("/sys/fs/cgroup")


def pikube(*args: str, timeout_s: float = 3600.0) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pikube", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"pikube {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def stage_seconds(output: str) -> dict[str, float]:
    """`<stage>: <seconds> s` lines of `pikube lab up --kubernetes`."""
    found = {}
    for line in output.splitlines():
        match = re.fullmatch(r"(.+): ([0-9.]+) s", line.strip())
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def memory_mb(lab: str, host: str) -> float:
    stat = (V1 / "memory" / cgroup_name(lab, host) / "memory.stat").read_text()
    values = dict(line.split() for line in stat.splitlines())
    return (int(values["total_rss"]) + int(values["total_mapped_file"])) / 1e6


def cpu_ns(lab: str, host: str) -> int:
    return int((V1 / "cpuacct" / cgroup_name(lab, host) / "cpuacct.usage").read_text())


def du_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    started = time.monotonic()
    build = json.loads(pikube("lab", "build", "-o", "json"))
    cached_build_s = time.monotonic() - started
    cold = {entry["component"]: entry["build_s"] for entry in build["components"]}

    runs: list[dict[str, object]] = []
    ups: list[float] = []
    memory_totals: list[float] = []
    cpu_totals: list[float] = []
    for run in range(args.runs):
        name = f"kbench{run}"
        began = time.monotonic()
        output = pikube("lab", "up", "--kubernetes", "--name", name)
        up_s = time.monotonic() - began
        try:
            time.sleep(5.0)  # let the last pods settle before the idle interval
            before = {h: cpu_ns(name, h) for h in HOSTS}
            time.sleep(args.idle_s)
            after = {h: cpu_ns(name, h) for h in HOSTS}
            memory = {h: round(memory_mb(name, h), 1) for h in HOSTS}
            cpu = {h: round(100 * (after[h] - before[h]) / 1e9 / args.idle_s, 2) for h in HOSTS}
            ups.append(up_s)
            memory_totals.append(sum(memory.values()))
            cpu_totals.append(sum(cpu.values()))
            runs.append(
                {
                    "up_to_ready_s": round(up_s, 1),
                    "stages_s": stage_seconds(output),
                    "memory_mb": memory,
                    "idle_cpu_pct": cpu,
                }
            )
        finally:
            pikube("lab", "down", "--name", name)
        print(json.dumps(runs[-1]), flush=True)

    cache = rootfs.cache_dir()
    result = {
        "runs": args.runs,
        "up_to_ready_s": {"p50": median(ups), "max": max(ups, default=None)},
        "cluster_memory_mb_p50": median(memory_totals),
        "cluster_idle_cpu_pct_p50": median(cpu_totals),
        "cached_build_s": round(cached_build_s, 1),
        "cold_build_s": cold,
        "disk_mb": {
            "built binaries": du_mb(cache / "gobuild"),
            "go module cache": du_mb(cache / "go" / "mod"),
            "go build cache": du_mb(cache / "go" / "build"),
            "images": du_mb(cache / "images"),
            "registry": du_mb(cache / "registry"),
            "apt": du_mb(cache / "apt"),
        },
        "per_run": runs,
    }
    print(json.dumps(result, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
