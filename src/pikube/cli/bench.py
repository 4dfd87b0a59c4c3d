"""`pikube bench ...`: benchmarks in the lab that print figures (never pass/fail on time)."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from pikube.bench import failover as fo
from pikube.bench.bgp import SCENARIOS
from pikube.lab.lab import Lab
from pikube.lab.network.topology import HOST_INTERFACE
from pikube.lab.services import seed_service

F = TypeVar("F", bound=Callable[..., Any])

# The options every lab bench has: where its JSON goes, its lab's name, whether to keep the lab.
JSON_OPTION = click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the results as JSON here.",
)


def lab_options(default_name: str) -> Callable[[F], F]:
    """`--name/-n` (the lab's name for the run) and `--keep`."""

    def decorate(command: F) -> F:
        command = click.option("--keep", is_flag=True, help="Leave the lab up afterwards.")(command)
        return click.option(
            "--name", "-n", default=default_name, show_default=True, help="Lab name for the run."
        )(command)

    return decorate


def _console(stderr: bool = False, soft_wrap: bool = False) -> Console:
    return Console(
        highlight=False,
        stderr=stderr,
        soft_wrap=soft_wrap,  # sentences stay whole lines (terminals wrap them), tables fit
        width=None if sys.stdout.isatty() else 120,
    )


@click.group()
def bench() -> None:
    """Benchmarks in the lab; they print figures (and JSON) and never pass/fail on time."""


@bench.command()
@click.option(
    "--impl",
    "impls",
    default=",".join(fo.IMPLEMENTATIONS),
    show_default=True,
    help="Comma-separated implementations to measure.",
)
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True)
@JSON_OPTION
@lab_options("bench")
def failover(impls: str, runs: int, json_path: Path | None, name: str, keep: bool) -> None:
    """Client-visible outage when the VIP's owner crashes, stops or loses its link.

    For each implementation (pikube's speaker, keepalived at a 0.1 s and a 1 s advert) and each
    scenario (crash, graceful, link-down), RUNS runs in one lab: a client probes VIP:80 every
    10 ms and the outage is the longest gap between successful responses.
    """
    names = fo.parse_impls(impls)
    settings = fo.BenchSettings(runs=runs)
    progress = _console(stderr=True, soft_wrap=True)
    lab = Lab(name)
    results: list[fo.RunResult] = []

    def report(r: fo.RunResult) -> None:
        progress.print(
            f"{r.impl:<17} {r.scenario.value:<9} run {r.run}: outage {r.outage_ms:7.1f} ms, "
            f"{r.failed_probes:3d} failed probes, owner {r.old_owner} -> {r.new_owner}"
        )

    started = time.monotonic()
    try:
        lab.up()
        fo.run_bench(lab, names, settings, progress=report, results=results)
    finally:
        if results and json_path is not None:
            fo.write_json(json_path, fo.summarise(results, runs))
        if not keep:
            lab.down()
    summary = fo.summarise(results, runs)
    table = Table(
        "implementation", "scenario", "p50 ms", "max ms", "outages ms", "failed probes", box=None
    )
    for row in fo.table_rows(summary):
        table.add_row(*row)
    console = _console()
    console.print(
        f"failover outage seen by the client ({runs} run{'s' if runs > 1 else ''} each, "
        f"probe every {settings.interval_ms} ms, {settings.timeout_ms} ms timeout; "
        f"{time.monotonic() - started:.0f} s)"
    )
    console.print(table)
    if json_path is not None:
        console.print(f"JSON written to {json_path}")


@bench.command(name="bgp")
@click.option(
    "--router",
    "routers",
    default="frr,bird,gobgp",
    show_default=True,
    help="Comma-separated routers to measure against.",
)
@click.option(
    "--scenario",
    "scenarios",
    default=",".join(SCENARIOS),
    show_default=True,
    help="Comma-separated scenarios.",
)
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True)
@JSON_OPTION
@lab_options("benchbgp")
@click.option(
    "--frr-zebra-work-queue",
    "zebra_work_queue_ms",
    type=click.IntRange(0, 10000),
    default=None,
    metavar="MS",
    help="FRR: zebra's route work-queue hold (`zebra work-queue MS`; FRR's default is 10).",
)
@click.option(
    "--frr-timeline",
    is_flag=True,
    help="FRR: log updates and route installs, and report bgpd's and zebra's share of "
    "announce and withdraw from FRR's own timestamps.",
)
def bgp_command(
    routers: str,
    scenarios: str,
    runs: int,
    json_path: Path | None,
    name: str,
    keep: bool,
    zebra_work_queue_ms: int | None,
    frr_timeline: bool,
) -> None:
    """How fast routers learn and forget service IPs from pikube's BGP speakers.

    For each router (FRR, BIRD, GoBGP) and scenario (establish, announce, withdraw,
    crash-bfd with BFD at 100 ms x 3, crash-hold with a 9 s hold time), RUNS runs in one lab.
    """
    from pikube.bench import bgp as bench_bgp  # noqa: PLC0415
    from pikube.lab.services.bgp import ROUTERS  # noqa: PLC0415

    chosen = [r.strip() for r in routers.split(",") if r.strip()]
    for r in chosen:
        if r not in ROUTERS:
            raise click.BadParameter(
                f"{r!r}: choose from {', '.join(ROUTERS)}", param_hint="--router"
            )
    wanted = [s.strip() for s in scenarios.split(",") if s.strip()]
    for s in wanted:
        if s not in SCENARIOS:
            raise click.BadParameter(
                f"{s!r}: choose from {', '.join(SCENARIOS)}", param_hint="--scenario"
            )
    progress = _console(stderr=True, soft_wrap=True)
    lab = Lab(name)
    results: list[bench_bgp.Result] = []
    started = time.monotonic()
    try:
        lab.up()
        for router in chosen:
            results += bench_bgp.run_router(
                lab,
                router,
                wanted,
                runs,
                progress.print,
                frr_zebra_work_queue_ms=zebra_work_queue_ms,
                frr_timeline=frr_timeline,
            )
    finally:
        summary = bench_bgp.summarise(results, runs)
        if results and json_path is not None:
            tmp = json_path.with_name(json_path.name + ".tmp")
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
            tmp.replace(json_path)
        if not keep:
            lab.down()
    table = Table("router", "scenario", "p50 ms", "max ms", "runs ms", box=None)
    for entry in summary["results"]:
        if entry.get("skipped"):
            table.add_row(
                entry["router"], entry["scenario"], "-", "-", f"skipped: {entry['skipped']}"
            )
            continue
        table.add_row(
            entry["router"],
            entry["scenario"],
            f"{entry['p50_ms']:.1f}",
            f"{entry['max_ms']:.1f}",
            " ".join(f"{m:.0f}" for m in entry["ms"]),
        )
    console = _console()
    console.print(
        f"BGP: time until the router's table shows the change ({runs} runs; "
        f"{time.monotonic() - started:.0f} s)"
    )
    console.print(table)
    for entry in summary["results"]:
        if entry.get("frr_bgpd_ms"):
            zebra = entry.get("frr_zebra_ms") or [0.0]
            transit = entry.get("frr_transit_ms") or [0.0]
            console.print(
                f"FRR's own timestamps, {entry['scenario']}: speaker's first decision -> bgpd "
                f"received p50 {statistics.median(transit):.1f} ms, bgpd received -> handed to "
                f"zebra p50 {statistics.median(entry['frr_bgpd_ms']):.1f} ms, zebra queued -> "
                f"kernel p50 {statistics.median(zebra):.1f} ms"
            )
    if json_path is not None:
        console.print(f"JSON written to {json_path}")


@bench.command(name="lb-api")
@click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True)
@JSON_OPTION
@lab_options("bench")
def lb_api(runs: int, json_path: Path | None, name: str, keep: bool) -> None:
    """Service created through the API -> IP in its status, and -> the client's first HTTP 200.

    pikube's controller on master and `--source kube` speakers on node01-03, on a real etcd +
    kube-apiserver v1.31.5 running on master (no nodes' kubelets); each run creates a
    LoadBalancer Service from the client and measures from the moment the create is sent: the
    API's own watch event (the floor), the IP in the status, and the first HTTP 200 from the IP.
    """
    from pikube.bench import lb_api as bench_api  # noqa: PLC0415

    progress = _console(stderr=True, soft_wrap=True)
    lab = Lab(name)
    results: list[bench_api.ApiRun] = []

    def report(r: bench_api.ApiRun) -> None:
        results.append(r)
        progress.print(
            f"run {r.run:3d}: watch {r.api_ms:6.1f} ms, IP {r.ip_ms:6.1f} ms (API floor "
            f"{r.ip_floor_ms:6.1f} ms), HTTP 200 {r.http_ms:6.1f} ms, withdrawn "
            f"{r.withdraw_ms:6.1f} ms; load {r.load:.2f}"
        )

    try:
        lab.up()
        bench_api.run_bench(lab, runs, progress=report)
    finally:
        if results and json_path is not None:
            bench_api.write_json(json_path, bench_api.summarise(results))
        if not keep:
            lab.down()
    summary = bench_api.summarise(results)
    table = Table("figure", "p50 ms", "p99 ms", "max ms", "p50 / API floor", box=None)
    labels = {"api_ms": "API watch event (floor)",
              "ip_floor_ms": "API floor for the IP (watch + a status write)",
              "ip_ms": "created -> IP in status", "http_ms": "created -> HTTP 200",
              "withdraw_ms": "deleted -> no speaker announcing",
              "load": "load average (not ms)"}  # fmt: skip
    for key, label in labels.items():
        figure = summary["figures"][key]
        ratio = summary["ratio_p50_to_api"].get(key)
        table.add_row(
            label,
            f"{figure['p50']:.1f}",
            f"{figure['p99']:.1f}",
            f"{figure['max']:.1f}",
            ("1" if key == "api_ms" else "-") if ratio is None else f"{ratio:g}",
        )
    console = _console()
    console.print(
        f"LoadBalancer Service through the Kubernetes API ({len(results)} runs; API: real "
        "kube-apiserver v1.31.5 + etcd v3.5.15 on master, not the stand-in)"
    )
    console.print(table)
    if json_path is not None:
        console.print(f"JSON written to {json_path}")


@bench.command(name="cluster")
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Second applies to time (and as many hosts-only applies, the peer).",
)
@JSON_OPTION
@lab_options("bench")
@click.option(
    "--second-only",
    is_flag=True,
    help="Time only the second applies, on the lab a `--keep` run left built.",
)
def cluster_command(
    runs: int, json_path: Path | None, name: str, keep: bool, second_only: bool
) -> None:
    """Four fresh lab Pis to HTTP 200 with one `pikube cluster apply` (goal: under 5 min), and
    the second apply with nothing to do (goal: under 5 s), with the load average: the machine
    is shared. The peers: the same second apply with host preparation only, and k0sctl's
    published 2 min 2 s for two nodes."""
    from pikube.bench import cluster as bench_cluster  # noqa: PLC0415

    progress = _console(stderr=True, soft_wrap=True)
    lab = Lab(name)
    try:
        figures = bench_cluster.run_bench(lab, runs, progress.print, fresh=not second_only)
    finally:
        if not keep:
            lab.down()
    text = json.dumps(figures, indent=2)
    if json_path is not None:
        json_path.write_text(text + "\n")
    click.echo(text)


@bench.command(name="seed-story", hidden=True)
@click.option("--name", "-n", default="story", show_default=True, help="Lab name.")
@click.option("--keep", is_flag=True, help="Leave the lab up afterwards.")
def seed_story(name: str, keep: bool) -> None:
    """Experimental: the seed's story with keepalived (0.1 s) standing in for the speaker.

    nginx on node02 behind 198.51.100.230:80 (kube-proxy rules on every node), keepalived on
    node01-03; from the client: HTTP 200, the ARP table's owner; the owner crashes; the outage
    and the new owner.
    """
    console = _console(soft_wrap=True)
    lab = Lab(name)
    vip = seed_service.SEED_VIP
    baseline = fo.KeepalivedBaseline(name="keepalived-100ms", advert_int_s=0.1)
    try:
        lab.up()
        service = seed_service.publish(lab)
        console.print(
            f"nginx on {service.backend_host} behind {vip}:{service.port} "
            f"(kube-proxy rules on {', '.join(service.nodes)})"
        )
        before = seed_service.look_from_client(lab, service)
        console.print(
            f"before any announcer: {before.http.outcome.value}; client ARP entry: "
            f"{before.neighbour.state.name if before.neighbour else 'none'}"
        )
        baseline.start(lab, fo.ANNOUNCERS, vip)
        fo.wait_until(baseline.settled, 30, "keepalived electing a master")
        view = seed_service.look_from_client(lab, service)
        mac = view.neighbour.mac if view.neighbour else "?"
        owner = view.owner.name if view.owner else "?"
        console.print(
            f"client: GET http://{vip}/ -> {view.http.outcome.value} from "
            f"{view.http.backend}; ARP: {vip} at {mac} = {owner}'s {HOST_INTERFACE}"
        )
        result = fo.run_once(lab, baseline, fo.Scenario.CRASH, 1, fo.BenchSettings(runs=1))
        console.print(
            f"{result.old_owner} crashed (keepalived SIGKILLed, eth0 down): the client lost "
            f"{vip} for {result.outage_ms:.0f} ms ({result.failed_probes} failed probes); "
            f"the new owner is {result.new_owner}"
        )
        baseline.stop()
    finally:
        if not keep:
            lab.down()


@bench.command(name="kube-lb")
@click.option(
    "--impl",
    "impls",
    default="metallb,pikube",
    show_default=True,
    help="Comma-separated: metallb, pikube (the first is installed fresh, each next one is "
    "switched to, and the last back to the first).",
)
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True,
              help="Failover runs per scenario.")  # fmt: skip
@click.option("--create-runs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Service create runs per implementation.")  # fmt: skip
@JSON_OPTION
@lab_options("benchk8s")
@click.option(
    "--reuse",
    is_flag=True,
    help="The lab is already up with Kubernetes (`pikube lab up --kubernetes`): use it as it is.",
)
def kube_lb(
    impls: str,
    runs: int,
    create_runs: int,
    json_path: Path | None,
    name: str,
    keep: bool,
    reuse: bool,
) -> None:
    """pikube and MetalLB v0.14.9 on the lab's real Kubernetes, in one run.

    Each installed as its users do (MetalLB: its own metallb-native.yaml and images built from
    its Go module; pikube: its rendered manifest and image); the seed's pool, L2Advertisement
    and nginx Service (nginx on master). Per implementation: failover (crash, graceful,
    link-down of the IP's owner), create-to-IP and create-to-HTTP-200; and the client's outage
    during each switch from one to the other.
    """
    from pikube.bench import kube_lb  # noqa: PLC0415
    from pikube.lab.kubernetes import appimage, metallb, seedcluster  # noqa: PLC0415

    names = kube_lb.parse_impls(impls)
    settings = fo.BenchSettings(runs=runs, timeout_ms=250, settle_timeout_s=120.0)
    progress = _console(stderr=True, soft_wrap=True)
    lab = Lab(name)
    results = kube_lb.Results()
    started = time.monotonic()
    try:
        image = appimage.ensure_image()
        if not reuse:
            lab.up()
            seedcluster.up_kubernetes(lab, say=progress.print)
        appimage.serve_image(lab, image)
        metallb.serve_images(lab)
        kube_lb.run_bench(lab, names, settings, create_runs, results, say=progress.print)
    finally:
        summary = kube_lb.summarise(results, runs)
        if json_path is not None:
            kube_lb.write_json(json_path, summary)
        if not keep:
            lab.down()
    console = _console()
    console.print(
        f"pikube and MetalLB on the lab's real Kubernetes ({runs} failover runs per scenario, "
        f"{create_runs} creates; {time.monotonic() - started:.0f} s; load average "
        f"{summary['load_average']})"
    )
    table = Table("implementation", "scenario", "p50 ms", "max ms", "outages ms", box=None)
    for row in fo.table_rows(summary["failover"]):
        table.add_row(*row[:5])
    console.print(table)
    create = Table("implementation", "figure", "p50 ms", "p99 ms", box=None)
    for impl, figures in summary["create"].items():
        for key, label in (("ip_ms", "created -> IP"), ("http_ms", "created -> HTTP 200")):
            create.add_row(impl, label, f"{figures[key]['p50']:.0f}", f"{figures[key]['p99']:.0f}")
    console.print(create)
    for s in summary["switches"]:
        console.print(
            f"switch {s['old']} -> {s['new']}: client outage {s['outage_ms']:.0f} ms "
            f"({s['failed_probes']} failed probes), {s['seconds']:.0f} s until settled"
        )
    if json_path is not None:
        console.print(f"JSON written to {json_path}")
