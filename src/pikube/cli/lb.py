"""`pikube lb ...`: the MetalLB-compatible load balancer's commands. Parsing and printing only.

Heavy imports (rich, the allocator) stay inside the commands: `pikube lb speaker` is a daemon
that must start fast and stay small.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pikube.errors import InvalidInput, PikubeError
from pikube.helpers import METRICS_PORT

if TYPE_CHECKING:
    from pikube.lb.ipam import AllocationResult
    from pikube.lb.sources import Source


F = TypeVar("F", bound=Callable[..., Any])


def _metrics_options(command: F) -> F:
    """--metrics-port and --metrics-host, as every pikube daemon takes them."""
    command = click.option("--metrics-host", default="0.0.0.0", show_default=True)(command)
    return click.option(
        "--metrics-port",
        type=int,
        default=METRICS_PORT,
        show_default=True,
        help="Prometheus /metrics and /status port; 0 disables.",
    )(command)


_log_level_option = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)


# --node, --source, --kubeconfig, --namespace and --lb-class, as both speakers take them.
_SOURCE_OPTIONS = (
    click.option(
        "--node",
        default=lambda: os.environ.get("NODE_NAME", ""),
        show_default="$NODE_NAME",
        help="This node's name, as in its Node object.",
    ),
    click.option(
        "--source",
        "source_spec",
        required=True,
        help="Desired state: kube (the Kubernetes API) or dir:PATH (a directory of YAML).",
    ),
    click.option(
        "--kubeconfig",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        envvar="KUBECONFIG",
        help="With --source kube: the API server and credentials (default: the Pod's account).",
    ),
    click.option(
        "--namespace",
        default="metallb-system",
        show_default=True,
        envvar="METALLB_NAMESPACE",
        help="With --source kube: where MetalLB's objects and its key Secret live.",
    ),
    click.option(
        "--lb-class",
        default=None,
        metavar="CLASS",
        help="With --source kube: announce only Services of this loadBalancerClass.",
    ),
)


def _source_options(command: F) -> F:
    """The options of `_SOURCE_OPTIONS`, in that order."""
    for option in reversed(_SOURCE_OPTIONS):
        command = option(command)
    return command


def _source_directory(spec: str) -> Path:
    """The directory of `--source dir:PATH`; any other spec but kube is a mistake."""
    kind, _, value = spec.partition(":")
    if kind != "dir" or not value:
        raise InvalidInput(
            f"--source {spec!r}: use kube (the Kubernetes API) or dir:PATH (a directory of "
            "Kubernetes YAML)"
        )
    directory = Path(value)
    if not directory.is_dir():
        raise InvalidInput(f"--source {spec}: {directory} is not a directory")
    return directory


def _check_kubeconfig(kubeconfig: Path | None) -> None:
    if kubeconfig is not None and not kubeconfig.is_file():
        raise InvalidInput(f"--kubeconfig {kubeconfig}: no such file")


@click.group()
def lb() -> None:
    """The load balancer: MetalLB's configuration, pikube's allocator and speakers."""


@lb.command(name="allocate")
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    metavar="PATH",
    help="A YAML file (several documents allowed), a directory of *.yaml/*.yml, or - for "
    "stdin. Repeatable.",
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.option(
    "--lb-class",
    default=None,
    metavar="CLASS",
    help="Handle services of this loadBalancerClass (default: services that set none).",
)
@click.option(
    "--pod-cidr",
    metavar="CIDR[,CIDR]",
    help="The cluster's pod network (kubeadm's podSubnet): refuse pools that overlap it.",
)
@click.option(
    "--service-cidr",
    metavar="CIDR[,CIDR]",
    help="The cluster's service network (kubeadm's serviceSubnet): refuse pools that overlap it.",
)
def allocate_command(
    paths: tuple[str, ...],
    output: str,
    lb_class: str | None,
    pod_cidr: str | None,
    service_cidr: str | None,
) -> None:
    """Plan which IPs MetalLB-style allocation gives each LoadBalancer service (offline).

    Reads IPAddressPools, Services and Namespaces from manifests. Services are processed in
    this order: those already holding IPs (status.loadBalancer.ingress) first, then oldest
    first (metadata.creationTimestamp), then by namespace/name. Exits 0 when the input is
    valid, even if some services get no IP (they are listed with the reason); exits 2 when
    the input is not (bad YAML, an invalid pool, a pool inside --pod-cidr or --service-cidr),
    naming the file and the document.
    """
    from pikube.lb import overlaps  # noqa: PLC0415
    from pikube.lb.config import load_manifests  # noqa: PLC0415 (the speaker must stay lean)
    from pikube.lb.ipam import allocate  # noqa: PLC0415

    networks = {}
    for option, what, text in (
        ("--pod-cidr", "pod CIDR", pod_cidr),
        ("--service-cidr", "service CIDR", service_cidr),
    ):
        if text is not None:
            try:
                networks[f"{what} ({option})"] = overlaps.parse_networks(text)
            except ValueError as exc:
                raise InvalidInput(f"{option}: {exc}") from None
    resources = load_manifests(paths)
    problems = overlaps.pools_overlapping(resources.pools, networks)
    if problems:
        more = len(problems) - 1
        raise InvalidInput(
            problems[0]
            + (f" (and {more} more overlap{'s' * (more > 1)})" if more else "")
            + ": LoadBalancer IPs must be outside the cluster's own networks"
        )
    result = allocate(resources, load_balancer_class=lb_class)
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _print_table(result)


def _print_table(result: AllocationResult) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    # Off a terminal rich assumes 80 columns and would cut the reasons short.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    if not result.allocations and not result.errors:
        console.print("no LoadBalancer services to allocate")
        return
    table = Table("service", "IPs", "pool", "error", box=None)
    for key, allocation in sorted(result.allocations.items()):
        table.add_row(key, ", ".join(str(ip) for ip in allocation.ips), allocation.pool, "")
    for key, why in sorted(result.errors.items()):
        table.add_row(key, "-", "-", f"[red]{escape(why)}[/red]")
    console.print(table)


def _read_key(path: Path) -> bytes:
    from pikube.inputs import KEY_LIMIT_BYTES, InputBudget  # noqa: PLC0415
    from pikube.lb.membership.protocol import load_key  # noqa: PLC0415

    try:
        raw = InputBudget(
            KEY_LIMIT_BYTES, "a key file", "it holds one key: `head -c 32 /dev/urandom | base64`"
        ).read_bytes(path)
    except OSError as exc:
        raise InvalidInput(
            f"key file {path}: {exc.strerror}; every speaker needs the same shared key, e.g. "
            f"`head -c 32 /dev/urandom | base64 > {path}`"
        ) from exc
    try:
        return load_key(raw)
    except ValueError as exc:
        raise InvalidInput(f"key file {path}: {exc}") from exc


def _source(spec: str) -> Source:
    from pikube.lb.sources.manifests import ManifestDirectory  # noqa: PLC0415

    return ManifestDirectory(_source_directory(spec))


def _kube_source(
    node: str,
    kubeconfig: Path | None,
    namespace: str,
    lb_class: str | None,
    interfaces: tuple[str, ...],
) -> Source:
    from pikube.lb.sources.kube import KubeSource  # noqa: PLC0415

    return KubeSource(
        node=node,
        kubeconfig=kubeconfig,
        namespace=namespace,
        load_balancer_class=lb_class or None,
        interfaces=interfaces,
    )


def _secret_key(kubeconfig: Path | None, namespace: str) -> bytes:
    import asyncio  # noqa: PLC0415

    from pikube.lb.membership.protocol import load_key  # noqa: PLC0415
    from pikube.lb.sources.kube import read_secret_key  # noqa: PLC0415

    raw = asyncio.run(read_secret_key(kubeconfig, namespace, "memberlist", "secretkey"))
    try:
        return load_key(raw)
    except ValueError as exc:
        raise InvalidInput(f"secret {namespace}/memberlist: {exc}") from exc


@lb.command()
@_source_options
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    help="Announce on this interface (repeatable). Default: every interface MetalLB would use.",
)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    default=None,
    help="The cluster's shared heartbeat key (same file on every node). With --source kube "
    "the default is the Secret NAMESPACE/memberlist (key secretkey), as MetalLB's.",
)
@_metrics_options
@click.option(
    "--interval-ms",
    type=click.IntRange(5, 10000),
    default=60,
    show_default=True,
    help="Heartbeat interval.",
)
@click.option(
    "--multiplier",
    type=click.IntRange(2, 255),
    default=3,
    show_default=True,
    help="Missed heartbeats before a peer is declared dead.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=7950,
    show_default=True,
    help="UDP port of the heartbeats.",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=Path("/var/lib/pikube"),
    show_default=True,
    help="Where the speaker keeps its epoch across restarts.",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@_log_level_option
@click.option(
    "--handover-bridge-s",
    type=click.FloatRange(0, 3600),
    default=60.0,
    show_default=True,
    help="After a planned handover, pass the old owner's connections on to it for this long "
    "(nftables); 0 disables.",
)
@click.option(
    "--realtime/--no-realtime",
    default=True,
    show_default=True,
    help="Run at a real-time scheduling priority (as keepalived does).",
)
def speaker(
    node: str,
    source_spec: str,
    kubeconfig: Path | None,
    namespace: str,
    lb_class: str | None,
    interfaces: tuple[str, ...],
    key_file: Path | None,
    metrics_port: int,
    metrics_host: str,
    interval_ms: int,
    multiplier: int,
    port: int,
    state_dir: Path,
    log_format: str,
    log_level: str,
    handover_bridge_s: float,
    realtime: bool,
) -> None:
    """Run the layer-2 speaker: answer ARP/NDP for this node's service IPs, fail over fast."""
    from pikube.lb import speaker as daemon  # noqa: PLC0415

    if not node:
        raise InvalidInput("--node is required (or set NODE_NAME)")
    if source_spec == "kube":
        _check_kubeconfig(kubeconfig)
        key = _read_key(key_file) if key_file is not None else _secret_key(kubeconfig, namespace)
        source = _kube_source(node, kubeconfig, namespace, lb_class, interfaces)
    else:
        source = _source(source_spec)
        if key_file is None:
            raise InvalidInput("--key-file is required with --source dir:PATH")
        key = _read_key(key_file)
    _setup_logging(log_format, log_level)
    settings = daemon.SpeakerSettings(
        node=node,
        key=key,
        interfaces=interfaces,
        interval_ms=interval_ms,
        multiplier=multiplier,
        port=port,
        metrics_host=metrics_host,
        metrics_port=metrics_port or None,
        state_dir=state_dir / node,
        realtime=realtime,
        bridge_s=handover_bridge_s,
    )
    daemon.run_forever(settings, source)


@lb.command(name="bgp-speaker")
@_source_options
@click.option(
    "--router-id",
    default=None,
    help="BGP router ID for peers without spec.routerID. Default: each session's local IPv4.",
)
@_metrics_options
@click.option(
    "--connect-retry-s",
    type=click.FloatRange(0.05, 600),
    default=1.0,
    show_default=True,
    help="First wait before connecting again; it doubles up to 30 s.",
)
@_log_level_option
def bgp_speaker(
    node: str,
    source_spec: str,
    kubeconfig: Path | None,
    namespace: str,
    lb_class: str | None,
    router_id: str | None,
    metrics_port: int,
    metrics_host: str,
    connect_retry_s: float,
    log_level: str,
) -> None:
    """Run the BGP speaker: announce this node's service IPs to the BGPPeers that select it."""
    import ipaddress  # noqa: PLC0415

    from pikube.lb.bgp import speaker as daemon  # noqa: PLC0415

    if not node:
        raise InvalidInput("--node is required (or set NODE_NAME)")
    source = None
    directory = Path()
    if source_spec == "kube":
        from pikube.lb.sources.kube_bgp import KubeBgpSource  # noqa: PLC0415

        _check_kubeconfig(kubeconfig)
        source = KubeBgpSource(
            node=node,
            kubeconfig=kubeconfig,
            namespace=namespace,
            load_balancer_class=lb_class or None,
        )
    else:
        directory = _source_directory(source_spec)
    rid = None
    if router_id is not None:
        try:
            rid = ipaddress.IPv4Address(router_id)
        except ValueError:
            raise InvalidInput(
                f"--router-id {router_id!r}: a router ID is written as an IPv4 address"
            ) from None
    _setup_logging("text", log_level)
    try:
        daemon.run_forever(
            daemon.BgpSpeakerSettings(
                node=node,
                directory=directory,
                router_id=rid,
                metrics_host=metrics_host,
                metrics_port=metrics_port or None,
                connect_retry_s=connect_retry_s,
            ),
            source,
        )
    except OSError as exc:  # e.g. the metrics port is taken: it ran and failed (status 1)
        raise PikubeError(f"BGP speaker {node} stopped: {exc}") from None


def _setup_logging(log_format: str, log_level: str) -> None:
    from pikube.lb.speaker import JsonFormatter  # noqa: PLC0415

    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])


@lb.command()
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    envvar="KUBECONFIG",
    help="The API server and credentials (default: the Pod's service account).",
)
@click.option(
    "--namespace",
    default="metallb-system",
    show_default=True,
    envvar="METALLB_NAMESPACE",
    help="Where the IPAddressPools (and the speakers' key Secret) live.",
)
@click.option(
    "--lb-class",
    default=None,
    metavar="CLASS",
    help="Handle only Services of this spec.loadBalancerClass (default: those that set none).",
)
@_metrics_options
@click.option(
    "--leader-elect/--no-leader-elect",
    default=False,
    show_default=True,
    help="Run as one of several replicas: only the holder of a coordination.k8s.io Lease writes.",
)
@click.option(
    "--identity",
    default="",
    envvar="POD_NAME",
    help="This replica's name in the Lease (default: the host name).",
)
@click.option(
    "--lease-duration-s",
    type=click.FloatRange(1, 300),
    default=15.0,
    show_default=True,
    help="How long a silent leader keeps the Lease before a standby takes over.",
)
@click.option(
    "--webhook-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Serve the validating admission webhook for MetalLB's kinds on this HTTPS port "
    "(0: none), with its certificate kept in the Secret pikube-webhook-cert.",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@_log_level_option
def controller(
    kubeconfig: Path | None,
    namespace: str,
    lb_class: str | None,
    metrics_port: int,
    metrics_host: str,
    leader_elect: bool,
    identity: str,
    lease_duration_s: float,
    webhook_port: int,
    log_format: str,
    log_level: str,
) -> None:
    """Run the controller: give LoadBalancer Services IPs from the IPAddressPools, in their
    status (as MetalLB's controller does)."""
    import socket  # noqa: PLC0415

    from pikube.lb import controller as daemon  # noqa: PLC0415

    _check_kubeconfig(kubeconfig)
    _setup_logging(log_format, log_level)
    settings = daemon.ControllerSettings(
        kubeconfig=kubeconfig,
        namespace=namespace,
        load_balancer_class=lb_class or None,
        metrics_host=metrics_host,
        metrics_port=metrics_port or None,
        leader_elect=leader_elect,
        identity=identity or socket.gethostname(),
        lease_duration_s=lease_duration_s,
        webhook_port=webhook_port or None,
    )
    daemon.run_forever(settings)
