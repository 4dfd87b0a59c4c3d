"""How long `pikube lab up` and `down` take for the 6-host lab (goal: up under 2 s).

Run as root: .venv/bin/python bench/lab_up.py [--runs N] [--json PATH]
Prints the median and maximum of each, and JSON when asked. Never fails on time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    name = "benchup"
    pikube = [sys.executable, "-m", "pikube", "lab"]
    ups, downs, in_process = [], [], []
    for _ in range(args.runs):
        started = time.monotonic()
        subprocess.run([*pikube, "up", "-n", name], check=True, capture_output=True)
        ups.append(time.monotonic() - started)
        started = time.monotonic()
        subprocess.run([*pikube, "down", "-n", name], check=True, capture_output=True)
        downs.append(time.monotonic() - started)
    from pikube.lab.lab import Lab  # noqa: PLC0415 (after the CLI runs, so it pays its own import)

    lab = Lab(name)
    for _ in range(args.runs):
        in_process.append(lab.up().elapsed_s)
        lab.down()
    result = {
        "runs": args.runs,
        "cli_up_s": {"p50": statistics.median(ups), "max": max(ups)},
        "cli_down_s": {"p50": statistics.median(downs), "max": max(downs)},
        "build_s": {"p50": statistics.median(in_process), "max": max(in_process)},
    }
    labels = {
        "cli_up_s": "lab up   (whole command, with interpreter start)",
        "cli_down_s": "lab down (whole command)",
        "build_s": "build only (namespaces, links, addresses)",
    }
    for key, label in labels.items():
        figures = result[key]
        assert isinstance(figures, dict)
        print(f"{label:<50} p50 {figures['p50']:.3f} s  max {figures['max']:.3f} s")
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
