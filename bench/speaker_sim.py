"""The speaker simulation's goals: 100,000 random schedules, zero invariant violations, and the
rate in schedules per second (goal: at least 1,000 per second), and per CPU-second (the
machine may be shared).

Run: .venv/bin/python bench/speaker_sim.py [--schedules N] [--first SEED] [--jobs N] [--json]
     [--compiled] [--jitter LO HI]
Each schedule (pikube.lb.l2.sim) is a cold start, one to three chaotic segments (partitions of
every shape, flapping, loss, delay, crashes, restarts, links down and up) and a heal, run over
the real speaker core with a virtual clock. Prints the count, the rate, and every violation
with the schedule that produced it (its seed reproduces it); progress goes to stderr. Never
fails on time. `--compiled` runs the same modules compiled with mypyc (built once into a cache
directory, about 30 s: `pikube.lb.l2.compiled`, docs/decisions/0107).
`--jitter` models speakers whose ticks come after interval x uniform(LO, HI)
instead of the speaker's own range (docs/decisions/0109).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time

from pikube.lb.l2 import compiled, sim
from pikube.lb.l2.core import TICK_JITTER


def _chunk(work: tuple[int, int, float, float]) -> tuple[int, float, list[str]]:
    first, end, low, high = work
    cpu = time.process_time()
    count, found = sim.run_many(range(first, end), jitter=(low, high))
    return count, time.process_time() - cpu, [str(v) for v in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--first", type=int, default=0, help="the first schedule's seed")
    parser.add_argument("--jobs", type=int, default=1, help="processes (the rate is their sum)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--compiled", action="store_true", help="run the mypyc-compiled modules")
    parser.add_argument(
        "--jitter",
        nargs=2,
        type=float,
        default=TICK_JITTER,
        metavar=("LO", "HI"),
        help="a tick's gap, in intervals (default: the speaker's, %(default)s)",
    )
    args = parser.parse_args()
    if args.compiled and not compiled.is_compiled(sim):
        # Built (or found) in the cache, then this script again with that tree first on the path.
        try:
            tree = compiled.build()
        except compiled.BuildError as exc:
            sys.exit(f"--compiled: {exc}")
        if str(tree) in os.environ.get("PYTHONPATH", ""):
            sys.exit(f"{tree} is first on PYTHONPATH, yet the simulation is not compiled")
        path = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH")) if p)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONPATH": path})
    step = 250
    chunks = [
        (start, min(start + step, args.first + args.schedules), *args.jitter)
        for start in range(args.first, args.first + args.schedules, step)
    ]
    started = time.perf_counter()
    count, cpu_s, violations = 0, 0.0, []
    with multiprocessing.Pool(args.jobs) as pool:
        for done, cpu, found in pool.imap(_chunk, chunks):
            count += done
            cpu_s += cpu
            violations += found
            rate = count / (time.perf_counter() - started)
            print(f"{count} schedules, {len(violations)} violations, {rate:.0f}/s", file=sys.stderr)
    elapsed = time.perf_counter() - started
    result = {
        "schedules": count,
        "seeds": [args.first, args.first + args.schedules - 1],
        "jobs": args.jobs,
        "compiled": compiled.is_compiled(sim),
        "jitter": list(args.jitter),
        "seconds": round(elapsed, 2),
        "schedules_per_s": round(count / elapsed, 1),
        "schedules_per_s_per_job": round(count / elapsed / args.jobs, 1),
        "cpu_s": round(cpu_s, 2),
        "schedules_per_cpu_s": round(count / cpu_s, 1),
        "violations": len(violations),
        "first_violations": violations[:20],
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print(
        f"{count} schedules in {elapsed:.1f} s with {args.jobs} process(es): "
        f"{count / elapsed:.0f} schedules/s ({count / elapsed / args.jobs:.0f} per process); "
        f"{count / cpu_s:.0f} per CPU-second (the machine may be shared); "
        f"ticks every {args.jitter[0]:g}-{args.jitter[1]:g} interval"
    )
    print(f"violations: {len(violations)}")
    for line in violations[:20]:
        print(f"  {line}")


if __name__ == "__main__":
    main()
