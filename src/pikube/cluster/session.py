"""Connections to a cluster's nodes: the `Session` that plan, doctor and apply share, and the
log of the commands run through it.

Rules of this module: it connects, gathers facts and plans; it changes nothing on a node
(`pikube.cluster.apply` does, through a session).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pikube.cluster import ssh
from pikube.cluster.facts import HostFacts, complete, facts_script, parse_facts
from pikube.cluster.plan import Plan, make_plan
from pikube.cluster.spec import ClusterSpec
from pikube.errors import PikubeError


class CommandLog:
    """Appends one JSON line per command run on a node: when, where, what, how it ended.

    Commands that only read (gathering facts, a reboot's boot_id) carry "read_only": true and
    the change they serve ("facts" for gathering); the others are exactly the plan's commands.
    No secrets exist in commands: keys are never sent, only paths are read locally."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(
        self,
        node: str,
        change: str,
        result: ssh.CommandResult,
        elapsed_s: float,
        *,
        read_only: bool = False,
    ) -> None:
        if self.path is None:
            return
        entry: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "node": node,
            "change": change,
            "command": result.command,
            "exit_status": result.exit_status,
            "duration_s": round(elapsed_s, 3),
        }
        if read_only:
            entry["read_only"] = True
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
    """Connections to every node of the spec, opened concurrently, closed on exit.

    `extra_facts` is a read-only script run after the facts script in the same round trip
    (the cluster stages' look at kubeadm's traces); its node's whole output is kept in
    `extra_output` for the caller to parse."""

    spec: ClusterSpec
    on_new_host_key: Callable[[ssh.NewHostKey], None] = lambda _event: None
    log: CommandLog = field(default_factory=lambda: CommandLog(None))
    connections: dict[str, ssh.Connection] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    extra_facts: str = ""
    extra_output: dict[str, str] = field(default_factory=dict)

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
        started = time.monotonic()
        script = facts_script() + self.extra_facts
        result = await self.connections[node].run(script, timeout_s=60.0)
        self.log.record(node, "facts", result, time.monotonic() - started, read_only=True)
        self.extra_output[node] = result.stdout
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
