"""How `pikube cluster ...` looks in a terminal: the plan, the live progress of `apply`, the
reports of apply and doctor, and `pikube lab up --ssh`'s summary. Printing only; the commands
are in cli/cluster.py and the decisions in pikube.cluster.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from pikube.cluster.apply import ApplyReport, Progress
    from pikube.cluster.bootstrap import ClusterReport
    from pikube.cluster.doctor import DoctorReport
    from pikube.cluster.plan import Plan
    from pikube.cluster.stages import ClusterPlan
    from pikube.lab.lab import Lab

T = TypeVar("T")


_STATE_STYLE = {
    "done": "green",
    "unchanged": "green",
    "failed": "red",
    "unreachable": "red",
    "interrupted": "yellow",
    "rebooting": "magenta",
}


_FINISHED = ("done", "unchanged", "failed", "unreachable", "interrupted")


def _console(err: bool = False) -> Console:
    from rich.console import Console  # noqa: PLC0415 (only for tables and live progress)

    return Console(highlight=False, stderr=err, width=None if sys.stdout.isatty() else 120)


def _say(text: str, err: bool = False) -> None:
    click.echo(text, err=err)


def _print_cluster_plan(cluster_plan: ClusterPlan, err: bool = False) -> None:
    """The cluster stages after host preparation: each step with its node and commands."""

    def _say(text: str) -> None:
        click.echo(text, err=err)

    steps = cluster_plan.steps
    _say(
        click.style("cluster", bold=True)
        + (f": {len(steps)} step{'s' * (len(steps) != 1)}" if steps else ": no changes")
    )
    for step in steps:
        tilde = click.style("~", fg="yellow")
        where = click.style(f"({step.node}: {step.id})", dim=True)
        _say(f"  {tilde} {step.summary}  {where}")
        if step.diff:
            for line in step.diff.splitlines():
                colour = "green" if line[:1] == "+" else "red" if line[:1] == "-" else None
                _say("      " + (click.style(line, fg=colour) if colour else line))
        for command in step.commands:
            if "<<'PIKUBE_EOF" in command:
                continue  # a file write: its diff is above
            stdin = f"  < {step.stdin.value}" if step.stdin.value != "none" else ""
            _say("      " + click.style("$", dim=True) + f" {command}{stdin}")
    for node, why in cluster_plan.blocked.items():
        _say(click.style(f"  ! {node}: {why}", fg="red"))
    for note in cluster_plan.notes:
        _say(click.style("note: ", fg="yellow") + note)


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


def _without(cluster_plan: ClusterPlan, nodes: dict[str, str]) -> ClusterPlan:
    """The cluster plan less the steps of nodes whose host preparation did not finish."""
    from dataclasses import replace  # noqa: PLC0415

    if not nodes:
        return cluster_plan
    return replace(
        cluster_plan,
        steps=tuple(s for s in cluster_plan.steps if s.node not in nodes),
        blocked={**cluster_plan.blocked, **nodes},
    )


def _print_report(
    report: ApplyReport, cluster_report: ClusterReport | None = None, spec_path: str = ""
) -> None:
    for host in report.hosts:
        colour = _STATE_STYLE.get(host.state.value, "yellow")
        detail = f": {host.message}" if host.message else ""
        state = click.style(host.state.value, fg=colour)
        _say(f"{host.node}: {state}, {len(host.applied)} changes{detail}")
    changes = report.changes_applied
    elapsed = report.elapsed_s
    if cluster_report is not None:
        changes += len(cluster_report.done)
        elapsed += cluster_report.elapsed_s
        for node, why in cluster_report.failed.items():
            _say(click.style(f"cluster: {node} failed: {why}", fg="red"))
        for node, why in cluster_report.skipped.items():
            _say(click.style(f"cluster: {node} skipped: {why}", fg="yellow"))
        if cluster_report.interrupted:
            _say(
                click.style("cluster: interrupted", fg="yellow")
                + " (each command started ran to its end); apply again to continue"
            )
        if cluster_report.url:
            _say(
                f"nginx answers HTTP {cluster_report.http_status} at {cluster_report.url}; "
                f"credentials: pikube cluster kubeconfig -f {spec_path} --merge"
            )
        if cluster_report.failed or cluster_report.skipped:
            _say("apply again once the nodes named above are fixed or back: it continues there")
    where = f"; commands logged in {report.log_path}" if report.log_path else ""
    _say(f"{changes} changes applied in {elapsed:.1f} s{where}")


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
    from pikube.lab.hosts import sshhosts  # noqa: PLC0415 (only for --ssh)
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
