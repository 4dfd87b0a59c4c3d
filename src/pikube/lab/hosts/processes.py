"""The lab's process supervisor: start a program inside a lab host, wait until it is ready, stop it.

There is no systemd in the lab (nor on the machines pikube is tested on), so daemons such as
speakers, routers, nginx and sshd are started here. Every process gets `PIKUBE_LAB=<lab>` in its
environment; that marker, together with the namespace it runs in, lets `pikube lab down` find
and stop everything a lab started, even when the process that started it was killed.

A process is identified by its PID *and* its start time (field 22 of /proc/PID/stat), so a
recycled PID is never mistaken for, or signalled as, one of ours.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pikube.errors import PikubeError

LAB_ENV = "PIKUBE_LAB"
_POLL_S = 0.01


@dataclass(frozen=True)
class ProcessRecord:
    """A process the lab started; stored in the lab's state file."""

    name: str
    host: str
    pid: int
    start_ticks: int
    argv: tuple[str, ...]
    log_path: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "argv": list(self.argv),
            "log_path": self.log_path,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            argv=tuple(str(a) for a in data["argv"]),
            log_path=str(data["log_path"]),
        )


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses; split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it does not exist."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_running(pid: int, ticks: int | None = None) -> bool:
    """True if the PID is alive (not a zombie) and, when given, started at `ticks`."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return ticks is None or int(fields[19]) == ticks


def marked_pids(lab: str) -> list[int]:
    """Live processes whose environment carries PIKUBE_LAB=<lab>."""
    marker = f"{LAB_ENV}={lab}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0") and is_running(int(entry.name)):
            found.append(int(entry.name))
    return found


class Readiness(Protocol):
    """A condition that says a started process is ready to serve."""

    def __call__(self, record: ProcessRecord) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class TcpListening:
    """Ready once a TCP socket listens on `port` in the process's network namespace."""

    port: int

    def __call__(self, record: ProcessRecord) -> bool:
        # /proc/PID/net/* shows the sockets of the PID's network namespace.
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{record.pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                local, state = fields[1], fields[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == self.port:
                    return True
        return False

    def describe(self) -> str:
        return f"a TCP listener on port {self.port}"


@dataclass(frozen=True)
class LogMatches:
    """Ready once the process's log matches a regular expression."""

    pattern: str

    def __call__(self, record: ProcessRecord) -> bool:
        try:
            text = Path(record.log_path).read_text(errors="replace")
        except OSError:
            return False
        return re.search(self.pattern, text, re.MULTILINE) is not None

    def describe(self) -> str:
        return f"a log line matching {self.pattern!r}"


@dataclass(frozen=True)
class FileExists:
    path: str

    def __call__(self, record: ProcessRecord) -> bool:  # noqa: ARG002 (the protocol's signature)
        return os.path.exists(self.path)

    def describe(self) -> str:
        return f"the file {self.path}"


def log_tail(record: ProcessRecord, lines: int = 15) -> str:
    try:
        text = Path(record.log_path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Supervisor:
    """Starts and stops processes in lab namespaces; reaps the ones it started itself."""

    lab: str
    log_dir: Path
    on_start: Callable[[ProcessRecord], None] = lambda _record: None
    on_stop: Callable[[ProcessRecord], None] = lambda _record: None
    _children: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self,
        host: str,
        namespace: str,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        ready: Readiness | None = None,
        ready_timeout_s: float = 10.0,
        cwd: str | None = None,
    ) -> ProcessRecord:
        """Start `argv` in the namespace; return once `ready` holds (or the process is up).

        Raises PikubeError, naming the program and quoting its log, if it cannot be found,
        exits early, or is not ready in time (it is stopped in the last two cases).
        """
        if not argv:
            raise ValueError("empty argv")
        if shutil.which(argv[0]) is None:
            raise PikubeError(f"cannot start {name} on {host}: program {argv[0]!r} not found")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{host}-{name}.log"
        full_env = {**os.environ, **(env or {}), LAB_ENV: self.lab}
        with open(log_path, "ab") as log:
            # `ip netns exec` execs the program, so the PID we get is the program's own; it
            # also mounts a /sys that shows the namespace's interfaces.
            popen = subprocess.Popen(
                ["ip", "netns", "exec", namespace, *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        ticks = start_ticks(popen.pid)
        record = ProcessRecord(
            name=name,
            host=host,
            pid=popen.pid,
            start_ticks=ticks if ticks is not None else 0,
            argv=tuple(argv),
            log_path=str(log_path),
        )
        self._children[popen.pid] = popen
        self.on_start(record)
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if popen.poll() is not None:
                self._forget(record)
                raise PikubeError(
                    f"{name} on {host} exited with status {popen.returncode} while starting; "
                    f"its log ({log_path}) ends with:\n{log_tail(record)}"
                )
            if ready is None or ready(record):
                return record
            if time.monotonic() > deadline:
                self.stop(record)
                what = ready.describe()
                raise PikubeError(
                    f"{name} on {host} was not ready after {ready_timeout_s:g} s "
                    f"(waited for {what}); its log ({log_path}) ends with:\n{log_tail(record)}"
                )
            time.sleep(_POLL_S)

    def signal(self, record: ProcessRecord, sig: int, *, group: bool = False) -> bool:
        """Send a signal if the process is still the one we started; False if it is gone."""
        if not is_running(record.pid, record.start_ticks):
            return False
        try:
            if group:
                os.killpg(record.pid, sig)
            else:
                os.kill(record.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait(self, record: ProcessRecord, timeout_s: float) -> int | None:
        """Wait for the process to exit; its exit status if it was our child, else None.

        Raises TimeoutError if it is still running after `timeout_s`.
        """
        popen = self._children.get(record.pid)
        if popen is not None:
            try:
                status = popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                raise TimeoutError(f"{record.name} on {record.host} still running") from exc
            self._forget(record)
            return status
        deadline = time.monotonic() + timeout_s
        while is_running(record.pid, record.start_ticks):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{record.name} on {record.host} still running")
            time.sleep(_POLL_S)
        self._forget(record)
        return None

    def stop(self, record: ProcessRecord, timeout_s: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole process group after `timeout_s`; wait for exit."""
        self.signal(record, signal.SIGTERM)
        try:
            return self.wait(record, timeout_s)
        except TimeoutError:
            self.signal(record, signal.SIGKILL, group=True)
            return self.wait(record, 5.0)

    def reap(self) -> None:
        """Collect the exit status of children that have exited (no callbacks)."""
        for pid, popen in list(self._children.items()):
            if popen.poll() is not None:
                del self._children[pid]

    def _forget(self, record: ProcessRecord) -> None:
        self._children.pop(record.pid, None)
        self.on_stop(record)


def kill_all(pids: Iterable[int], timeout_s: float = 3.0) -> list[int]:
    """SIGTERM the PIDs, SIGKILL those left after `timeout_s`; return the ones that were alive."""
    alive = {pid: start_ticks(pid) for pid in pids if is_running(pid)}
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(is_running(p, t) for p, t in alive.items()):
        time.sleep(_POLL_S)
    for pid, ticks in alive.items():
        if is_running(pid, ticks):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(is_running(p, t) for p, t in alive.items()):
        time.sleep(_POLL_S)
    return list(alive)
