"""`pikube lb ...`: the MetalLB-compatible load balancer's commands. Parsing and printing only."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pikube.lb.config import load_manifests
from pikube.lb.ipam import AllocationResult, allocate


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
def allocate_command(paths: tuple[str, ...], output: str, lb_class: str | None) -> None:
    """Plan which IPs MetalLB-style allocation gives each LoadBalancer service (offline).

    Reads IPAddressPools, Services and Namespaces from manifests. Services are processed in
    this order: those already holding IPs (status.loadBalancer.ingress) first, then oldest
    first (metadata.creationTimestamp), then by namespace/name. Exits 0 when the input is
    valid, even if some services get no IP (they are listed with the reason); exits 2 when
    the input is not (bad YAML, an invalid pool), naming the file and the document.
    """
    result = allocate(load_manifests(paths), load_balancer_class=lb_class)
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _print_table(result)


def _print_table(result: AllocationResult) -> None:
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
