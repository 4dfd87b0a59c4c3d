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
    from pikube.cluster.bootstrap import ClusterReport
    from pikube.cluster.doctor import DoctorReport
    from pikube.cluster.plan import Plan
    from pikube.cluster.spec import ClusterSpec
    from pikube.cluster.ssh import NewHostKey
    from pikube.cluster.stages import ClusterPlan
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
    the_plan, cluster_plan = _run(_plan(spec), "interrupted (plan changes nothing)")
    unused = not_yet_used(spec)
    if output == "json":
        data = the_plan.to_json()
        if cluster_plan is not None:
            data["cluster"] = cluster_plan.to_json()
        data["not_yet_used"] = {field: NOT_YET_USED[field] for field in unused}
        click.echo(json.dumps(data, indent=2))
    else:
        _print_plan(the_plan)
        if cluster_plan is not None:
            _print_cluster_plan(cluster_plan)
        if unused:
            _say(
                click.style("note:", fg="yellow")
                + f" not yet used by the builder, so they change nothing: {', '.join(unused)} "
                "(kubeadm init, flannel, the load balancer and the demo app come later)"
            )
    if the_plan.errors:
        sys.exit(1)


async def _plan(spec: ClusterSpec) -> tuple[Plan, ClusterPlan | None]:
    from pikube.cluster.session import Session  # noqa: PLC0415

    async with Session(spec, _report_new_key) as session:
        the_plan, _facts = await session.plan()
        cluster_plan = None
        if spec.cluster.bootstrap:
            from pikube.cluster.bootstrap import plan_cluster  # noqa: PLC0415

            cluster_plan, _kube = await plan_cluster(session, _host_errors(the_plan))
    return the_plan, cluster_plan


def _host_errors(the_plan: Plan) -> dict[str, str]:
    return {h.node: h.error for h in the_plan.hosts if h.error is not None}


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

    Prepares the hosts, then (cluster.bootstrap: true) kubeadm init, flannel, the joins, the
    load balancer and nginx, and checks that nginx answers HTTP 200.

    With `-o json`, stdout is only the report (per node: state, changes applied, commands
    run); the plan, the question and the progress go to stderr."""
    from pikube.cluster.session import default_log_path  # noqa: PLC0415
    from pikube.cluster.spec import load_spec  # noqa: PLC0415

    spec = load_spec(spec_path)
    path = Path(log_path) if log_path else default_log_path(spec)
    as_json = output == "json"
    report, cluster_report = _run(
        _apply(spec, yes, path, as_json),
        "stopped waiting: the commands already started finish on their nodes; "
        "apply again to continue from where each node is",
    )
    if as_json:
        data = report.to_json()
        if cluster_report is not None:
            data["cluster"] = cluster_report.to_json()
            data["changes_applied"] = report.changes_applied + len(cluster_report.done)
        click.echo(json.dumps(data, indent=2))
    else:
        _print_report(report, cluster_report, spec_path)
    if report.interrupted or (cluster_report is not None and cluster_report.interrupted):
        sys.exit(130)
    if not report.ok or (cluster_report is not None and not cluster_report.ok):
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


async def _apply(
    spec: ClusterSpec, yes: bool, log_path: Path, as_json: bool
) -> tuple[ApplyReport, ClusterReport | None]:
    from pikube.cluster.apply import apply_plan  # noqa: PLC0415
    from pikube.cluster.session import CommandLog, Session  # noqa: PLC0415

    stop = asyncio.Event()
    async with Session(spec, _report_new_key, CommandLog(log_path)) as session:
        the_plan, _facts = await session.plan()
        cluster_plan = None
        if spec.cluster.bootstrap:
            from pikube.cluster.bootstrap import plan_cluster  # noqa: PLC0415

            cluster_plan, _kube = await plan_cluster(session, _host_errors(the_plan))
        cluster_steps = len(cluster_plan.steps) if cluster_plan is not None else 0
        if the_plan.change_count or cluster_steps:
            _print_plan(the_plan, err=as_json)
            if cluster_plan is not None:
                _print_cluster_plan(cluster_plan, err=as_json)
            if not yes:
                if not sys.stdin.isatty():
                    raise InvalidInput("apply asks before changing anything: pass --yes")
                if not click.confirm("apply these changes?", default=False, err=as_json):
                    raise PikubeError("nothing changed (not confirmed)")
        live = sys.stdout.isatty() and not as_json
        view = _ProgressView((h.node for h in the_plan.hosts), live=live, to_stderr=as_json)
        _stop_on_ctrl_c(stop, view)

        async def both() -> tuple[ApplyReport, ClusterReport | None]:
            report = await apply_plan(session, the_plan, view, stop)
            if cluster_plan is None or stop.is_set():
                return report, None
            from pikube.cluster.bootstrap import run_cluster  # noqa: PLC0415

            not_ready = {
                h.node: f"host preparation: {h.state.value}"
                for h in report.hosts
                if h.state.value not in ("done", "unchanged")
            }
            return report, await run_cluster(session, _without(cluster_plan, not_ready), view, stop)

        if view.live:
            from rich.live import Live  # noqa: PLC0415 (only on a terminal)

            with Live(get_renderable=view.table, refresh_per_second=8, transient=False):
                return await both()
        return await both()


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


@cluster.command()
@_spec_option
@click.option("--merge", is_flag=True, help="Merge into FILE (default: kubectl's config).")
@click.option(
    "-o",
    "--output-file",
    "out",
    type=click.Path(dir_okay=False),
    help="Write here (mode 0600, atomically, the old file kept as FILE.TIME.bak); "
    "default: print, or with --merge $KUBECONFIG's first file or ~/.kube/config.",
)
@click.option(
    "--user",
    "client",
    help="A named credential for this person instead of the cluster's admin.conf "
    "(kubeadm kubeconfig user --client-name NAME, bound to --role).",
)
@click.option(
    "--role",
    default="cluster-admin",
    show_default=True,
    help="The ClusterRole a --user credential is bound to (e.g. view, edit).",
)
def kubeconfig(spec_path: str, merge: bool, out: str | None, client: str | None, role: str) -> None:
    """Fetch the cluster's credentials from the control plane, named after the cluster.

    Without --user this is kubeadm's admin.conf: whoever holds it owns the cluster, and it
    cannot be revoked short of renewing the cluster's certificates. With --user NAME the
    control plane issues a certificate for NAME alone, bound to --role by a
    ClusterRoleBinding you can delete to revoke it."""
    from pikube.cluster import kubeconfig as kc  # noqa: PLC0415
    from pikube.cluster.spec import load_spec  # noqa: PLC0415

    spec = load_spec(spec_path)
    text = _run(_fetch_kubeconfig(spec, client, role), "interrupted (nothing written)")
    name = spec.cluster.name
    user = f"{client}@{name}" if client else name
    fresh = kc.rename(kc.load(text, "the control plane's kubeconfig"), name, user)
    if not merge and out is None:
        click.echo(kc.dump(fresh), nl=False)
        return
    target = Path(out).expanduser() if out else kc.default_path()
    if merge and target.exists():
        existing = kc.load(target.read_text(), str(target))
        result = kc.merge(existing, fresh)
    else:
        result = fresh
    backup = kc.write_private(target, kc.dump(result))
    kept = f" (the old file is {backup})" if backup else ""
    _say(f"wrote {target}: context {name!r} (user {user!r}){kept}", err=True)


async def _fetch_kubeconfig(spec: ClusterSpec, client: str | None, role: str) -> str:
    import shlex  # noqa: PLC0415

    from pikube.cluster import kubeadm, ssh  # noqa: PLC0415
    from pikube.cluster.session import targets  # noqa: PLC0415
    from pikube.cluster.stages import KUBECTL  # noqa: PLC0415

    plane = kubeadm.control_plane(spec).name
    target = next(t for t in targets(spec) if t.node == plane)
    conn = await ssh.connect(target, ssh.KnownHosts(spec.known_hosts), _report_new_key)
    try:
        if client is None:
            result = await conn.run(f"cat {kubeadm.ADMIN_CONF}", timeout_s=30.0)
            what = kubeadm.ADMIN_CONF
        else:
            who = shlex.quote(client)
            binding = shlex.quote(f"pikube:user:{client}")
            command = (
                f"kubeadm kubeconfig user --config {kubeadm.INIT_CONFIG} --client-name {who} "
                f"--validity-period 8760h && {KUBECTL} create clusterrolebinding {binding} "
                f"--clusterrole={shlex.quote(role)} --user={who} --dry-run=client -o yaml | "
                f"{KUBECTL} apply -f - >/dev/null"
            )
            result = await conn.run(command, timeout_s=60.0)
            what = f"kubeadm kubeconfig user --client-name {client}"
    finally:
        await conn.close()
    if not result.ok:
        tail = result.stderr.strip().splitlines()
        raise PikubeError(
            f"{plane}: {what} failed: {tail[-1] if tail else 'no output'} "
            "(is the cluster built? `pikube cluster apply`)"
        )
    return result.stdout


@cluster.command()
@_spec_option
@click.option("--node", "nodes", multiple=True, help="Reset only this node (repeatable).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), help="The command log.")
def reset(spec_path: str, nodes: tuple[str, ...], yes: bool, log_path: str | None) -> None:
    """Take Kubernetes off the nodes: kubeadm reset and what it leaves behind (CNI
    configuration, flannel's links, kube-proxy's and flannel's iptables rules). A worker
    reset alone is first drained and deleted from the cluster. The host preparation stays;
    `apply` builds the cluster again."""
    from pikube.cluster.session import default_log_path  # noqa: PLC0415
    from pikube.cluster.spec import load_spec  # noqa: PLC0415

    spec = load_spec(spec_path)
    chosen = [spec.node(n).name for n in nodes] if nodes else [n.name for n in spec.nodes]
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("reset asks before destroying anything: pass --yes")
        question = f"reset Kubernetes on {', '.join(chosen)} (their pods and data are lost)?"
        if not click.confirm(question, default=False):
            raise PikubeError("nothing changed (not confirmed)")
    path = Path(log_path) if log_path else default_log_path(spec)
    failed = _run(_reset(spec, chosen, path), "interrupted: run reset again to finish")
    for node, why in failed.items():
        _say(click.style(f"{node}: {why}", fg="red"))
    _say(f"reset {len(chosen) - len(failed)} of {len(chosen)} nodes; commands logged in {path}")
    if failed:
        sys.exit(1)


async def _reset(spec: ClusterSpec, chosen: list[str], log_path: Path) -> dict[str, str]:
    from pikube.cluster import kubeadm  # noqa: PLC0415
    from pikube.cluster.session import CommandLog, Session  # noqa: PLC0415
    from pikube.cluster.stages import drain_commands, reset_commands  # noqa: PLC0415

    failed: dict[str, str] = {}
    plane = kubeadm.control_plane(spec).name
    async with Session(spec, _report_new_key, CommandLog(log_path)) as session:
        failed.update({n: e for n, e in session.errors.items() if n in chosen})

        async def run(node: str, change: str, commands: tuple[str, ...]) -> bool:
            for command in commands:
                started = time.monotonic()
                result = await session.connections[node].run(
                    command, timeout_s=600.0, survive_disconnect=True
                )
                session.log.record(node, change, result, time.monotonic() - started)
                if not result.ok:
                    tail = result.stderr.strip().splitlines()
                    failed[node] = f"`{command[:60]}` failed: {tail[-1] if tail else ''}"
                    return False
            return True

        if plane not in chosen and plane in session.connections:
            for node in chosen:  # workers alone: leave the cluster cleanly first
                if node in session.connections:
                    drain = tuple(
                        c + " --ignore-not-found" if " delete node " in c else c
                        for c in drain_commands(node)
                    )
                    await run(plane, "drain", (drain[0] + " || true", drain[1]))
        workers = [n for n in chosen if n != plane and n in session.connections]
        await asyncio.gather(*(run(n, "reset", reset_commands()) for n in workers))
        if plane in chosen and plane in session.connections:
            await run(plane, "reset", reset_commands())
    return failed


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
