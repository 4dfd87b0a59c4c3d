"""`pikube lab ...`: build, inspect, use and remove the virtual LAN."""

from __future__ import annotations

import json
import os
import sys
import time

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pikube.errors import PikubeError
from pikube.lab.hosts.processes import LAB_ENV
from pikube.lab.lab import DEFAULT_LAB, Lab, LabStatus, lab_command
from pikube.lab.network.checks import PROBE_KINDS, Probe, reachability
from pikube.lab.network.topology import DEFAULT_POOL_FIRST, DEFAULT_POOL_LAST

_name_option = click.option(
    "--name",
    "-n",
    default=lambda: os.environ.get(LAB_ENV, DEFAULT_LAB),
    show_default=f"${LAB_ENV} or {DEFAULT_LAB}",
    help="Lab name; several labs can exist at once.",
)


def _console() -> Console:
    # Off a terminal (CI logs, pipes) rich assumes 80 columns and truncates the tables.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


@click.group()
def lab() -> None:
    """The virtual LAN: the seed's Raspberry Pis, PC and router as network namespaces."""


@lab.command()
@_name_option
@click.option("--ssh", is_flag=True, help="Also boot master and node01-03 as SSH-able Pis.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="HOST=FAULT[,FAULT]",
    help="Break an SSH host (implies --ssh; repeatable). Checked before anything is built.",
)
@click.option(
    "--kubernetes",
    is_flag=True,
    help="Boot the Pis as a real Kubernetes v1.31.5 cluster (kubeadm, flannel), as the seed does.",
)
def up(name: str, ssh: bool, faults: tuple[str, ...], kubernetes: bool) -> None:
    """Build the lab (idempotent)."""
    if kubernetes and (ssh or faults):
        raise PikubeError("--kubernetes boots the Pis itself: leave out --ssh and --fault")
    the_lab = Lab(name)
    if faults:
        from pikube.lab.hosts import sshhosts  # noqa: PLC0415 (only for --fault)

        sshhosts.checked_ssh_hosts(the_lab, sshhosts.parse_faults(faults))  # refuses bad values now
    report = the_lab.up()
    verb = "built" if report.created else "already up"
    _console().print(f"lab {name!r} {verb} in {report.elapsed_s:.2f} s")
    _print_hosts(the_lab.status())
    if kubernetes:
        from pikube.lab.kubernetes import seedcluster  # noqa: PLC0415 (opt-in, heavier)

        stages = seedcluster.up_kubernetes(the_lab, say=_console().print)
        total = sum(stages.seconds.values())
        _console().print(f"Kubernetes v1.31.5: four Ready nodes in {total:.0f} s")
        _console().print(f"admin kubeconfig: {seedcluster.kubeconfig_path(name)}")
        return
    from pikube.lab.kubeapi import launch  # noqa: PLC0415 (keeps other commands' start-up fast)

    api = launch.start_in_lab(the_lab)
    _console().print(f"Kubernetes API (lab stand-in): {api.server_url}")
    _console().print(f"admin kubeconfig: {api.kubeconfig}")
    if ssh or faults:
        from pikube.cli.cluster_view import print_ssh_hosts_up  # noqa: PLC0415 (opt-in, heavier)

        print_ssh_hosts_up(the_lab, faults)


@lab.command()
@_name_option
def kubeconfig(name: str) -> None:
    """Print the path of the lab's admin kubeconfig (kubeadm's admin.conf)."""
    the_lab = Lab(name)
    the_lab.require_up()
    from pikube.lab.kubeapi import launch  # noqa: PLC0415
    from pikube.lab.kubernetes import seedcluster  # noqa: PLC0415

    path = seedcluster.kubeconfig_path(name)  # a real cluster's admin.conf, if it has one
    if not path.exists():
        path = launch.kubeconfig_path(name)
    if not path.exists():
        raise PikubeError(
            f"lab {name!r} has no Kubernetes API yet; start it with `{lab_command(name, 'up')}`"
        )
    click.echo(str(path))


@lab.command()
@_name_option
def down(name: str) -> None:
    """Remove the lab: every namespace, link and process it started."""
    report = Lab(name).down()
    if not report.existed:
        _console().print(f"lab {name!r} does not exist; nothing to do")
        return
    _console().print(
        f"lab {name!r} removed: {len(report.namespaces_removed)} namespaces, "
        f"{len(report.processes_stopped)} processes stopped"
    )


@lab.command()
@_name_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def status(name: str, output: str) -> None:
    """Show the lab's hosts, addresses and processes."""
    the_lab = Lab(name)
    st = the_lab.status()
    api = None
    if st.exists:
        from pikube.lab.kubeapi import launch  # noqa: PLC0415 (keeps start-up fast)

        api = launch.describe(the_lab, st.processes)
    if output == "json":
        click.echo(
            json.dumps({**_status_json(st), "kubernetes_api": api and api.to_json()}, indent=2)
        )
        if not st.exists:
            sys.exit(1)
        return
    if not st.exists:
        _console().print(f"lab {name!r} does not exist")
        sys.exit(1)
    _print_hosts(st)
    if api is not None:
        state = "" if api.running else " [red](not running)[/red]"
        _console().print(f"Kubernetes API: {api.what} at {api.server_url}{state}", soft_wrap=True)
    if st.processes:
        table = Table("host", "process", "pid", "state", "command", box=None)
        for p in st.processes:
            rec = p.record
            table.add_row(
                rec.host,
                rec.name,
                str(rec.pid),
                "running" if p.running else "exited",
                " ".join(rec.argv),
            )
        _console().print(table)
    else:
        _console().print("no processes")


@lab.command()
@click.option(
    "--component",
    "components",
    multiple=True,
    metavar="NAME",
    help="Build only this component (repeatable); all of them by default.",
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def build(components: tuple[str, ...], output: str) -> None:
    """Build the seed's Kubernetes components from their Go modules (cached by version)."""
    from pikube.lab.kubernetes import gobuild  # noqa: PLC0415 (keeps other commands' start-up fast)
    from pikube.lab.kubernetes.components import COMPONENTS  # noqa: PLC0415

    names = components or tuple(c.name for c in COMPONENTS)
    for wanted in names:
        gobuild.lookup(wanted)  # an unknown name fails before anything is built
    started = time.monotonic()
    results = []
    for wanted in names:
        result = gobuild.build(wanted)
        results.append(result)
        if output == "table":
            comp = gobuild.lookup(wanted)
            seed = f" (seed: {comp.pinned})" if comp.substituted else ""
            how = "cached" if result.cached else f"built in {result.build_s:.1f} s"
            size_mb = sum(result.sizes.values()) / 1e6
            count = len(result.sizes)
            _console().print(
                f"{wanted} {result.version}{seed}: {how}, "
                f"{count} {'binary' if count == 1 else 'binaries'}, "
                f"{size_mb:.1f} MB in {result.directory}",
                soft_wrap=True,  # a path cut in two cannot be copied
            )
    elapsed = time.monotonic() - started
    if output == "json":
        summary = {"components": [r.to_json() for r in results], "elapsed_s": round(elapsed, 2)}
        click.echo(json.dumps(summary, indent=2))
    else:
        noun = "component" if len(results) == 1 else "components"
        _console().print(f"{len(results)} {noun} in {elapsed:.1f} s")


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@_name_option
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str, host: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside HOST, e.g. `pikube lab exec client -- ping node01`."""
    the_lab = Lab(name)
    the_lab.topology.host(host)
    the_lab.require_up()
    argv = the_lab.command(host, list(command))
    sys.stdout.flush()
    try:
        os.execvpe(argv[0], argv, the_lab.environment())
    except OSError as exc:
        raise PikubeError(f"cannot run {argv[0]}: {exc.strerror}") from exc


@lab.command()
@click.option("--name", "-n", default="demo", show_default=True, help="Lab name for the demo.")
@click.option("--keep", is_flag=True, help="Leave the lab up afterwards.")
@click.option(
    "--mode",
    type=click.Choice(["l2", "bgp"]),
    default="l2",
    show_default=True,
    help="l2: ARP/NDP failover (the seed); bgp: FRR learns the IP from every node (ECMP + BFD).",
)
def demo(name: str, keep: bool, mode: str) -> None:
    """The seed's story, for real: kubectl applies MetalLB's objects and nginx's Service,
    pikube gives it .230 and publishes it, then the owner dies. --keep leaves the lab up to
    explore with kubectl (`pikube lab kubeconfig -n NAME`).

    With --mode bgp: the router (FRR) learns the service IP from node01-03 over BGP, the client
    gets nginx through it, then node01 dies and BFD takes it out of the route.
    """
    if mode == "bgp":
        _bgp_demo(name, keep)
        return

    from pikube.lab.network.probe import host_of_mac  # noqa: PLC0415
    from pikube.lab.services import demo as story  # noqa: PLC0415

    console = _console()
    the_lab = Lab(name)
    hosts = the_lab.topology.hosts

    def arp_line(entry: object) -> str:
        mac = getattr(entry, "mac", None)
        host = host_of_mac(hosts, mac)
        owner = f"[bold]{host.name}[/bold]'s eth0" if host else "no host"
        return f"{story.VIP} at {mac or '(incomplete)'} \\[ether] on eth0  -> {owner}"

    console.print(
        "[bold]pikube lab demo[/bold]: the seed's cluster on a virtual LAN (router, PC, master, "
        "node01-03 as network namespaces)"
    )
    ok = False
    try:
        report = the_lab.up()
        probes = reachability(the_lab, "client")
        failed = [p for p in probes if not p.ok]
        console.print(
            f"[1] the LAN is up in {report.elapsed_s:.2f} s; client -> every host by ping, "
            "ping -6, arping, ndisc6: "
            + (f"[red]{len(failed)} of {len(probes)} failed[/red]" if failed
               else f"all {len(probes)} answered")
        )  # fmt: skip
        balancer, applied, published = story.publish(the_lab)
        console.print(
            f"[2] client: kubectl apply: pikube's CRDs, the seed's IPAddressPool "
            f"({DEFAULT_POOL_FIRST}-{DEFAULT_POOL_LAST}) and L2Advertisement, the nginx "
            f"Deployment and its LoadBalancer Service; pikube lb controller on master, pikube "
            f"lb speaker on {', '.join(balancer.nodes)}; nginx (1 replica) on {published.backend}"
        )
        console.print("    client: kubectl get svc nginx")
        for line in applied.service_line.splitlines():
            console.print(f"      {escape(line)}")
        page = "the nginx welcome page" if published.welcome_page else "[red]not nginx[/red]"
        console.print(
            f"[3] client: curl http://{story.VIP}/ -> {published.http_status}, {page} "
            f"({published.http_ms:.0f} ms)"
        )
        console.print(f"    client: arp -a  ->  {arp_line(published.neighbour)}")
        console.print(
            f"[4] {published.owner} crashes: its speaker is killed (SIGKILL) and its cable "
            "pulled (eth0 down)"
        )
        failover = story.crash_owner(the_lab, balancer, published.owner)
        console.print(
            f"    client: no answer from {story.VIP} for [bold]{failover.outage_ms:.0f} ms[/bold] "
            f"({failover.failed_probes} failed probes, one every 10 ms); "
            f"new owner: [bold]{failover.new_owner}[/bold]"
        )
        console.print(f"    client: arp -a  ->  {arp_line(failover.neighbour)}")
        console.print("    client: kubectl get servicel2statuses -A")
        for line in story.l2_statuses(balancer, failover.new_owner).splitlines():
            console.print(f"      {escape(line)}")
        console.print(
            "    (the seed: MetalLB takes about 10 s to move the IP; compare implementations "
            "with `pikube bench failover`)"
        )
        ok = (
            not failed
            and published.welcome_page
            and failover.new_owner not in ("?", published.owner)
        )
    finally:
        if keep:
            console.print(
                f"lab {name!r} left up: `pikube lab status -n {name}`; kubectl: `pikube lab "
                f"exec -n {name} client -- kubectl --kubeconfig $(pikube lab kubeconfig -n "
                f"{name}) get svc`"
            )
        else:
            down_started = time.monotonic()
            the_lab.down()
            console.print(f"lab {name!r} torn down in {time.monotonic() - down_started:.2f} s")
    if not ok:
        sys.exit(1)


def _bgp_demo(name: str, keep: bool) -> None:
    from pikube.lab.services.bgp import VIP4  # noqa: PLC0415
    from pikube.lab.services.bgp_demo import BACKEND, BgpDemo  # noqa: PLC0415

    console = _console()
    the_lab = Lab(name)
    console.print(
        "[bold]pikube lab demo --mode bgp[/bold]: the router runs FRR; pikube lb bgp-speaker "
        "on node01-03 announces the service IP; the router spreads traffic over them (ECMP)"
    )
    ok = False
    story = BgpDemo(the_lab)
    try:
        report = the_lab.up()
        console.print(f"[1] the LAN is up in {report.elapsed_s:.2f} s")
        published = story.publish()
        console.print(
            f"[2] BGPPeer router (AS 64496 <- AS 64497, BFD 100 ms x 3), pool 203.0.113.0/24, "
            f"Service default/nginx at {VIP4}, nginx on {BACKEND}; the router's table:"
        )
        console.print(escape(published.table), highlight=False)
        console.print(f"    router: ip route  ->  {escape(published.kernel_route)}")
        page = "the nginx welcome page" if published.welcome_page else "[red]not nginx[/red]"
        console.print(
            f"[3] client (routes 203.0.113.0/24 via the router): curl http://{VIP4}/ -> "
            f"{published.http_status}, {page} ({published.http_ms:.0f} ms)"
        )
        console.print("[4] node01 crashes: its speaker is killed (SIGKILL) and its cable pulled")
        failure = story.crash("node01")
        console.print(
            f"    the router dropped node01 from the route after "
            f"[bold]{failure.withdrawal_ms:.0f} ms[/bold] (BFD); its table now:"
        )
        console.print(escape(failure.table), highlight=False)
        console.print(f"    router: ip route  ->  {escape(failure.kernel_route)}")
        console.print(f"    client: curl http://{VIP4}/ -> {failure.http_status}")
        ok = (
            published.http_status == 200
            and published.welcome_page
            and len(published.next_hops) == 3
            and "198.51.100.21" not in failure.next_hops
            and failure.http_status == 200
        )
    finally:
        story.close()
        if keep:
            console.print(f"lab {name!r} left up: `pikube lab status -n {name}`")
        else:
            down_started = time.monotonic()
            the_lab.down()
            console.print(f"lab {name!r} torn down in {time.monotonic() - down_started:.2f} s")
    if not ok:
        sys.exit(1)


@lab.command(name="cluster-spec")
@_name_option
def cluster_spec(name: str) -> None:
    """Print a cluster.yaml for the lab's SSH hosts (master + node01-03)."""
    from pikube.lab.hosts import sshhosts  # noqa: PLC0415
    from pikube.lab.lab import Lab  # noqa: PLC0415

    the_lab = Lab(name)
    the_lab.require_up()
    if not sshhosts.has_ssh_hosts(the_lab):
        raise PikubeError(
            f"lab {name!r} has no SSH hosts: start it with `{lab_command(name, 'up', '--ssh')}`"
        )
    click.echo(sshhosts.cluster_spec_yaml(the_lab), nl=False)


def _print_hosts(st: LabStatus) -> None:
    table = Table("host", "role", "IPv4", "IPv6", "MAC", "namespace", box=None)
    for h in st.hosts:
        table.add_row(
            h.host.name,
            h.host.role.value,
            str(h.host.ipv4),
            str(h.host.ipv6),
            h.host.mac,
            h.namespace if h.present else f"{h.namespace} (missing)",
        )
    _console().print(table)


def _print_probes(probes: list[Probe]) -> None:
    table = Table("host", *PROBE_KINDS, box=None)
    by_target: dict[str, dict[str, Probe]] = {}
    for p in probes:
        by_target.setdefault(p.target, {})[p.kind] = p
    for target, kinds in by_target.items():
        cells = []
        for kind in PROBE_KINDS:
            p = kinds[kind]
            cells.append(p.detail if p.ok else f"[red]FAILED: {p.detail}[/red]")
        table.add_row(target, *cells)
    _console().print(table)


def _status_json(st: LabStatus) -> dict[str, object]:
    return {
        "lab": st.lab,
        "exists": st.exists,
        "complete": st.complete,
        "hosts": {
            h.host.name: {
                "role": h.host.role.value,
                "namespace": h.namespace,
                "present": h.present,
                "ipv4": str(h.host.ipv4),
                "ipv6": str(h.host.ipv6),
                "mac": h.host.mac,
                "addresses": list(h.addresses),
            }
            for h in st.hosts
        },
        "processes": [{**p.record.to_json(), "running": p.running} for p in st.processes],
    }
