"""`pikube cluster ...`: init, schema, plan, apply, doctor; and `pikube lab cluster-spec`.

Parsing and printing only: the decisions are in pikube.cluster. The spec is validated before
any connection is made. Start-up time matters (`plan` should answer in well under 2 s): the
builder's modules (pydantic, asyncssh: most of a second to import) are imported inside the
commands that need them, and rich only by the live progress of `apply` and the doctor's table;
everything else prints with click.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pikube.errors import InvalidInput, PikubeError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from pikube.cluster.apply import ApplyReport, Progress
    from pikube.cluster.doctor import DoctorReport
    from pikube.cluster.plan import Plan
    from pikube.cluster.spec import ClusterSpec
    from pikube.cluster.ssh import NewHostKey
    from pikube.lab.lab import Lab

T = TypeVar("T")


def _run(main: Coroutine[Any, Any, T], interrupted: str) -> T:
    """asyncio.run, with Ctrl-C (or a cancelled main task) as one line and exit status 130."""
    try:
        return asyncio.run(main)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise PikubeError(interrupted, exit_code=130) from None


def _console(err: bool = False) -> Console:
    from rich.console import Console  # noqa: PLC0415 (only for tables and live progress)

    return Console(highlight=False, stderr=err, width=None if sys.stdout.isatty() else 120)


def _say(text: str, err: bool = False) -> None:
    click.echo(text, err=err)


_spec_option = click.option(
    "-f",
    "--file",
    "spec_path",
    default="cluster.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The cluster spec.",
)
_output_option = click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)


@click.group()
def cluster() -> None:
    """The cluster builder: prepare Raspberry Pis for kubeadm from a declarative spec."""


@cluster.command()
@click.option("-f", "--file", "path", default="cluster.yaml", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(path: str, force: bool) -> None:
    """Write a commented spec of the seed's cluster (master + node01-03) and, next to it, its
    JSON Schema for editors; `-f -` prints the spec."""
    from pikube.cluster.spec import SCHEMA_FILE, SEED_SPEC, json_schema  # noqa: PLC0415

    if path == "-":
        click.echo(SEED_SPEC, nl=False)
        return
    target = Path(path)
    schema_path = target.parent / SCHEMA_FILE
    for existing in (target, schema_path):
        if existing.exists() and not force:
            raise InvalidInput(f"{existing} exists; use --force to overwrite it")
    target.write_text(SEED_SPEC)
    schema_path.write_text(json.dumps(json_schema(), indent=2) + "\n")
    _say(
        f"wrote {target} (and {schema_path}, for editors): edit the addresses, then "
        f"`pikube cluster plan -f {target}`"
    )


@cluster.command()
def schema() -> None:
    """Print the spec's JSON Schema (for editors; docs/cluster.schema.json is the same)."""
    from pikube.cluster.spec import json_schema  # noqa: PLC0415

    click.echo(json.dumps(json_schema(), indent=2))


def _report_new_key(event: NewHostKey) -> None:
    _say(
        f"{event.node}: first contact with {event.address}; recorded its host key "
        f"{event.algorithm} {event.fingerprint}",
        err=True,
    )


@cluster.command()
@_spec_option
@_output_option
def plan(spec_path: str, output: str) -> None:
    """Show every change apply would make, per node; change nothing. Also names the fields of
    the spec that the builder does not use yet."""
    from pikube.cluster.spec import NOT_YET_USED, load_spec, not_yet_used  # noqa: PLC0415

    spec = load_spec(spec_path)
    the_plan = _run(_plan(spec), "interrupted (plan changes nothing)")
    unused = not_yet_used(spec)
    if output == "json":
        data = the_plan.to_json()
        data["not_yet_used"] = {field: NOT_YET_USED[field] for field in unused}
        click.echo(json.dumps(data, indent=2))
    else:
        _print_plan(the_plan)
        if unused:
            _say(
                click.style("note:", fg="yellow")
                + f" not yet used by the builder, so they change nothing: {', '.join(unused)} "
                "(kubeadm init, flannel, the load balancer and the demo app come later)"
            )
    if the_plan.errors:
        sys.exit(1)


async def _plan(spec: ClusterSpec) -> Plan:
    from pikube.cluster.session import Session  # noqa: PLC0415

    async with Session(spec, _report_new_key) as session:
        the_plan, _facts = await session.plan()
    return the_plan


def _print_plan(the_plan: Plan, err: bool = False) -> None:
    from pikube.cluster.operations import Kind  # noqa: PLC0415

    def _say(text: str) -> None:
        click.echo(text, err=err)

    bold = click.style
    for host in the_plan.hosts:
        name = bold(host.node, bold=True)
        if host.error is not None:
            _say(f"{name}: " + click.style(f"no plan: {host.error}", fg="red"))
            continue
        count = len(host.changes)
        if not count:
            _say(f"{name}: no changes")
            continue
        _say(f"{name}: {count} change{'s' if count > 1 else ''}")
        for change in host.changes:
            tilde = click.style("~", fg="yellow")
            _say(f"  {tilde} {change.summary}  " + click.style(f"({change.id})", dim=True))
            if change.kind is Kind.FILE and change.diff:
                for line in change.diff.splitlines():
                    colour = "green" if line[:1] == "+" else "red" if line[:1] == "-" else None
                    _say("      " + (click.style(line, fg=colour) if colour else line))
            else:
                for command in change.commands:
                    _say("      " + click.style("$", dim=True) + f" {command}")
    total = the_plan.change_count
    _say(
        f"\n{total} change{'s' if total != 1 else ''} on "
        f"{sum(1 for h in the_plan.hosts if h.changes)} of {len(the_plan.hosts)} nodes"
        + (f"; {len(the_plan.errors)} unreachable" if the_plan.errors else "")
    )


_STATE_STYLE = {
    "done": "green",
    "unchanged": "green",
    "failed": "red",
    "unreachable": "red",
    "interrupted": "yellow",
    "rebooting": "magenta",
}


_FINISHED = ("done", "unchanged", "failed", "unreachable", "interrupted")


class _ProgressView:
    """A live table, one row per node, redrawn 8 times a second so the clocks run (plain
    lines when not on a terminal)."""

    def __init__(self, nodes: Iterable[str], live: bool, to_stderr: bool = False) -> None:
        from pikube.cluster.apply import HostState, Progress  # noqa: PLC0415

        self.rows: dict[str, Progress] = {n: Progress(n, HostState.WAITING) for n in nodes}
        self.started = time.monotonic()
        self.finished: dict[str, float] = {}
        self.live = live
        self.to_stderr = to_stderr  # progress lines, when stdout is for `-o json`
        self.caption = ""

    def notice(self, text: str) -> None:
        """A message under the live table (on stderr when there is no table)."""
        if self.live:
            self.caption = text
        else:
            click.echo(text, err=True)

    def table(self) -> Table:
        from rich.markup import escape  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        now = time.monotonic()
        table = Table("node", "state", "step", "elapsed", "doing", box=None)
        table.caption = escape(self.caption) or None
        table.caption_justify = "left"
        for node, p in self.rows.items():
            style = _STATE_STYLE.get(p.state.value, "yellow")
            step = f"{p.step}/{p.steps}" if p.steps else ""
            elapsed = f"{self.finished.get(node, now) - self.started:.1f} s"
            state = f"[{style}]{p.state.value}[/{style}]"
            table.add_row(node, state, step, elapsed, escape(p.detail))
        return table

    def __call__(self, progress: Progress) -> None:
        self.rows[progress.node] = progress
        if progress.state.value in _FINISHED:
            self.finished.setdefault(progress.node, time.monotonic())
        if not self.live:
            step = f" {progress.step}/{progress.steps}" if progress.steps else ""
            line = f"{progress.node}: {progress.state.value}{step} {progress.detail}".rstrip()
            click.echo(line, err=self.to_stderr)


@cluster.command()
@_spec_option
@_output_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False),
    help="The log of every command run, JSON lines "
    "[default: ~/.local/state/pikube/logs/apply-CLUSTER-TIME.jsonl].",
)
def apply(spec_path: str, output: str, yes: bool, log_path: str | None) -> None:
    """Carry out the plan on every node concurrently; a second apply changes nothing.

    With `-o json`, stdout is only the report (per node: state, changes applied, commands
    run); the plan, the question and the progress go to stderr."""
    from pikube.cluster.session import default_log_path  # noqa: PLC0415
    from pikube.cluster.spec import load_spec  # noqa: PLC0415

    spec = load_spec(spec_path)
    path = Path(log_path) if log_path else default_log_path(spec)
    as_json = output == "json"
    report = _run(
        _apply(spec, yes, path, as_json),
        "stopped waiting: the commands already started finish on their nodes; "
        "apply again to continue from where each node is",
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(report)
    if report.interrupted:
        sys.exit(130)
    if not report.ok:
        sys.exit(1)


def _stop_on_ctrl_c(stop: asyncio.Event, view: _ProgressView) -> None:
    """First Ctrl-C: every node finishes the command it is running, and starts no other.
    Second: stop waiting (the commands still finish on the nodes)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def interrupted() -> None:
        if stop.is_set():
            if task is not None:
                task.cancel()
            return
        stop.set()
        view.notice(
            "interrupted: each node finishes the command it is running, then stops "
            "(Ctrl-C again to stop waiting)"
        )

    loop.add_signal_handler(signal.SIGINT, interrupted)


async def _apply(spec: ClusterSpec, yes: bool, log_path: Path, as_json: bool) -> ApplyReport:
    from pikube.cluster.apply import apply_plan  # noqa: PLC0415
    from pikube.cluster.session import CommandLog, Session  # noqa: PLC0415

    stop = asyncio.Event()
    async with Session(spec, _report_new_key, CommandLog(log_path)) as session:
        the_plan, _facts = await session.plan()
        if the_plan.change_count:
            _print_plan(the_plan, err=as_json)
            if not yes:
                if not sys.stdin.isatty():
                    raise InvalidInput("apply asks before changing anything: pass --yes")
                if not click.confirm("apply these changes?", default=False, err=as_json):
                    raise PikubeError("nothing changed (not confirmed)")
        live = sys.stdout.isatty() and not as_json
        view = _ProgressView((h.node for h in the_plan.hosts), live=live, to_stderr=as_json)
        _stop_on_ctrl_c(stop, view)
        if view.live:
            from rich.live import Live  # noqa: PLC0415 (only on a terminal)

            with Live(get_renderable=view.table, refresh_per_second=8, transient=False):
                return await apply_plan(session, the_plan, view, stop)
        return await apply_plan(session, the_plan, view, stop)


def _print_report(report: ApplyReport) -> None:
    for host in report.hosts:
        colour = _STATE_STYLE.get(host.state.value, "yellow")
        detail = f": {host.message}" if host.message else ""
        state = click.style(host.state.value, fg=colour)
        _say(f"{host.node}: {state}, {len(host.applied)} changes{detail}")
    where = f"; commands logged in {report.log_path}" if report.log_path else ""
    _say(f"{report.changes_applied} changes applied in {report.elapsed_s:.1f} s{where}")


@cluster.command()
@_spec_option
@_output_option
def doctor(spec_path: str, output: str) -> None:
    """Read-only checks of every node for what breaks kubeadm on a Raspberry Pi."""
    from pikube.cluster.spec import load_spec  # noqa: PLC0415

    spec = load_spec(spec_path)
    report = _run(_doctor(spec), "interrupted (doctor changes nothing)")
    if output == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_doctor(report)
    if report.failed:
        sys.exit(1)


async def _doctor(spec: ClusterSpec) -> DoctorReport:
    from pikube.cluster import doctor as doctor_module  # noqa: PLC0415
    from pikube.cluster.session import Session  # noqa: PLC0415

    async with Session(spec, _report_new_key) as session:
        facts, errors = await session.gather()
    return doctor_module.diagnose(spec, facts, errors, local_clock_s=time.time())


def _print_doctor(report: DoctorReport) -> None:
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table("node", "check", "status", "what it means", "fix", box=None)
    styles = {"ok": "green", "warn": "yellow", "fail": "red"}
    for node, checks in report.hosts.items():
        for check in checks:
            status = check.status.value
            fix = check.fix + (" (apply does this)" if check.apply_fixes else "")
            table.add_row(
                node,
                check.id,
                f"[{styles[status]}]{status}[/{styles[status]}]",
                escape(check.message),
                escape(fix) if check.status.value != "ok" else "",
            )
    _console().print(table)


def print_ssh_hosts_up(the_lab: Lab, faults: tuple[str, ...]) -> None:
    """For `pikube lab up --ssh`: boot the SSH hosts and say how to use them."""
    from pikube.lab import sshhosts  # noqa: PLC0415 (only for --ssh)
    from pikube.lab.lab import lab_command  # noqa: PLC0415

    started = time.monotonic()
    hosts = sshhosts.up_ssh_hosts(the_lab, sshhosts.parse_faults(faults))
    _say(
        f"SSH hosts up in {time.monotonic() - started:.1f} s: "
        + ", ".join(
            f"{h.name} ({h.address}" + "".join(f"; {f.value}" for f in h.faults) + ")"
            for h in hosts
        )
    )
    _say(
        f"try the builder: {lab_command(the_lab.name, 'cluster-spec')} > cluster.yaml && "
        + lab_command(the_lab.name, "exec", "client", "--", "pikube cluster plan -f cluster.yaml")
    )
