"""Carrying out a plan: every node on its own, concurrently, with a log of every command.

Owns: the session of connections (opened concurrently, closed at the end), gathering facts
(one round trip per node), running each node's planned commands in order and nothing else,
the reboot dance (send it, see the host go, wait for it to come back, reconnect), verifying
the result from fresh runtime facts, and the command log (JSON lines). A node that fails or
is unreachable stops only itself. No lockstep: a node never waits for another.

Resuming: nothing is remembered between runs; the next run gathers facts and plans afresh, and
every operation is idempotent, so an apply cut short (Ctrl-C, a lost host, a reboot) carries
on where the host actually is.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pikube.cluster import ssh
from pikube.cluster.facts import HostFacts, complete, facts_script, parse_facts
from pikube.cluster.operations import Change, changes_for
from pikube.cluster.plan import HostPlan, Plan, make_plan
from pikube.cluster.spec import ClusterSpec
from pikube.errors import PikubeError

REBOOT_TIMEOUT_S = 300.0
COMMAND_TIMEOUT_S = 900.0


class HostState(enum.Enum):
    WAITING = "waiting"
    APPLYING = "applying"
    REBOOTING = "rebooting"
    VERIFYING = "verifying"
    DONE = "done"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Progress:
    node: str
    state: HostState
    step: int = 0  # the change being applied, 1-based
    steps: int = 0
    detail: str = ""


@dataclass(frozen=True)
class HostResult:
    node: str
    state: HostState
    applied: tuple[str, ...] = ()  # ids of the changes carried out
    commands: tuple[str, ...] = ()  # the commands run, in order
    message: str = ""


@dataclass(frozen=True)
class ApplyReport:
    hosts: tuple[HostResult, ...]
    log_path: Path | None
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return all(h.state in (HostState.DONE, HostState.UNCHANGED) for h in self.hosts)

    @property
    def changes_applied(self) -> int:
        return sum(len(h.applied) for h in self.hosts)


class CommandLog:
    """Appends one JSON line per command: when, where, what, how it ended (no secrets exist
    in commands: keys are never sent, only paths are read locally)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, node: str, change: str, result: ssh.CommandResult, elapsed_s: float) -> None:
        if self.path is None:
            return
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "node": node,
            "change": change,
            "command": result.command,
            "exit_status": result.exit_status,
            "duration_s": round(elapsed_s, 3),
        }
        if not result.ok:
            entry["stderr"] = result.stderr[-2000:]
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


def default_log_path(spec: ClusterSpec) -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME", "~/.local/state")).expanduser()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return state / "pikube" / "logs" / f"apply-{spec.cluster.name}-{stamp}.jsonl"


def targets(spec: ClusterSpec) -> list[ssh.Target]:
    result = []
    for node in spec.nodes:
        user, key, port = spec.ssh_for(node)
        result.append(ssh.Target(node.name, node.address, port, user, key))
    return result


@dataclass
class Session:
    """Connections to every node of the spec, opened concurrently, closed on exit."""

    spec: ClusterSpec
    on_new_host_key: Callable[[ssh.NewHostKey], None] = lambda _event: None
    connections: dict[str, ssh.Connection] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.known_hosts = ssh.KnownHosts(self.spec.known_hosts)
        self.targets = {t.node: t for t in targets(self.spec)}

    async def __aenter__(self) -> Session:
        await asyncio.gather(*(self._open(t) for t in self.targets.values()))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.gather(
            *(c.close() for c in self.connections.values()), return_exceptions=True
        )

    async def _open(self, target: ssh.Target) -> None:
        try:
            self.connections[target.node] = await ssh.connect(
                target, self.known_hosts, self.on_new_host_key
            )
        except PikubeError as exc:
            self.errors[target.node] = exc.message

    async def reconnect(self, node: str, timeout_s: float) -> ssh.Connection:
        """Connect again (after a reboot), retrying until `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = await ssh.connect(
                    self.targets[node], self.known_hosts, self.on_new_host_key, timeout_s=5.0
                )
            except ssh.HostKeyChangedError:
                raise
            except ssh.UnreachableError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.25)
                continue
            self.connections[node] = conn
            return conn

    async def facts(self, node: str) -> HostFacts:
        result = await self.connections[node].run(facts_script(), timeout_s=60.0)
        if not complete(result.stdout):
            raise PikubeError(
                f"{node}: gathering facts stopped early (status {result.exit_status}): "
                f"{result.stderr.strip()[-300:]}"
            )
        return parse_facts(result.stdout)

    async def gather(self) -> tuple[dict[str, HostFacts], dict[str, str]]:
        """Facts of every reachable node (one round trip each); errors for the others."""
        facts: dict[str, HostFacts] = {}
        errors = dict(self.errors)

        async def one(node: str) -> None:
            try:
                facts[node] = await self.facts(node)
            except PikubeError as exc:
                errors[node] = exc.message

        await asyncio.gather(*(one(n) for n in self.connections if n not in errors))
        return facts, errors

    async def plan(self) -> tuple[Plan, dict[str, HostFacts]]:
        facts, errors = await self.gather()
        return make_plan(self.spec, facts, errors), facts


ProgressCallback = Callable[[Progress], None]


async def apply_plan(
    session: Session,
    plan: Plan,
    log: CommandLog,
    on_progress: ProgressCallback = lambda _p: None,
) -> ApplyReport:
    """Run every node's planned commands, each node independently; then verify."""
    started = time.monotonic()
    results = await asyncio.gather(
        *(_apply_host(session, host, log, on_progress) for host in plan.hosts)
    )
    return ApplyReport(
        hosts=tuple(results), log_path=log.path, elapsed_s=time.monotonic() - started
    )


async def _apply_host(
    session: Session, host: HostPlan, log: CommandLog, on_progress: ProgressCallback
) -> HostResult:
    node = host.node
    if host.error is not None:
        on_progress(Progress(node, HostState.UNREACHABLE, detail=host.error))
        return HostResult(node, HostState.UNREACHABLE, message=host.error)
    if not host.changes:
        on_progress(Progress(node, HostState.UNCHANGED))
        return HostResult(node, HostState.UNCHANGED)
    applied: list[str] = []
    commands: list[str] = []
    steps = len(host.changes)
    try:
        for step, change in enumerate(host.changes, start=1):
            state = HostState.REBOOTING if change.reboot else HostState.APPLYING
            on_progress(Progress(node, state, step, steps, change.summary))
            commands += await _run_change(session, node, change, log)
            applied.append(change.id)
        on_progress(Progress(node, HostState.VERIFYING, steps, steps, "checking runtime state"))
        facts = await session.facts(node)
        problem = _verify(session.spec, facts)
    except PikubeError as exc:
        on_progress(Progress(node, HostState.FAILED, len(applied), steps, exc.message))
        return HostResult(node, HostState.FAILED, tuple(applied), tuple(commands), exc.message)
    if problem:
        on_progress(Progress(node, HostState.FAILED, steps, steps, problem))
        return HostResult(node, HostState.FAILED, tuple(applied), tuple(commands), problem)
    on_progress(Progress(node, HostState.DONE, steps, steps, f"{steps} changes"))
    return HostResult(node, HostState.DONE, tuple(applied), tuple(commands))


async def _run_change(session: Session, node: str, change: Change, log: CommandLog) -> list[str]:
    conn = session.connections[node]
    ran = []
    for command in change.commands:
        started = time.monotonic()
        if change.reboot:
            await _reboot(session, node, command, log, change.id)
            ran.append(command)
            continue
        result = await conn.run(command, timeout_s=COMMAND_TIMEOUT_S)
        log.record(node, change.id, result, time.monotonic() - started)
        ran.append(command)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise PikubeError(
                f"{node}: `{_short(command)}` ({change.id}) failed with status "
                f"{result.exit_status}: {detail[-1] if detail else 'no output'}"
            )
    return ran


async def _reboot(session: Session, node: str, command: str, log: CommandLog, change: str) -> None:
    conn = session.connections[node]
    started = time.monotonic()
    try:
        result = await conn.run(command, timeout_s=60.0)
    except ssh.UnreachableError:  # the connection went down with the host: expected
        result = ssh.CommandResult(command, 0, "", "")
    log.record(node, change, result, time.monotonic() - started)
    if not result.ok:
        raise PikubeError(f"{node}: `{command}` failed: {result.stderr.strip()[-300:]}")
    # The host is going down: wait for the old connection to close, then for the new boot.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.wait_closed(), timeout=REBOOT_TIMEOUT_S)
    await session.reconnect(node, REBOOT_TIMEOUT_S)


def _verify(spec: ClusterSpec, facts: HostFacts) -> str:
    """What is still wrong, from runtime state, after the host's changes were applied."""
    remaining = changes_for(spec, facts)
    if remaining:
        return "not converged; still needed: " + ", ".join(c.id for c in remaining)
    if not facts.memory_cgroup:
        return (
            "the memory cgroup is still off although the kernel got "
            f"{' '.join(facts.proc_cmdline.split()[-3:])}: see `pikube cluster doctor`"
        )
    return ""


def _short(command: str) -> str:
    first = command.splitlines()[0]
    return first if len(first) <= 80 else first[:77] + "..."


def commands_of(results: Sequence[HostResult]) -> dict[str, tuple[str, ...]]:
    return {r.node: r.commands for r in results}
