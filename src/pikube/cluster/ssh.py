"""SSH to the nodes (asyncssh): connect, verify host keys, run commands. The builder's only I/O.

Owns: the known-hosts policy (trust on first contact: the key is recorded and its fingerprint
reported; afterwards a different key stops the run for that host), `sudo -n` for non-root
users, and a cap on concurrent channels per connection (sshd's MaxSessions defaults to 10).
It must not decide anything about what to run. Private keys are only ever handed to asyncssh
by path; their content is never read into messages or logs.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from pikube.errors import PikubeError

MAX_CHANNELS_PER_CONNECTION = 8
CONNECT_TIMEOUT_S = 10.0
# A node that stops answering (cable pulled, hung, powered off without closing its TCP
# connections) is given up after about KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT_MAX seconds.
KEEPALIVE_INTERVAL_S = 5.0
KEEPALIVE_COUNT_MAX = 3
# Run first by commands that must finish even if the builder goes away (killed, or its
# connection lost): without a terminal sshd signals nothing, and with SIGPIPE ignored the
# command's writes to the closed channel fail harmlessly instead of killing it (apt, dpkg).
_SURVIVE_DISCONNECT = "trap '' PIPE\n"


@dataclass(frozen=True)
class Target:
    """Where a node is and how to log in (the key is a path; its content never leaves here)."""

    node: str
    address: str
    port: int
    user: str
    key_path: str


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True)
class NewHostKey:
    node: str
    address: str
    algorithm: str
    fingerprint: str


class UnreachableError(PikubeError):
    """The node could not be reached or logged into."""


class HostKeyChangedError(PikubeError):
    """The node presented a host key other than the recorded one."""


def _host_pattern(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


class KnownHosts:
    """An OpenSSH-format known_hosts file that pikube reads and appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def keys_for(self, address: str, port: int) -> list[asyncssh.SSHKey]:
        pattern = _host_pattern(address, port)
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        keys = []
        for line in lines:
            fields = line.split()
            if len(fields) >= 3 and pattern in fields[0].split(","):
                try:
                    keys.append(asyncssh.import_public_key(f"{fields[1]} {fields[2]}"))
                except (asyncssh.KeyImportError, ValueError):
                    continue
        return keys

    def record(self, address: str, port: int, key: asyncssh.SSHKey) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = f"{_host_pattern(address, port)} {key.export_public_key().decode().strip()}\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with os.fdopen(fd, "a") as fh:
            fh.write(line)


class _Client(asyncssh.SSHClient):
    """Accepts an unknown host key only when none is recorded (trust on first contact)."""

    def __init__(self, has_record: bool) -> None:
        self.has_record = has_record
        self.offered: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self,
        host: str,  # noqa: ARG002 (asyncssh's signature)
        addr: str,  # noqa: ARG002
        port: int,  # noqa: ARG002
        key: asyncssh.SSHKey,
    ) -> bool:
        self.offered = key
        return not self.has_record


class Connection:
    """One SSH connection to a node; commands run through a per-connection channel cap."""

    def __init__(self, target: Target, conn: asyncssh.SSHClientConnection) -> None:
        self.target = target
        self._conn = conn
        self._channels = asyncio.Semaphore(MAX_CHANNELS_PER_CONNECTION)

    def _wrap(self, command: str) -> str:
        if self.target.user == "root":
            return command
        return f"sudo -n sh -c {shlex.quote(command)}"

    async def run(
        self,
        command: str,
        *,
        input_text: str = "",
        timeout_s: float = 600.0,
        survive_disconnect: bool = False,
    ) -> CommandResult:
        """Run a command; its stdin is `input_text` then end-of-file, so nothing ever waits
        for an answer on the terminal. With `survive_disconnect`, the command runs to its end
        on the node even if this connection is lost meanwhile."""
        remote = (_SURVIVE_DISCONNECT + command) if survive_disconnect else command
        async with self._channels:
            try:
                result = await self._conn.run(
                    self._wrap(remote), input=input_text, check=False, timeout=timeout_s
                )
            except asyncssh.TimeoutError as exc:
                raise PikubeError(
                    f"{self.target.node}: a command did not finish within {timeout_s:g} s"
                ) from exc
            except (OSError, asyncssh.Error) as exc:
                raise UnreachableError(
                    f"{self.target.node}: lost the SSH connection to {self.target.address}: "
                    f"{_reason(exc)}"
                ) from exc
        if result.exit_status is None and result.exit_signal is None and self._conn.is_closed():
            # The channel ended without a status because the connection did (keepalive).
            raise UnreachableError(
                f"{self.target.node}: lost the SSH connection to {self.target.address} "
                "(no answer to keepalives)"
            )
        status = result.exit_status if result.exit_status is not None else 255
        return CommandResult(command, status, _text(result.stdout), _text(result.stderr))

    async def wait_closed(self) -> None:
        await self._conn.wait_closed()

    async def close(self, timeout_s: float = 2.0) -> None:
        """Close politely; a node that does not answer (cable pulled) is dropped after
        `timeout_s` instead of holding the builder until TCP gives up."""
        self._conn.close()
        try:
            await asyncio.wait_for(self._conn.wait_closed(), timeout_s)
        except TimeoutError:
            self._conn.abort()


def _text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return str(data or "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()  # "connection refused", "no route to host"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


async def connect(
    target: Target,
    known_hosts: KnownHosts,
    on_new_host_key: Callable[[NewHostKey], None] = lambda _event: None,
    *,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> Connection:
    """Connect and log in; raises UnreachableError or HostKeyChangedError for this node."""
    if not Path(target.key_path).is_file():
        raise PikubeError(
            f"{target.node}: the SSH key file {target.key_path} does not exist "
            "(set ssh.key in the spec)"
        )
    recorded = known_hosts.keys_for(target.address, target.port)
    client = _Client(has_record=bool(recorded))
    try:
        conn = await asyncssh.connect(
            target.address,
            port=target.port,
            username=target.user,
            client_keys=[target.key_path],
            known_hosts=(recorded, [], []),
            client_factory=lambda: client,
            agent_path=None,
            config=None,
            connect_timeout=timeout_s,
            login_timeout=timeout_s,
            keepalive_interval=KEEPALIVE_INTERVAL_S,
            keepalive_count_max=KEEPALIVE_COUNT_MAX,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        offered = client.offered
        if recorded and offered is not None:
            was = ", ".join(k.get_fingerprint() for k in recorded)
            raise HostKeyChangedError(
                f"{target.node}: the host key of {target.address} changed: it offers "
                f"{offered.get_fingerprint()}, {known_hosts.path} has {was}. If this Pi was "
                f"reinstalled, remove its line from {known_hosts.path} and run again"
            ) from exc
        raise UnreachableError(f"{target.node}: host key not verifiable: {exc.reason}") from exc
    except asyncssh.PermissionDenied as exc:
        raise UnreachableError(
            f"{target.node}: {target.user}@{target.address} refused the key "
            f"{target.key_path} ({exc.reason})"
        ) from exc
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise UnreachableError(
            f"{target.node}: cannot connect to {target.address}:{target.port}: {_reason(exc)}"
        ) from exc
    if not recorded and client.offered is not None:
        known_hosts.record(target.address, target.port, client.offered)
        on_new_host_key(
            NewHostKey(
                node=target.node,
                address=target.address,
                algorithm=client.offered.get_algorithm(),
                fingerprint=client.offered.get_fingerprint(),
            )
        )
    return Connection(target, conn)
