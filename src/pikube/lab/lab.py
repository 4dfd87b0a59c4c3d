"""A lab: the seed's LAN built from network namespaces, and the processes running in it.

`Lab.up()` is idempotent and records what it will create before creating it; `Lab.down()`
removes every namespace (their veth ends go with them) and stops every process the lab
started, found by record, by the PIKUBE_LAB marker in their environment, and by namespace,
so it also cleans up after a `pikube` process that was killed half-way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pikube.errors import PikubeError
from pikube.lab import state
from pikube.lab.hosts.processes import (
    LAB_ENV,
    ProcessRecord,
    Readiness,
    Supervisor,
    is_running,
    kill_all,
    marked_pids,
)
from pikube.lab.network import netns
from pikube.lab.network.topology import (
    BRIDGE,
    HOST_INTERFACE,
    LAN_IPV4,
    LAN_IPV6,
    Host,
    Role,
    Topology,
)
from pikube.system import require_commands, require_root

DEFAULT_LAB = "pikube"


def lab_command(name: str, command: str, *rest: str) -> str:
    """The `pikube lab COMMAND ...` a message tells the user to run, with `--name NAME` when
    the lab is not the default one (a hint that drops it would act on another lab)."""
    named = () if name == DEFAULT_LAB else ("--name", name)
    return " ".join(("pikube", "lab", command, *named, *rest))


ETC_NETNS = Path("/etc/netns")

# Every host: only the owner of an address answers ARP for it, so a service IP is answered by
# pikube's speaker alone (the kube-proxy IPVS-mode "strictARP" setting, made the default here).
HOST_SYSCTLS = {
    "net.ipv4.conf.all.arp_ignore": "1",
    "net.ipv4.conf.all.arp_announce": "2",
    # Addresses are added with nodad; this makes link-local addresses usable at once too.
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.default.accept_ra": "0",
}
# The router routes, and Kubernetes nodes forward (kubeadm's preflight requires ip_forward=1).
FORWARDING_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}


@dataclass(frozen=True)
class UpReport:
    created: bool  # False when the lab already existed and nothing was missing
    elapsed_s: float


@dataclass(frozen=True)
class DownReport:
    existed: bool
    namespaces_removed: tuple[str, ...]
    processes_stopped: tuple[int, ...]


@dataclass(frozen=True)
class HostStatus:
    host: Host
    namespace: str
    present: bool
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class ProcessStatus:
    record: ProcessRecord
    running: bool


@dataclass(frozen=True)
class LabStatus:
    lab: str
    exists: bool
    complete: bool
    hosts: tuple[HostStatus, ...]
    processes: tuple[ProcessStatus, ...]


class Lab:
    """One named lab. Several can exist at once; their namespaces are prefixed pk-<name>-."""

    def __init__(self, name: str = DEFAULT_LAB) -> None:
        self.topology = Topology(name)
        self.name = name
        self.supervisor = Supervisor(
            lab=name,
            log_dir=state.lab_dir(name) / "logs",
            on_start=self._record_start,
            on_stop=self._record_stop,
        )

    # -- building and removing -------------------------------------------------------------

    def up(self) -> UpReport:
        require_root("pikube lab up")
        require_commands("ip")
        started = time.monotonic()
        topo = self.topology
        with state.locked(self.name):
            current = state.load(self.name)
            owned = set(current.namespaces) if current else set()
            foreign = [ns for ns in topo.namespaces if netns.exists(ns) and ns not in owned]
            if foreign:
                raise PikubeError(
                    f"lab name {self.name!r} is in use by something else: namespace "
                    f"{foreign[0]} exists but pikube did not create it; choose another lab "
                    f"name (--name) or remove it with `ip netns delete {foreign[0]}`"
                )
            missing = [ns for ns in topo.namespaces if not netns.exists(ns)]
            if current is not None and current.complete and not missing:
                return UpReport(created=False, elapsed_s=time.monotonic() - started)
            record = current or state.LabState(lab=self.name)
            record.namespaces = list(topo.namespaces)
            record.complete = False
            state.save(record)  # before creating anything: `down` can always follow it
            self._build(missing)
            record.complete = True
            state.save(record)
        return UpReport(created=True, elapsed_s=time.monotonic() - started)

    def _build(self, missing: Sequence[str]) -> None:
        topo = self.topology
        for ns in missing:
            netns.create(ns)
        netns.ensure_bridge(topo.lan_namespace, BRIDGE)
        gateway = topo.gateway
        for host in topo.hosts:
            ns = topo.namespace(host.name)
            sysctls = dict(HOST_SYSCTLS)
            if host.role in (Role.ROUTER, Role.CONTROL_PLANE, Role.WORKER):
                sysctls.update(FORWARDING_SYSCTLS)
            netns.set_sysctls(ns, sysctls)
            netns.connect_to_bridge(
                topo.lan_namespace, BRIDGE, topo.bridge_port(host.name), ns, HOST_INTERFACE
            )
            netns.configure_interface(
                ns,
                HOST_INTERFACE,
                mac=host.mac,
                addresses=[
                    (str(host.ipv4), LAN_IPV4.prefixlen),
                    (str(host.ipv6), LAN_IPV6.prefixlen),
                ],
                gateway4=None if host is gateway else str(gateway.ipv4),
            )
            self._write_etc(ns)

    def _write_etc(self, ns: str) -> None:
        """/etc/netns/NS/hosts: `ip netns exec` shows it as /etc/hosts, so names resolve."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost"]
        for other in self.topology.hosts:
            lines.append(f"{other.ipv4}\t{other.name}")
            lines.append(f"{other.ipv6}\t{other.name}")
        directory = ETC_NETNS / ns
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts").write_text("\n".join(lines) + "\n")

    def down(self) -> DownReport:
        require_root("pikube lab down")
        with state.locked(self.name):
            current = state.load(self.name)
            if current is None:
                leftovers = [ns for ns in self.topology.namespaces if netns.exists(ns)]
                if leftovers:
                    raise PikubeError(
                        f"pikube has no record of lab {self.name!r}, but namespace "
                        f"{leftovers[0]} exists; it was not created by pikube, so it is left alone"
                    )
                shutil.rmtree(state.lab_dir(self.name), ignore_errors=True)
                return DownReport(existed=False, namespaces_removed=(), processes_stopped=())
            pids = set(marked_pids(self.name))
            pids |= set(netns.pids_in(current.namespaces))
            pids |= {p.pid for p in current.processes if is_running(p.pid, p.start_ticks)}
            pids.discard(os.getpid())
            stopped = kill_all(pids)
            self.supervisor.reap()
            from pikube.lab.hosts.sshhosts import down_ssh_hosts  # noqa: PLC0415 (it imports Lab)

            down_ssh_hosts(self.name)
            removed = []
            for ns in reversed(current.namespaces):
                if netns.exists(ns):
                    netns.remove(ns)
                    removed.append(ns)
                shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)
            shutil.rmtree(state.lab_dir(self.name), ignore_errors=True)
        return DownReport(
            existed=True, namespaces_removed=tuple(removed), processes_stopped=tuple(stopped)
        )

    # -- looking at it ---------------------------------------------------------------------

    def exists(self) -> bool:
        return state.load(self.name) is not None

    def require_up(self) -> state.LabState:
        current = state.load(self.name)
        if current is None or not current.complete:
            raise PikubeError(
                f"lab {self.name!r} is not up; start it with `{lab_command(self.name, 'up')}`"
            )
        return current

    def status(self) -> LabStatus:
        current = state.load(self.name)
        hosts = []
        for host in self.topology.hosts:
            ns = self.topology.namespace(host.name)
            present = netns.exists(ns)
            addrs: tuple[str, ...] = ()
            if present:
                addrs = tuple(
                    f"{a}/{p}" for _if, a, p in netns.addresses(ns) if not a.startswith("fe80:")
                )
            hosts.append(HostStatus(host=host, namespace=ns, present=present, addresses=addrs))
        processes = tuple(
            ProcessStatus(record=p, running=is_running(p.pid, p.start_ticks))
            for p in (current.processes if current else [])
        )
        return LabStatus(
            lab=self.name,
            exists=current is not None,
            complete=bool(current and current.complete),
            hosts=tuple(hosts),
            processes=processes,
        )

    # -- running things in it --------------------------------------------------------------

    def namespace(self, host: str) -> str:
        return self.topology.namespace(host)

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` inside the host (via `ip netns exec`)."""
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a program run in the lab: marked, so `down` can find it.

        PATH starts with pikube's own bin directory, so the tools installed with pikube (the
        pinned kubectl) resolve in the lab even when the virtualenv is not activated.
        """
        env = {**os.environ, **(extra or {}), LAB_ENV: self.name}
        scripts = sysconfig.get_path("scripts")
        path = env.get("PATH", os.defpath)
        if scripts not in path.split(os.pathsep):
            env["PATH"] = os.pathsep.join([scripts, path])
        return env

    def run(
        self,
        host: str,
        argv: Sequence[str],
        *,
        timeout_s: float = 30.0,
        check: bool = False,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command in a host and capture its output."""
        try:
            result = subprocess.run(
                self.command(host, argv),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=self.environment(),
                input=input_text,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PikubeError(
                f"`{' '.join(argv)}` on {host} did not finish within {timeout_s:g} s"
            ) from exc
        if check and result.returncode != 0:
            raise PikubeError(
                f"`{' '.join(argv)}` on {host} failed with status {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def start(
        self,
        host: str,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        ready: Readiness | None = None,
        ready_timeout_s: float = 10.0,
    ) -> ProcessRecord:
        """Start a long-running process in a host under the lab's supervisor."""
        self.require_up()
        if any(p.host == host and p.name == name for p in self._processes() if self._alive(p)):
            raise PikubeError(f"a process named {name!r} is already running on {host}")
        return self.supervisor.start(
            host,
            self.namespace(host),
            name,
            argv,
            env=env,
            ready=ready,
            ready_timeout_s=ready_timeout_s,
        )

    def stop(self, record: ProcessRecord, timeout_s: float = 5.0) -> int | None:
        return self.supervisor.stop(record, timeout_s)

    def process(self, host: str, name: str) -> ProcessRecord:
        for p in self._processes():
            if p.host == host and p.name == name:
                return p
        raise PikubeError(f"lab {self.name!r} has no process {name!r} on {host}")

    def _processes(self) -> list[ProcessRecord]:
        current = state.load(self.name)
        return current.processes if current else []

    @staticmethod
    def _alive(record: ProcessRecord) -> bool:
        return is_running(record.pid, record.start_ticks)

    def _record_start(self, record: ProcessRecord) -> None:
        with state.locked(self.name):
            current = self.require_up()
            current.processes = [
                p
                for p in current.processes
                if not (p.host == record.host and p.name == record.name)
            ] + [record]
            state.save(current)

    def _record_stop(self, record: ProcessRecord) -> None:
        if not state.state_path(self.name).exists():
            return
        with state.locked(self.name):
            current = state.load(self.name)
            if current is None:
                return
            current.processes = [p for p in current.processes if p.pid != record.pid]
            state.save(current)
