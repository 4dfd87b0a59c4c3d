"""The client's view of a service: an HTTP prober, the analysis of its results, the ARP table.

Owns:
- the prober, a small process run in a lab host (`python -m pikube.lab.network.probe ...`): every
  `interval_ms` it starts a fresh TCP connect + `GET /` to the target, each bounded by
  `timeout_ms`, probes overlapping when one is slow, and it stops after `max_duration_s` or on
  SIGTERM/SIGINT. It records each probe's start and end (CLOCK_MONOTONIC, which every
  namespace of the machine shares, so a harness can relate them to its own instants), the
  outcome and which backend answered (nginx's `X-Pikube-Host` header), and writes them as JSON
  when it stops. While running it prints one line per change of state (`up T ok`,
  `down T timeout`: T on the monotonic clock, then the outcome that changed it), so a
  harness can wait for "the service failed" or "it recovered" without polling HTTP itself;
- the pure analysis of a run: failed probes, and the outage around a failure instant (the
  longest gap between successful responses, from the last success before the failure on);
- the client's neighbour table (the seed's `arp -a` moment): which MAC a service IP resolves
  to, read from outside the namespace through netlink, and which lab host owns that MAC.

The prober must start fast and stay light (it runs before every failover measurement), so this
module imports nothing heavy at module level; netlink (pyroute2) is imported only by the reader
of the neighbour table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import errno
import ipaddress
import itertools
import json
import math
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pikube.helpers import write_atomic
from pikube.lab.hosts.processes import LogMatches, ProcessRecord
from pikube.lab.network.topology import Host

if TYPE_CHECKING:
    from pikube.lab.lab import Lab

BACKEND_HEADER = b"x-pikube-host"
DEFAULT_INTERVAL_MS = 10
DEFAULT_TIMEOUT_MS = 50


class Outcome(enum.Enum):
    OK = "ok"  # HTTP 200 received in full
    HTTP_ERROR = "http-error"  # a response, but not 200
    BROKEN = "broken"  # the connection closed before a complete status line
    REFUSED = "refused"  # RST to the SYN (or ICMP port unreachable)
    RESET = "reset"  # RST after the connection was established
    UNREACHABLE = "unreachable"  # no route or neighbour (EHOSTUNREACH, ENETUNREACH)
    TIMEOUT = "timeout"  # nothing complete within the probe's timeout
    ERROR = "error"  # any other socket error


@dataclass(frozen=True)
class ProbeResult:
    start_s: float  # CLOCK_MONOTONIC when the probe began (before connect)
    end_s: float  # when it finished: full response, error, or timeout
    outcome: Outcome
    backend: str | None = None  # the host that served it, if the response said so

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 6),
            "end_s": round(self.end_s, 6),
            "outcome": self.outcome.value,
            "backend": self.backend,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProbeResult:
        backend = data.get("backend")
        return cls(
            start_s=float(data["start_s"]),
            end_s=float(data["end_s"]),
            outcome=Outcome(data["outcome"]),
            backend=None if backend is None else str(backend),
        )


@dataclass(frozen=True)
class ProbeRun:
    """Everything one prober process measured."""

    address: str
    port: int
    interval_ms: int
    timeout_ms: int
    probes: tuple[ProbeResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "interval_ms": self.interval_ms,
            "timeout_ms": self.timeout_ms,
            "probes": [p.to_json() for p in self.probes],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProbeRun:
        return cls(
            address=str(data["address"]),
            port=int(data["port"]),
            interval_ms=int(data["interval_ms"]),
            timeout_ms=int(data["timeout_ms"]),
            probes=tuple(ProbeResult.from_json(p) for p in data["probes"]),
        )


# -- pure: responses, analysis -------------------------------------------------------------

_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})")


def parse_response(data: bytes) -> tuple[int, str | None] | None:
    """(status, backend) from a raw HTTP/1.x response, or None if it has no status line."""
    head, _sep, _body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    match = _STATUS_LINE.match(lines[0])
    if match is None:
        return None
    backend = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == BACKEND_HEADER:
            backend = value.strip().decode("ascii", "replace") or None
    return int(match.group(1)), backend


def outcome_of_error(exc: BaseException) -> Outcome:
    """How a failed probe is classified, from the exception its socket raised."""
    if isinstance(exc, TimeoutError):
        return Outcome.TIMEOUT
    if isinstance(exc, ConnectionRefusedError):
        return Outcome.REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return Outcome.RESET
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return Outcome.UNREACHABLE
    return Outcome.ERROR


@dataclass(frozen=True)
class Outage:
    """The longest silence the client saw around a failure."""

    last_ok_before: ProbeResult  # the last success before the gap
    first_ok_after: ProbeResult  # the success that ended it

    @property
    def duration_ms(self) -> float:
        return (self.first_ok_after.end_s - self.last_ok_before.end_s) * 1000.0


def successes(probes: Iterable[ProbeResult]) -> list[ProbeResult]:
    """Successful probes in the order their responses arrived."""
    return sorted((p for p in probes if p.ok), key=lambda p: p.end_s)


def longest_gap(probes: Iterable[ProbeResult]) -> Outage | None:
    """The longest gap between consecutive successful responses (None with < 2 successes)."""
    oks = successes(probes)
    best: Outage | None = None
    for before, after in itertools.pairwise(oks):
        candidate = Outage(before, after)
        if best is None or candidate.duration_ms > best.duration_ms:
            best = candidate
    return best


def outage_around(probes: Sequence[ProbeResult], failure_s: float) -> Outage | None:
    """The outage caused by a failure at `failure_s`.

    The longest gap between successful responses among the last success received before the
    failure and every success after it. None if there was no success before the failure or none
    after it (then the service never recovered within the recording).
    """
    oks = successes(probes)
    before = [p for p in oks if p.end_s <= failure_s]
    after = [p for p in oks if p.end_s > failure_s]
    if not before or not after:
        return None
    return longest_gap([before[-1], *after])


def failed_probes(probes: Sequence[ProbeResult], failure_s: float) -> list[ProbeResult]:
    """Probes that failed because of the failure: those ending after the last success before it."""
    oks_before = [p.end_s for p in probes if p.ok and p.end_s <= failure_s]
    since = max(oks_before) if oks_before else float("-inf")
    return sorted((p for p in probes if not p.ok and p.end_s > since), key=lambda p: p.start_s)


@dataclass(frozen=True)
class Transition:
    """A change of state the prober printed: the service went down, or came (back) up."""

    up: bool
    at_s: float


_TRANSITION = re.compile(r"^(up|down) (\d+\.\d+)", re.MULTILINE)


def parse_transitions(log_text: str) -> list[Transition]:
    return [
        Transition(m.group(1) == "up", float(m.group(2))) for m in _TRANSITION.finditer(log_text)
    ]


def is_up(transitions: Sequence[Transition]) -> bool:
    """True if the prober's latest report is a success (up, or back up after a failure)."""
    return bool(transitions) and transitions[-1].up


def reported_since(transitions: Sequence[Transition], instant_s: float, *, up: bool) -> bool:
    """True if the prober reported going up (or down) at or after `instant_s`."""
    return any(t.up == up and t.at_s >= instant_s for t in transitions)


# -- the prober process -----------------------------------------------------------------------


@dataclass(frozen=True)
class ProberConfig:
    address: str
    port: int = 80
    interval_ms: int = DEFAULT_INTERVAL_MS
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    max_duration_s: float = 120.0


async def _http_get(address: str, port: int) -> tuple[int, str | None] | None:
    reader, writer = await asyncio.open_connection(address, port)
    try:
        host = f"[{address}]" if ":" in address else address
        writer.write(
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pikube-probe\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = await reader.read()  # nginx closes after the response (Connection: close)
    finally:
        writer.close()
    return parse_response(data)


async def probe_once(address: str, port: int, timeout_s: float) -> ProbeResult:
    """One probe: connect, GET /, read the whole response; never raises."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            parsed = await _http_get(address, port)
    except (OSError, TimeoutError) as exc:
        return ProbeResult(start, time.monotonic(), outcome_of_error(exc))
    end = time.monotonic()
    if parsed is None:
        return ProbeResult(start, end, Outcome.BROKEN)
    status, backend = parsed
    outcome = Outcome.OK if status == 200 else Outcome.HTTP_ERROR
    return ProbeResult(start, end, outcome, backend)


async def run_prober(
    config: ProberConfig,
    stop: asyncio.Event,
    observe: Callable[[ProbeResult], None] = lambda _result: None,
) -> ProbeRun:
    """Probe until `stop` is set or `max_duration_s` passes; `observe` sees each result."""
    loop = asyncio.get_running_loop()
    interval_s = config.interval_ms / 1000.0
    timeout_s = config.timeout_ms / 1000.0
    results: list[ProbeResult] = []
    in_flight: set[asyncio.Task[ProbeResult]] = set()

    def finished(task: asyncio.Task[ProbeResult]) -> None:
        in_flight.discard(task)
        if not task.cancelled():
            results.append(task.result())
            observe(task.result())

    started = loop.time()
    deadline = started + config.max_duration_s
    tick = 0
    while not stop.is_set() and loop.time() < deadline:
        task = asyncio.ensure_future(probe_once(config.address, config.port, timeout_s))
        in_flight.add(task)
        task.add_done_callback(finished)
        # A fixed grid: a slow probe delays nothing; after a stall (a busy CPU) the missed
        # slots are skipped rather than fired in a burst.
        tick = max(tick + 1, math.ceil((loop.time() - started) / interval_s))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=started + tick * interval_s - loop.time())
    if in_flight:  # let the last probes finish (each is bounded by its timeout)
        await asyncio.wait(set(in_flight))
    return ProbeRun(
        address=config.address,
        port=config.port,
        interval_ms=config.interval_ms,
        timeout_ms=config.timeout_ms,
        probes=tuple(sorted(results, key=lambda p: p.start_s)),
    )


@dataclass
class TransitionTracker:
    """Turns a stream of results into state changes: up at the first success, down at the first
    failure after one, up again at the next success."""

    up: bool | None = None

    def feed(self, result: ProbeResult) -> Transition | None:
        if result.ok and self.up is not True:
            self.up = True
            return Transition(True, result.end_s)
        if not result.ok and self.up is not False:
            was_up, self.up = self.up, False
            return Transition(False, result.end_s) if was_up else None
        return None


def write_run(run: ProbeRun, path: Path) -> None:
    write_atomic(path, json.dumps(run.to_json()))


def read_run(path: Path) -> ProbeRun:
    return ProbeRun.from_json(json.loads(path.read_text()))


async def _main_async(config: ProberConfig, out: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tracker = TransitionTracker()

    def report(result: ProbeResult) -> None:
        change = tracker.feed(result)
        if change is not None:
            word = "up" if change.up else "down"
            print(f"{word} {change.at_s:.6f} {result.outcome.value}", flush=True)

    run = await run_prober(config, stop, report)
    write_run(run, out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pikube.lab.network.probe",
        description="Probe http://ADDRESS:PORT/ every interval; write JSON results on exit.",
    )
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--interval-ms", type=int, default=DEFAULT_INTERVAL_MS)
    parser.add_argument("--timeout-ms", type=int, default=DEFAULT_TIMEOUT_MS)
    parser.add_argument("--max-duration-s", type=float, default=120.0)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    ipaddress.ip_address(args.address)  # a literal address: no name lookups in the probe path
    config = ProberConfig(
        address=args.address,
        port=args.port,
        interval_ms=args.interval_ms,
        timeout_ms=args.timeout_ms,
        max_duration_s=args.max_duration_s,
    )
    asyncio.run(_main_async(config, args.out))


# -- running the prober in a lab host --------------------------------------------------------


def prober_argv(config: ProberConfig, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pikube.lab.network.probe",
        "--address",
        config.address,
        "--port",
        str(config.port),
        "--interval-ms",
        str(config.interval_ms),
        "--timeout-ms",
        str(config.timeout_ms),
        "--max-duration-s",
        f"{config.max_duration_s:g}",
        "--out",
        str(out),
    ]


def start_prober(
    lab: Lab,
    host: str,
    name: str,
    config: ProberConfig,
    out: Path,
    *,
    wait_up: bool = True,
    ready_timeout_s: float = 10.0,
) -> ProcessRecord:
    """Start a prober in a lab host; with `wait_up`, return once it saw its first success."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    return lab.start(
        host,
        name,
        prober_argv(config, out),
        ready=LogMatches(r"^up ") if wait_up else None,
        ready_timeout_s=ready_timeout_s,
    )


def transitions_of(record: ProcessRecord) -> list[Transition]:
    """The state changes a running (or finished) prober has reported so far."""
    try:
        text = Path(record.log_path).read_text(errors="replace")
    except OSError:
        return []
    return parse_transitions(text)


def stop_prober(lab: Lab, record: ProcessRecord, out: Path) -> ProbeRun:
    """Stop the prober (it finishes its in-flight probes) and read what it measured."""
    lab.stop(record)
    return read_run(out)


# -- the client's neighbour table ---------------------------------------------------------------


class NeighbourState(enum.Enum):
    INCOMPLETE = 0x01
    REACHABLE = 0x02
    STALE = 0x04
    DELAY = 0x08
    PROBE = 0x10
    FAILED = 0x20
    NOARP = 0x40
    PERMANENT = 0x80
    NONE = 0x00


@dataclass(frozen=True)
class NeighbourEntry:
    """One line of the client's ARP/NDP table (`ip neigh`, the seed's `arp -a`)."""

    address: str
    mac: str | None  # None while unresolved (INCOMPLETE, FAILED)
    state: NeighbourState


def neighbour_state(nud: int) -> NeighbourState:
    """The state of a kernel neighbour entry from its NUD bits."""
    for candidate in NeighbourState:
        if candidate is not NeighbourState.NONE and nud & candidate.value:
            return candidate
    return NeighbourState.NONE


def read_neighbour(namespace: str, address: str) -> NeighbourEntry | None:
    """The kernel's neighbour entry for `address` in a namespace, read via netlink, or None."""
    # Imported here: pyroute2 costs ~0.4 s to import, which the prober process must not pay.
    from pikube.lab.network import netns  # noqa: PLC0415

    wanted = ipaddress.ip_address(address)
    with netns.route_socket(namespace) as ipr:
        for entry in ipr.get_neighbours():
            dst = entry.get_attr("NDA_DST")
            if dst is None or ipaddress.ip_address(dst) != wanted:
                continue
            mac = entry.get_attr("NDA_LLADDR")
            return NeighbourEntry(
                address=str(wanted),
                mac=str(mac).lower() if mac else None,
                state=neighbour_state(int(entry["state"])),
            )
    return None


def host_of_mac(hosts: Iterable[Host], mac: str | None) -> Host | None:
    """The lab host whose interface has this MAC, or None."""
    if mac is None:
        return None
    for host in hosts:
        if host.mac == mac.lower():
            return host
    return None


def owner_seen_by(lab: Lab, address: str, client: str = "client") -> Host | None:
    """Which lab host the client currently sends `address`'s traffic to (by its ARP/NDP table)."""
    entry = read_neighbour(lab.namespace(client), address)
    if entry is None or entry.state in (NeighbourState.FAILED, NeighbourState.INCOMPLETE):
        return None
    return host_of_mac(lab.topology.hosts, entry.mac)


if __name__ == "__main__":
    main()
