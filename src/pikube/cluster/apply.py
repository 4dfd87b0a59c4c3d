"""Carrying out a plan: every node on its own, concurrently, with a log of every command.

Owns: the session of connections (opened concurrently, closed at the end), gathering facts
(one round trip per node), running each node's planned commands in order and nothing else,
the reboot dance (send it, see the host go, wait for it to come back, reconnect), verifying
the result from fresh runtime facts, and the command log (JSON lines). A node that fails or
is unreachable stops only itself. No lockstep: a node never waits for another.

Interrupting: when `stop` is set (the CLI's first Ctrl-C), every node finishes the command it
is running and starts no other. Each command is started so that it runs to its end on the node
even if the builder dies or loses the node (SIGKILL, a second Ctrl-C, a pulled cable): an
apt-get install is never cut in the middle by the builder.

Resuming: nothing is remembered between runs; the next run gathers facts and plans afresh, and
every operation is idempotent (and waits for, or repairs, an apt/dpkg run of the interrupted
one), so an apply cut short (Ctrl-C, a lost host, a power cut, a reboot) carries on where the
host actually is.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pikube.cluster import ssh
from pikube.cluster.facts import HostFacts
from pikube.cluster.operations import Change, changes_for
from pikube.cluster.plan import HostPlan, Plan
from pikube.cluster.session import Session
from pikube.cluster.spec import ClusterSpec
from pikube.errors import PikubeError

REBOOT_TIMEOUT_S = 300.0
COMMAND_TIMEOUT_S = 900.0
BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


class _Stopped(Exception):
    """The apply was asked to stop (Ctrl-C) before this node's next command."""


class HostState(enum.Enum):
    WAITING = "waiting"
    APPLYING = "applying"
    REBOOTING = "rebooting"
    VERIFYING = "verifying"
    DONE = "done"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    INTERRUPTED = "interrupted"


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
    def interrupted(self) -> bool:
        return any(h.state is HostState.INTERRUPTED for h in self.hosts)

    @property
    def changes_applied(self) -> int:
        return sum(len(h.applied) for h in self.hosts)

    def to_json(self) -> dict[str, object]:
        """`pikube cluster apply -o json`: per node its end state, the changes carried out and
        the commands run."""
        return {
            "ok": self.ok,
            "interrupted": self.interrupted,
            "changes_applied": self.changes_applied,
            "elapsed_s": round(self.elapsed_s, 3),
            "log": str(self.log_path) if self.log_path else None,
            "hosts": {
                h.node: {
                    "state": h.state.value,
                    "applied": list(h.applied),
                    "commands": list(h.commands),
                    "message": h.message,
                }
                for h in self.hosts
            },
        }


ProgressCallback = Callable[[Progress], None]


async def apply_plan(
    session: Session,
    plan: Plan,
    on_progress: ProgressCallback = lambda _p: None,
    stop: asyncio.Event | None = None,
) -> ApplyReport:
    """Run every node's planned commands, each node independently; then verify. Once `stop`
    is set, each node finishes its running command and starts no other."""
    started = time.monotonic()
    stop = stop or asyncio.Event()
    results = await asyncio.gather(
        *(_apply_host(session, host, on_progress, stop) for host in plan.hosts)
    )
    return ApplyReport(
        hosts=tuple(results), log_path=session.log.path, elapsed_s=time.monotonic() - started
    )


async def _apply_host(
    session: Session,
    host: HostPlan,
    on_progress: ProgressCallback,
    stop: asyncio.Event,
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
            if stop.is_set():
                raise _Stopped
            state = HostState.REBOOTING if change.reboot else HostState.APPLYING
            on_progress(Progress(node, state, step, steps, change.summary))
            await _run_change(session, node, change, stop, commands)
            applied.append(change.id)
        on_progress(Progress(node, HostState.VERIFYING, steps, steps, "checking runtime state"))
        facts = await session.facts(node)
        problem = _verify(session.spec, facts)
    except _Stopped:
        message = (
            f"stopped after {len(applied)} of {steps} changes (nothing half done); "
            "apply again to continue"
        )
        on_progress(Progress(node, HostState.INTERRUPTED, len(applied), steps, message))
        return HostResult(node, HostState.INTERRUPTED, tuple(applied), tuple(commands), message)
    except ssh.UnreachableError as exc:
        message = f"{exc.message}; apply again once it is back (it continues from there)"
        on_progress(Progress(node, HostState.UNREACHABLE, len(applied), steps, message))
        return HostResult(node, HostState.UNREACHABLE, tuple(applied), tuple(commands), message)
    except PikubeError as exc:
        on_progress(Progress(node, HostState.FAILED, len(applied), steps, exc.message))
        return HostResult(node, HostState.FAILED, tuple(applied), tuple(commands), exc.message)
    if problem:
        on_progress(Progress(node, HostState.FAILED, steps, steps, problem))
        return HostResult(node, HostState.FAILED, tuple(applied), tuple(commands), problem)
    on_progress(Progress(node, HostState.DONE, steps, steps, f"{steps} changes"))
    return HostResult(node, HostState.DONE, tuple(applied), tuple(commands))


async def _run_change(
    session: Session,
    node: str,
    change: Change,
    stop: asyncio.Event,
    ran: list[str],
) -> None:
    """Run a change's commands in order (appending each to `ran` as it starts)."""
    for command in change.commands:
        if stop.is_set():
            raise _Stopped
        ran.append(command)
        started = time.monotonic()
        if change.reboot:
            await _reboot(session, node, command, change.id, stop)
            continue
        conn = session.connections[node]
        result = await conn.run(command, timeout_s=COMMAND_TIMEOUT_S, survive_disconnect=True)
        session.log.record(node, change.id, result, time.monotonic() - started)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise PikubeError(
                f"{node}: `{_short(command)}` ({change.id}) failed with status "
                f"{result.exit_status}: {detail[-1] if detail else 'no output'}"
            )


async def _boot_id(session: Session, node: str, conn: ssh.Connection) -> str:
    started = time.monotonic()
    result = await conn.run(BOOT_ID, timeout_s=30.0)
    session.log.record(node, "reboot", result, time.monotonic() - started, read_only=True)
    return result.stdout.strip()


async def _reboot(
    session: Session,
    node: str,
    command: str,
    change: str,
    stop: asyncio.Event,
) -> None:
    """Reboot, see the host go, and reconnect to its next boot (a new boot_id): until then,
    sshd of the old boot may still accept a connection."""
    conn = session.connections[node]
    before = await _boot_id(session, node, conn)
    started = time.monotonic()
    try:
        result = await conn.run(command, timeout_s=60.0)
    except ssh.UnreachableError:  # the connection went down with the host: expected
        result = ssh.CommandResult(command, 0, "", "")
    session.log.record(node, change, result, time.monotonic() - started)
    if not result.ok:
        raise PikubeError(f"{node}: `{command}` failed: {result.stderr.strip()[-300:]}")
    back = asyncio.ensure_future(_next_boot(session, node, conn, before))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({back, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not back.done():
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await back
    if not back.done() or back.cancelled():
        raise _Stopped  # the host reboots without us; the next run reads its facts
    back.result()


async def _next_boot(session: Session, node: str, old: ssh.Connection, before: str) -> None:
    deadline = time.monotonic() + REBOOT_TIMEOUT_S
    # The host may keep the old connection open until the reboot kills sshd: go on at the
    # timeout. Anything else is a bug and must fail the node, not vanish with this task.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(old.wait_closed(), timeout=REBOOT_TIMEOUT_S)
    while True:
        conn = await session.reconnect(node, max(deadline - time.monotonic(), 1.0))
        with contextlib.suppress(ssh.UnreachableError):
            if await _boot_id(session, node, conn) != before:
                return
        await conn.close()
        if time.monotonic() > deadline:
            raise PikubeError(f"{node}: did not reboot within {REBOOT_TIMEOUT_S:g} s")
        await asyncio.sleep(0.25)


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
