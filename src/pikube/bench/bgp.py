"""`pikube bench bgp`: how fast the router learns and forgets a service IP from pikube's speakers.

For each router (FRR, BIRD, GoBGP in `router`) and scenario, RUNS runs in one lab, with the
speakers on node01-03 and the service at 203.0.113.10 (endpoint on node02, policy Cluster):
- establish: from a speaker's session start to Established, as the speaker measures it;
- announce: the first speaker's decision (the UPDATE it sends when it sees the Service) -> the
  route is in the router's table;
- withdraw: the last speaker's decision after the Service is deleted -> the route is gone;
- crash-bfd: node01's eth0 goes down (BFD 100 ms x 3 on both ends) -> the router's route no
  longer goes via node01;
- crash-hold: the same without BFD; the hold time (9 s) finds it.
"In the router's table" is the router's kernel table for FRR and BIRD (what forwards the
client's packets), read over rtnetlink every millisecond (a change is timed at the end of the
read that first shows it: an upper bound), and the RIB for GoBGP (which installs nothing),
whose route appearing or going is timed by the arrival of its `gobgp monitor global rib` line
(its other changes by polling the RIB through its CLI, ~10-50 ms a read). A speaker's decision
time is its CLOCK_MONOTONIC stamp of the UPDATE (its /status), comparable with the bench's;
announce and withdraw also report the time from the manifest change (`from_manifest_ms`),
which adds the speakers' reading of the
directory (inotify, parsing, allocation). GoBGP 3.10 has no BFD: its crash-bfd is
skipped with a note. Reports figures; asserts nothing about time.

`--frr-timeline` also splits FRR's figures with FRR's own timestamps (bgpd received -> handed
to zebra; zebra queued -> netlink to the kernel; `frr_timeline`), and `--frr-zebra-work-queue
MS` sets zebra's work-queue hold (decision 0162).
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pikube.errors import PikubeError
from pikube.lab import state
from pikube.lab.lab import Lab
from pikube.lab.network import netns
from pikube.lab.services import bgp
from pikube.lab.services.bgp import NODE_ADDRESSES, VIP4, BgpSpeakers, Router, RouterOptions

SCENARIOS = ("establish", "announce", "withdraw", "crash-bfd", "crash-hold")
BFD_INTERVAL_MS = 100
HOLD_TIME_S = 9
PREFIX = f"{VIP4}/32"


@dataclass
class Result:
    router: str
    scenario: str
    ms: list[float] = field(default_factory=list)
    skipped: str | None = None
    from_manifest_ms: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)


def _stamp(line: str) -> float | None:
    """Seconds of the day from an FRR log line's `YYYY/MM/DD HH:MM:SS.ffffff` prefix."""
    try:
        clock = line.split(" ", 2)[1]
        hours, minutes, seconds = clock.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (IndexError, ValueError):
        return None


def frr_timeline(bgpd_log: str, zebra_log: str, prefix: str) -> list[dict[str, Any]]:
    """FRR's own account of each change of `prefix`, from its debug logs (RouterOptions.
    frr_timeline): per route add or delete bgpd sends to zebra, `bgpd_ms` from the first
    UPDATE about the prefix bgpd received since its previous change to bgpd handing it to
    zebra, and `zebra_ms` from zebra queueing it to zebra's netlink message to the kernel;
    `received_s`: when bgpd logged that first UPDATE (seconds of the day, local time)."""
    bgpd: list[tuple[str, float, float]] = []
    first: float | None = None
    for line in bgpd_log.splitlines():
        at = _stamp(line)
        if at is None or f" {prefix}" not in line:
            continue
        if f"rcvd {prefix} " in line or f"rcvd UPDATE about {prefix} " in line:
            first = at if first is None else first
        elif f"Tx route add VRF 0 {prefix} " in line or line.endswith(
            f"Tx route delete VRF 0 {prefix}"
        ):
            if first is not None:
                change = "add" if " add " in line else "delete"
                bgpd.append((change, (at - first) * 1000, first))
            first = None
    zebra: list[float] = []
    queued: float | None = None
    for line in zebra_log.splitlines():
        at = _stamp(line)
        if at is None:
            continue
        if f"Route {prefix}(0) queued for processing" in line:
            queued = at if queued is None else queued
        elif f"RTM_NEWROUTE {prefix} " in line or f"RTM_DELROUTE {prefix} " in line:
            if queued is not None:
                zebra.append((at - queued) * 1000)
            queued = None
    return [
        {
            "change": change,
            "bgpd_ms": round(ms, 1),
            "zebra_ms": round(z, 1) if z is not None else None,
            "received_s": received,
        }
        for (change, ms, received), z in zip(bgpd, [*zebra, *[None] * len(bgpd)], strict=False)
    ]


class KernelTable:
    """The router's kernel routes, read over rtnetlink from the bench (well under a ms)."""

    def __init__(self, lab: Lab) -> None:
        self._context = netns.route_socket(lab.namespace("router"))
        self._ipr = self._context.__enter__()

    def next_hops(self, address: str) -> tuple[str, ...]:
        hops: set[str] = set()
        for route in self._ipr.get_routes(family=socket.AF_INET):
            if route.get_attr("RTA_DST") != address or route["dst_len"] != 32:
                continue
            gateway = route.get_attr("RTA_GATEWAY")
            if gateway:
                hops.add(gateway)
            for hop in route.get_attr("RTA_MULTIPATH") or []:
                gateway = hop.get_attr("RTA_GATEWAY")
                if gateway:
                    hops.add(gateway)
        return tuple(sorted(hops))

    def close(self) -> None:
        self._context.__exit__(None, None, None)


class RibMonitor:
    """GoBGP's best-path stream for the service prefix: (arrival, present) per change."""

    def __init__(self, lab: Lab, router: Router) -> None:
        self.process = bgp.monitor(lab, router)
        self.changes: list[tuple[float, bool]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            now = time.monotonic()
            try:
                paths = json.loads(line)
            except ValueError:
                continue
            for path in paths if isinstance(paths, list) else [paths]:
                if not isinstance(path, dict) or path.get("nlri", {}).get("prefix") != PREFIX:
                    continue
                with self._lock:
                    self.changes.append((now, not path.get("withdrawal", False)))

    def first_since(self, since: float, present: bool) -> float | None:
        with self._lock:
            return next((t for t, p in self.changes if t >= since and p == present), None)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._thread.join(5)


@dataclass
class Watch:
    """Times changes of the service route in the router's table (see the module docstring)."""

    lab: Lab
    router: Router
    kernel: KernelTable | None = None
    rib: RibMonitor | None = None

    def __post_init__(self) -> None:
        if self.router.options.kind == "gobgp":
            self.rib = RibMonitor(self.lab, self.router)
        else:
            self.kernel = KernelTable(self.lab)

    def next_hops(self) -> tuple[str, ...]:
        if self.kernel is not None:
            return self.kernel.next_hops(str(VIP4))
        route = self.router.routes().get(PREFIX)
        return route.next_hops if route else ()

    def until(
        self,
        since: float,
        condition: Callable[[tuple[str, ...]], bool],
        timeout_s: float,
        what: str,
        presence: bool | None = None,
    ) -> float:
        """ms from `since` until `condition` holds for the route's next hops. `presence`
        (route there / gone) lets GoBGP's stream time it; otherwise its RIB is polled."""
        deadline = since + timeout_s
        while True:
            hops = self.next_hops()
            after = time.monotonic()
            if condition(hops) and self._still(condition):
                if self.rib is not None and presence is not None:
                    stamp = self.rib.first_since(since, presence)
                    if stamp is not None:
                        return (stamp - since) * 1000
                return (after - since) * 1000
            if after > deadline:
                raise PikubeError(
                    f"{self.router.options.kind}: {what} not seen within {timeout_s:g} s"
                )
            time.sleep(0.001 if self.kernel is not None else 0.01)

    def _still(self, condition: Callable[[tuple[str, ...]], bool]) -> bool:
        """The change holds 20 ms later: a router replacing a route is not a change."""
        time.sleep(0.02)
        return condition(self.next_hops())

    def close(self) -> None:
        if self.kernel is not None:
            self.kernel.close()
        if self.rib is not None:
            self.rib.close()


def _docs(lab: Lab, options: RouterOptions, bfd: bool) -> list[dict[str, Any]]:
    profile = None
    if bfd:
        profile = {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "BFDProfile",
            "metadata": {"name": "fast", "namespace": "metallb-system"},
            "spec": {
                "receiveInterval": BFD_INTERVAL_MS,
                "transmitInterval": BFD_INTERVAL_MS,
                "detectMultiplier": 3,
            },
        }
    docs = bgp.manifests(lab, options, bfd_profile=profile)
    # The Service last: the speakers act once, when it appears with its endpoints in place.
    return sorted(docs, key=lambda d: d["kind"] == "Service")


def run_router(
    lab: Lab,
    kind: str,
    scenarios: Sequence[str],
    runs: int,
    progress: Callable[[str], None],
    *,
    frr_zebra_work_queue_ms: int | None = None,
    frr_timeline: bool = False,
) -> list[Result]:
    results: dict[str, Result] = {s: Result(kind, s) for s in scenarios}
    uses_bfd = "crash-bfd" in scenarios
    probe = bgp.start_router(lab, RouterOptions(kind=kind))
    has_bfd = probe.has_bfd()
    probe.stop()
    if uses_bfd and not has_bfd:
        results["crash-bfd"].skipped = f"{kind} has no BFD in its Debian package"
    bfd_phase = [s for s in scenarios if s != "crash-hold"]
    hold_phase = [s for s in scenarios if s == "crash-hold"]
    for phase, with_bfd in ((bfd_phase, uses_bfd and has_bfd), (hold_phase, False)):
        if not phase:
            continue
        options = RouterOptions(
            kind=kind,
            hold_time_s=HOLD_TIME_S,
            bfd_interval_ms=BFD_INTERVAL_MS if with_bfd else None,
            frr_zebra_work_queue_ms=frr_zebra_work_queue_ms,
            frr_timeline=frr_timeline and kind == "frr",
        )
        _phase(lab, options, phase, runs, results, with_bfd, progress)
    return [results[s] for s in scenarios]


def _phase(
    lab: Lab,
    options: RouterOptions,
    scenarios: Sequence[str],
    runs: int,
    results: Mapping[str, Result],
    with_bfd: bool,
    progress: Callable[[str], None],
) -> None:
    kind = options.kind
    first_decisions: dict[str, list[float]] = {"announce": [], "withdraw": []}
    router = bgp.start_router(lab, options)
    speakers = BgpSpeakers(lab, Path(tempfile.mkdtemp(prefix="bgp-", dir=state.lab_dir(lab.name))))
    watch = Watch(lab, router)
    docs = _docs(lab, options, with_bfd)
    without_service = [d for d in docs if d["kind"] not in ("Service", "EndpointSlice")]
    all_nodes = tuple(sorted(NODE_ADDRESSES.values()))
    try:
        speakers.write(without_service)
        speakers.start_all()
        router.wait(lambda r: sum(r.sessions().values()) == 3, 20, "3 sessions")
        if "establish" in scenarios:
            for node in speakers.nodes:
                ms = speakers.status(node)["peers"]["router"]["established_after_ms"]
                results["establish"].ms.append(round(float(ms), 1))
            progress(f"{kind:<6} establish      {results['establish'].ms} ms")
        for run in range(1, runs + 1):
            if "announce" in scenarios or "withdraw" in scenarios:
                speakers.write(without_service)
                watch.until(time.monotonic(), lambda h: not h, 10, "no route")
                since = time.monotonic()
                speakers.write(docs)
                ms = watch.until(since, bool, 10, "the route", presence=True)
                if "announce" in scenarios:
                    # From the first speaker's decision (its UPDATE) to the router's table.
                    decided = _first_update_since(speakers, since)
                    if decided is not None:
                        first_decisions["announce"].append(_time_of_day(decided))
                    from_decision = ms - (decided - since) * 1000 if decided else ms
                    results["announce"].ms.append(round(from_decision, 1))
                    results["announce"].from_manifest_ms.append(round(ms, 1))
                    progress(
                        f"{kind:<6} announce   run {run}: {from_decision:7.1f} ms from the "
                        f"decision, {ms:7.1f} ms from the manifest"
                    )
                watch.until(time.monotonic(), lambda h: h == all_nodes, 10, "ECMP")
                since = time.monotonic()
                speakers.write(without_service)
                ms = watch.until(since, lambda h: not h, 10, "withdrawal", presence=False)
                if "withdraw" in scenarios:
                    # The route is gone once every speaker withdrew: from the last decision.
                    times = _update_times(speakers, since)
                    if times:
                        first_decisions["withdraw"].append(_time_of_day(min(times)))
                    decided = max(times) if len(times) == len(speakers.nodes) else None
                    from_decision = ms - (decided - since) * 1000 if decided else ms
                    results["withdraw"].ms.append(round(from_decision, 1))
                    results["withdraw"].from_manifest_ms.append(round(ms, 1))
                    progress(
                        f"{kind:<6} withdraw   run {run}: {from_decision:7.1f} ms from the "
                        f"decision, {ms:7.1f} ms from the manifest "
                        f"(decisions at {sorted(round((t - since) * 1000, 1) for t in times)})"
                    )
            for scenario in ("crash-bfd", "crash-hold"):
                if scenario not in scenarios or results[scenario].skipped:
                    continue
                speakers.write(docs)
                watch.until(time.monotonic(), lambda h: h == all_nodes, 30, "ECMP")
                if with_bfd:
                    _wait_bfd_up(speakers)
                since = time.monotonic()
                bgp.link(lab, "node01", up=False)
                ms = watch.until(
                    since,
                    lambda h: NODE_ADDRESSES["node01"] not in h,
                    HOLD_TIME_S * 3,
                    "node01's route gone",
                )
                results[scenario].ms.append(round(ms, 1))
                progress(f"{kind:<6} {scenario:<10} run {run}: {ms:7.1f} ms")
                bgp.link(lab, "node01", up=True)
                watch.until(
                    time.monotonic(),
                    lambda h: h == all_nodes,
                    60,
                    "node01 back",
                )
    finally:
        watch.close()
        for node in list(speakers.records):
            speakers.stop(node)
        router.stop()
    if isinstance(router, bgp.Frr) and options.frr_timeline:
        timeline = frr_timeline(*router.timeline_logs(), PREFIX)
        # A withdrawal's first UPDATE can open a change that ends as a route add (fewer paths):
        # the speaker -> bgpd time pairs each decision with the first UPDATE after it, any kind.
        received = [t["received_s"] for t in timeline]
        for scenario, change in (("announce", "add"), ("withdraw", "delete")):
            if scenario in results:
                entries = [t for t in timeline if t["change"] == change]
                results[scenario].extra["frr_bgpd_ms"] = [t["bgpd_ms"] for t in entries]
                results[scenario].extra["frr_zebra_ms"] = [
                    t["zebra_ms"] for t in entries if t["zebra_ms"] is not None
                ]
                results[scenario].extra["frr_transit_ms"] = _transit(
                    first_decisions[scenario], received
                )


def _time_of_day(monotonic: float) -> float:
    """A CLOCK_MONOTONIC instant as seconds of the local day, as FRR's log stamps it."""
    wall = time.time() - time.monotonic() + monotonic
    local = time.localtime(wall)
    return local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec + wall % 1


def _transit(decisions: Sequence[float], received: Sequence[float]) -> list[float]:
    """For each speaker decision, the time until bgpd logged the first UPDATE after it (ms)."""
    out = []
    for decided in decisions:
        later = [r for r in received if r >= decided - 0.002]
        if later:
            out.append(round((min(later) - decided) * 1000, 1))
    return out


def _update_times(speakers: BgpSpeakers, since: float) -> list[float]:
    times = []
    for node in speakers.nodes:
        at = speakers.status(node)["peers"]["router"].get("last_update_monotonic")
        if at is not None and at >= since:
            times.append(float(at))
    return times


def _first_update_since(speakers: BgpSpeakers, since: float) -> float | None:
    times = _update_times(speakers, since)
    return min(times) if times else None


def _last_update_since(speakers: BgpSpeakers, since: float) -> float | None:
    times = _update_times(speakers, since)
    return max(times) if times else None


def _wait_bfd_up(speakers: BgpSpeakers, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not speakers.status("node01")["peers"]["router"]["bfd_settled"]:
        if time.monotonic() > deadline:
            raise PikubeError(f"node01's BFD session did not come up within {timeout_s:g} s")
        time.sleep(0.05)


def summarise(results: Sequence[Result], runs: int) -> dict[str, Any]:
    entries = []
    for r in results:
        entry: dict[str, Any] = {"router": r.router, "scenario": r.scenario, "ms": r.ms}
        if r.ms:
            entry["p50_ms"] = round(statistics.median(r.ms), 1)
            entry["max_ms"] = max(r.ms)
        else:
            entry["p50_ms"] = entry["max_ms"] = None
        if r.from_manifest_ms:
            entry["from_manifest_ms"] = r.from_manifest_ms
        if r.skipped:
            entry["skipped"] = r.skipped
        entry.update(r.extra)
        entries.append(entry)
    return {"runs": runs, "results": entries}
