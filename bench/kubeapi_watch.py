"""Watch fan-out of the Kubernetes API stand-in: W watch clients, R writes/s, every event counted.

Run: .venv/bin/python bench/kubeapi_watch.py [--watchers 200] [--rate 500] [--seconds 10]
     [--json PATH]

The server runs as its own process (as in the lab), on 127.0.0.1 with TLS and client
certificates. The watchers run in a second process (raw TLS streams; each checks that the
resourceVersions it receives are exactly the written ones, in order); this process writes
ConfigMap updates at the target rate over 8 keep-alive connections. Phase 1 writes with no
watcher (the peer), phase 2 with W watchers. Prints: writes/s achieved, write latency p50/p99
in both phases and their ratio, events expected vs delivered, events missing or out of order,
streams the server closed (resumed from the last resourceVersion), delivery lag p50/p99 of the
last watcher, and the server's CPU use. Never fails on time; exits 1 only if events were lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.unit.kubeapi.support import PkiFiles, client_context, write_pki

NAMESPACE_PATH = "/api/v1/namespaces/default/configmaps"
RV = re.compile(rb'"resourceVersion":"(\d+)"')
STAMP = re.compile(rb'"t":"(\d+)"')


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- watchers (child process) ----------------------------------------------------------------


class WatchStats:
    def __init__(self) -> None:
        self.count = 0
        self.last_rv = 0
        self.disorder = 0
        self.resumes = 0
        self.lags_ms: list[float] = []


async def watch_one(
    port: int,
    *,
    context: ssl.SSLContext,
    start_rv: int,
    stop_rv: list[int],
    stats: WatchStats,
    measure_lag: bool,
) -> None:
    stats.last_rv = start_rv
    while not (stop_rv[0] and stats.last_rv >= stop_rv[0]):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1", limit=1 << 22
        )
        writer.write(
            f"GET {NAMESPACE_PATH}?watch=true&resourceVersion={stats.last_rv} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        pending = b""
        while True:
            try:
                data = await asyncio.wait_for(reader.read(1 << 20), 0.5)
            except TimeoutError:
                if stop_rv[0] and stats.last_rv >= stop_rv[0]:
                    break
                continue
            if not data:
                break
            pending += data
            # Chunk-size lines are hex digits: they never match the patterns below.
            cut = pending.rfind(b"\n")
            if cut < 0:
                continue
            block, pending = pending[: cut + 1], pending[cut + 1 :]
            versions = [int(v) for v in RV.findall(block)]
            for rv in versions:
                if rv != stats.last_rv + 1:
                    stats.disorder += 1
                stats.last_rv = rv
            stats.count += len(versions)
            if measure_lag:
                now_ns = time.time_ns()
                stats.lags_ms.extend((now_ns - int(t)) / 1e6 for t in STAMP.findall(block))
            if stop_rv[0] and stats.last_rv >= stop_rv[0]:
                break
        writer.close()
        if not (stop_rv[0] and stats.last_rv >= stop_rv[0]):
            stats.resumes += 1


def watchers_main(
    port: int, pki_dir: str, count: int, start_rv: int, pipe: multiprocessing.connection.Connection
) -> None:
    async def run() -> dict[str, Any]:
        context = client_context(PkiFiles(Path(pki_dir)))
        stop_rv = [0]
        stats = [WatchStats() for _ in range(count)]
        tasks = [
            asyncio.create_task(
                watch_one(
                    port,
                    context=context,
                    start_rv=start_rv,
                    stop_rv=stop_rv,
                    stats=s,
                    measure_lag=i == count - 1,
                )
            )
            for i, s in enumerate(stats)
        ]
        await asyncio.sleep(0)
        pipe.send("connecting")
        loop = asyncio.get_running_loop()
        stop_rv[0] = await loop.run_in_executor(None, pipe.recv)
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        return {
            "counts": [s.count for s in stats],
            "disorder": sum(s.disorder for s in stats),
            "resumes": sum(s.resumes for s in stats),
            "lags_ms": stats[-1].lags_ms,
            "last_rvs": [s.last_rv for s in stats],
        }

    pipe.send(asyncio.run(run()))


# -- writer (this process) -------------------------------------------------------------------


async def write_phase(port: int, files: PkiFiles, rate: float, seconds: float) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(ssl=client_context(files), limit=8)
    latencies: list[float] = []
    versions: list[int] = []
    total = int(rate * seconds)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()

        async def one(i: int) -> None:
            due = started + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            body = {"data": {"i": str(i), "t": str(time.time_ns())}}
            sent = time.monotonic()
            async with session.patch(
                f"https://127.0.0.1:{port}{NAMESPACE_PATH}/cm{i % 20}",
                data=json.dumps(body),
                headers={"Content-Type": "application/merge-patch+json"},
            ) as response:
                answer = await response.json()
                assert response.status == 200, answer
            latencies.append((time.monotonic() - sent) * 1000)
            versions.append(int(answer["metadata"]["resourceVersion"]))

        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed = time.monotonic() - started
    return {
        "writes": total,
        "writes_per_s": total / elapsed,
        "elapsed_s": elapsed,
        "latency_ms_p50": statistics.median(latencies),
        "latency_ms_p99": pct(latencies, 0.99),
        "max_rv": max(versions),
    }


async def setup_objects(port: int, files: PkiFiles) -> int:
    connector = aiohttp.TCPConnector(ssl=client_context(files))
    async with aiohttp.ClientSession(connector=connector) as session:
        rv = 0
        for i in range(20):
            async with session.post(
                f"https://127.0.0.1:{port}{NAMESPACE_PATH}",
                json={"metadata": {"name": f"cm{i}"}, "data": {"i": "-1"}},
            ) as response:
                rv = int((await response.json())["metadata"]["resourceVersion"])
        return rv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = write_pki(Path(tmp) / "pki")
        port_file = Path(tmp) / "port"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pikube.lab.kubeapi",
                "--listen",
                "127.0.0.1:0",
                "--pki-dir",
                str(files.directory),
                "--port-file",
                str(port_file),
                "--watch-window",
                "100000",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.01)
            port = int(port_file.read_text())
            start_rv = asyncio.run(setup_objects(port, files))
            peer = asyncio.run(write_phase(port, files, args.rate, min(args.seconds, 5.0)))
            start_rv = peer["max_rv"]
            parent, child = multiprocessing.Pipe()
            process = multiprocessing.Process(
                target=watchers_main,
                args=(port, str(files.directory), args.watchers, start_rv, child),
            )
            process.start()
            assert parent.recv() == "connecting"
            time.sleep(1.0)  # let the streams open (the watch replays from start_rv anyway)
            cpu_before = cpu_s(server.pid)
            loaded = asyncio.run(write_phase(port, files, args.rate, args.seconds))
            wrote_until = time.monotonic()
            parent.send(loaded["max_rv"])
            watched = parent.recv()
            drained_s = time.monotonic() - wrote_until
            cpu_used = cpu_s(server.pid) - cpu_before
            watchers_cpu = cpu_s(process.pid) if process.pid else 0.0
            process.join(30)
        finally:
            server.terminate()
            server.wait(10)
    expected = loaded["writes"]
    delivered = sum(watched["counts"])
    missing = sum(max(expected - c, 0) for c in watched["counts"])
    result = {
        "watchers": args.watchers,
        "target_writes_per_s": args.rate,
        "peer_no_watchers": peer,
        "with_watchers": loaded,
        "write_p50_ratio": loaded["latency_ms_p50"] / peer["latency_ms_p50"],
        "events_expected": expected * args.watchers,
        "events_delivered": delivered,
        "events_missing": missing,
        "events_out_of_order": watched["disorder"],
        "streams_closed_and_resumed": watched["resumes"],
        "delivery_lag_ms_p50": statistics.median(watched["lags_ms"])
        if watched["lags_ms"]
        else None,
        "delivery_lag_ms_p99": pct(watched["lags_ms"], 0.99),
        "drain_after_last_write_s": drained_s,
        "server_cpu_s_per_s": cpu_used / (loaded["elapsed_s"] + drained_s),
        "watchers_process_cpu_s": watchers_cpu,
        "events_per_s_delivered": delivered / (loaded["elapsed_s"] + drained_s),
    }
    p50, p99 = loaded["latency_ms_p50"], loaded["latency_ms_p99"]
    lines = [
        f"watchers {args.watchers}, target {args.rate:g} writes/s for {args.seconds:g} s",
        f"  writes/s achieved          {loaded['writes_per_s']:.0f} "
        f"(peer without watchers: {peer['writes_per_s']:.0f})",
        f"  write latency p50 / p99    {p50:.2f} / {p99:.2f} ms (peer: "
        f"{peer['latency_ms_p50']:.2f} / {peer['latency_ms_p99']:.2f} ms, "
        f"p50 ratio {result['write_p50_ratio']:.2f})",
        f"  events expected/delivered  {result['events_expected']} / {delivered}",
        f"  missing / out of order     {missing} / {watched['disorder']}",
        f"  streams closed + resumed   {watched['resumes']}",
        f"  delivery lag p50 / p99     {result['delivery_lag_ms_p50']:.1f} / "
        f"{result['delivery_lag_ms_p99']:.1f} ms",
        f"  drain after last write     {drained_s:.2f} s",
        f"  events/s delivered         {result['events_per_s_delivered']:.0f}",
        f"  server CPU                 {result['server_cpu_s_per_s']:.2f} s/s",
        f"  watchers' process CPU      {watchers_cpu:.1f} s in all",
    ]
    print("\n".join(lines))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    if missing or watched["disorder"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
