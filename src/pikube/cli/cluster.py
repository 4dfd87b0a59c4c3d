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
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pikube.cli.cluster_view import (
    _print_cluster_plan,
    _print_doctor,
    _print_plan,
    _print_report,
    _ProgressView,
    _say,
    _without,
)
from pikube.errors import InvalidInput, PikubeError

if TYPE_CHECKING:
    from pikube.cluster.apply import ApplyReport
    from pikube.cluster.bootstrap import ClusterReport
    from pikube.cluster.doctor import DoctorReport
    from pikube.cluster.plan import Plan
    from pikube.cluster.spec import ClusterSpec
    from pikube.cluster.ssh import NewHostKey
    from pikube.cluster.stages import ClusterPlan

T = TypeVar("T")


def _run(main: Coroutine[Any, Any, T], interrupted: str) -> T:
    """asyncio.run, with Ctrl-C (or a cancelled main task) as one line and exit status 130."""
    try:
        return asyncio.run(main)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise PikubeError(interrupted, exit_code=130) from None


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
    the spec that change nothing under its settings (e.g. the add-ons with cluster.bootstrap:
    false), and why."""
    from pikube.cluster.spec import NOT_YET_USED, load_spec, not_yet_used, without_effect  # noqa: PLC0415

    spec = load_spec(spec_path)
    the_plan, cluster_plan = _run(_plan(spec), "interrupted (plan changes nothing)")
    unused = without_effect(spec)
    if output == "json":
        data = the_plan.to_json()
        if cluster_plan is not None:
            data["cluster"] = cluster_plan.to_json()
        data["not_yet_used"] = {field: NOT_YET_USED[field] for field in not_yet_used(spec)}
        data["without_effect"] = unused
        click.echo(json.dumps(data, indent=2))
    else:
        _print_plan(the_plan)
        if cluster_plan is not None:
            _print_cluster_plan(cluster_plan)
        for field, why in unused.items():
            _say(click.style("note:", fg="yellow") + f" {field} changes nothing: {why}")
    if the_plan.errors:
        sys.exit(1)


async def _plan(spec: ClusterSpec) -> tuple[Plan, ClusterPlan | None]:
    from pikube.cluster.session import Session  # noqa: PLC0415

    async with Session(spec, _report_new_key, extra_facts=_kube_facts(spec)) as session:
        if not spec.cluster.bootstrap:
            the_plan, _facts = await session.plan()
            return the_plan, None
        from pikube.cluster.bootstrap import plan_all  # noqa: PLC0415

        the_plan, cluster_plan, _view = await plan_all(session)
    return the_plan, cluster_plan


def _kube_facts(spec: ClusterSpec) -> str:
    """kubeadm's traces, read with the host facts (one round trip per node) when the spec
    builds the cluster."""
    if not spec.cluster.bootstrap:
        return ""
    from pikube.cluster.kubeadm import kube_facts_script  # noqa: PLC0415

    return kube_facts_script()


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
    log = CommandLog(log_path)
    async with Session(spec, _report_new_key, log, extra_facts=_kube_facts(spec)) as session:
        cluster_plan = api_view = None
        if spec.cluster.bootstrap:
            from pikube.cluster.bootstrap import plan_all  # noqa: PLC0415

            the_plan, cluster_plan, api_view = await plan_all(session)
        else:
            the_plan, _facts = await session.plan()
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
            # Nothing touched on any host: the API's view read for the plan still holds.
            untouched = all(h.state.value == "unchanged" for h in report.hosts)
            return report, await run_cluster(
                session,
                _without(cluster_plan, not_ready),
                view,
                stop,
                observed=api_view if untouched else None,
            )

        if view.live:
            from rich.live import Live  # noqa: PLC0415 (only on a terminal)

            with Live(get_renderable=view.table, refresh_per_second=8, transient=False):
                return await both()
        return await both()


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
    names = [n.name for n in spec.nodes]
    for wanted in nodes:
        if wanted not in names:
            raise InvalidInput(
                f"--node {wanted}: {spec_path} has no such node (its nodes: {', '.join(names)})"
            )
    chosen = list(dict.fromkeys(nodes)) if nodes else names
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
