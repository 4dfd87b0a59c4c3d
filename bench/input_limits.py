"""What a huge manifest costs `pikube lb allocate`: refused at once, against parsing it.

Run: .venv/bin/python bench/input_limits.py [--mib 50] [--runs 3] [--json PATH]
Writes a multi-document file of small LoadBalancer Services of the given size, then measures,
as a user runs it, `pikube lb allocate -f FILE` (wall time and peak memory of the process),
and, as the peer in the same run, the largest input the limit lets through (8 MiB less a
document). Also reads the big file the way pikube read every input before the limit (the
whole YAML parsed, in this process, timed once with --parse-peer: minutes on a busy machine).
Prints medians and the load average; never fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pikube.inputs import MANIFESTS_LIMIT_BYTES
from pikube.lb.config import documents_from_text

DOC = (
    "apiVersion: v1\nkind: Service\nmetadata: {{name: s{n}, namespace: a}}\n"
    "spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n---\n"
)


def _write(path: Path, size_bytes: int) -> int:
    parts, total, n = [], 0, 0
    while total + len(DOC.format(n=n)) <= size_bytes:
        doc = DOC.format(n=n)
        parts.append(doc)
        total += len(doc)
        n += 1
    path.write_text("".join(parts))
    return n


# The command, reporting its own peak memory as it exits.
_MEASURED = (
    "import atexit, resource, sys\n"
    "atexit.register(lambda: sys.stderr.write("
    "f'\\nPEAK_RSS_KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n'))\n"
    "from pikube.cli import main\n"
    "main(sys.argv[1:])\n"
)


def _run(path: Path) -> tuple[float, int, int]:
    """(seconds, peak RSS in KiB, exit status) of one `pikube lb allocate`."""
    started = time.monotonic()
    argv = [sys.executable, "-c", _MEASURED, "lb", "allocate", "-f", str(path), "-o", "json"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    peak = int(result.stderr.rsplit("PEAK_RSS_KIB ", 1)[1].split()[0])
    return elapsed, peak, result.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parse-peer", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write", nargs=2, metavar=("PATH", "BYTES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:  # in a child: this process must stay small (a child's peak memory
        # counts the pages it had before exec, which it shares with this one)
        print(_write(Path(args.write[0]), int(args.write[1])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        big, allowed = Path(tmp) / "big.yaml", Path(tmp) / "allowed.yaml"

        def write(path: Path, size: int) -> int:
            argv = [sys.executable, __file__, "--write", str(path), str(size)]
            return int(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)

        write(big, args.mib * 1024 * 1024)
        services = write(allowed, MANIFESTS_LIMIT_BYTES - 1)
        figures: dict[str, object] = {"load_before": os.getloadavg()[0]}
        for name, path in (("refused", big), ("largest_allowed", allowed)):
            runs = [_run(path) for _ in range(args.runs)]
            figures[name] = {
                "bytes": path.stat().st_size,
                "median_s": round(statistics.median(r[0] for r in runs), 3),
                "peak_rss_kib": max(r[1] for r in runs),
                "exit": runs[-1][2],
            }
        figures["largest_allowed_services"] = services
        if args.parse_peer:
            started = time.monotonic()
            documents_from_text(big.read_text(), str(big))
            figures["parse_big_in_process_s"] = round(time.monotonic() - started, 3)
        figures["load_after"] = os.getloadavg()[0]
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
