"""The lab's SSH hosts: master and node01-03 as Raspberry Pis you can SSH into (opt-in).

Owns: turning a lab's Kubernetes hosts into bootable Raspberry Pi OS machines (each with its own
root filesystem as an overlay on the cached Debian root, its own host keys, machine-id and
boot partition), serving the lab's apt repository from the router, the lab's SSH client key,
the faults a host can be given, and removing all of it. Booting itself is pihost.py.

`pikube lab up --ssh` (or `up_ssh_hosts(lab)`) adds them to a running lab; the plain lab does
not pay for them. Nothing here is known to the cluster builder: it gets a cluster.yaml
(`cluster_spec_yaml`) and talks SSH to 198.51.100.20-23 as to real Pis.
"""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from pikube.errors import InvalidInput, PikubeError
from pikube.helpers import write_atomic
from pikube.lab import state
from pikube.lab.hosts import aptrepo, pihost, rootfs
from pikube.lab.hosts.processes import ProcessRecord, TcpListening
from pikube.lab.kubernetes import debs, registry
from pikube.lab.lab import Lab, lab_command
from pikube.lab.network.topology import Role
from pikube.system import require_commands

REPO_PROCESS = "apt-repository"
HOST_PROCESS = "pi"
REPO_PORT = 80
SSH_PORT = 22
_BOOT_TIMEOUT_S = 60.0


class Fault(enum.Enum):
    """What can be wrong with a lab host (every fresh host is a stock Raspberry Pi OS (64-bit)
    on a Raspberry Pi 4 with 4 GB, which already has dphys-swapfile enabled and the memory
    cgroup off). How each is presented: docs/decisions/0032 and 0034."""

    # cmdline.txt has the flags, but the firmware forces the memory cgroup off after them
    MEMORY_CGROUP_OFF = "memory-cgroup-off"
    WRONG_CMDLINE_FILE = "wrong-cmdline-file"  # the flags were added to /boot/cmdline.txt
    CRI_DISABLED = "cri-disabled"  # containerd config with disabled_plugins = ["cri"]
    UNREACHABLE = "unreachable"  # powered off: nothing answers on port 22
    IP_FORWARD_OFF = "ip-forward-off"  # net.ipv4.ip_forward = 0 at runtime
    SMALL_BOARD = "pi3-1gb"  # a Raspberry Pi 3 Model B: 1 GB of memory
    MAXCPUS_1 = "maxcpus-1"  # cmdline.txt has maxcpus=1: the kernel brings up one CPU
    CLOCK_AHEAD = "clock-ahead"  # set by hand, no time sync: the wall clock is an hour ahead
    # Raspberry Pi OS (32-bit) on a 64-bit kernel: the lab's i386 root on the machine's kernel
    USERLAND_32_BIT = "32-bit-userland"
    NO_VXLAN = "no-vxlan"  # a kernel without vxlan (Ubuntu's raspi kernel, no modules-extra)
    NO_BR_NETFILTER = "no-br-netfilter"  # a kernel without br_netfilter
    # The hosts with this fault boot copies of one SD card (the first one's): one hostname,
    # machine-id and set of SSH host keys
    CLONED_SD_CARD = "cloned-sd-card"
    # An unplugged USB Ethernet adapter (eth1) with the factory MAC cheap RTL8152/8153
    # adapters share: every host with this fault has the same MAC
    USB_ETHERNET_DEFAULT_MAC = "usb-ethernet-default-mac"


CLOCK_AHEAD_S = 3600
USB_ETHERNET_MAC = "00:e0:4c:53:44:58"
USB_ETHERNET_IFNAME = "eth1"


def data_dir(lab: str) -> Path:
    """Where the hosts' disks live (on disk, not /run: a prepared host holds ~200 MB)."""
    return Path(os.environ.get("PIKUBE_DATA_DIR", "/var/lib/pikube")) / "labs" / lab


def host_dir(lab: str, host: str) -> Path:
    return data_dir(lab) / "hosts" / host


def client_key_path(lab: str) -> Path:
    return state.lab_dir(lab) / "ssh" / "id_ed25519"


def known_hosts_path(lab: str) -> Path:
    return state.lab_dir(lab) / "ssh" / "known_hosts"


@dataclass(frozen=True)
class SshHost:
    name: str
    address: str
    role: Role
    faults: frozenset[Fault]


def parse_faults(specs: Iterable[str]) -> dict[str, set[Fault]]:
    """`HOST=FAULT[,FAULT]` items (the CLI's --fault) to a mapping."""
    result: dict[str, set[Fault]] = {}
    known = ", ".join(f.value for f in Fault)
    for spec in specs:
        host, sep, names = spec.partition("=")
        if not sep or not names:
            raise InvalidInput(f"--fault {spec!r}: write HOST=FAULT (faults: {known})")
        for name in names.split(","):
            try:
                result.setdefault(host, set()).add(Fault(name))
            except ValueError:
                raise InvalidInput(
                    f"--fault {spec!r}: unknown fault {name!r} (faults: {known})"
                ) from None
    return result


def ssh_hosts(lab: Lab, faults: Mapping[str, Iterable[Fault]] | None = None) -> list[SshHost]:
    faults = faults or {}
    hosts = [h for h in lab.topology.hosts if h.is_kubernetes_node]
    names = {h.name for h in hosts}
    for name in faults:
        if name not in names:
            raise InvalidInput(
                f"--fault: cannot give a fault to {name!r}: the SSH hosts are "
                f"{', '.join(sorted(names))}"
            )
    return [SshHost(h.name, str(h.ipv4), h.role, frozenset(faults.get(h.name, ()))) for h in hosts]


def checked_ssh_hosts(
    lab: Lab, faults: Mapping[str, Iterable[Fault]] | None = None
) -> list[SshHost]:
    """The SSH hosts with their faults, once every fault can be given here (before anything
    is built: `pikube lab up --fault` checks this first)."""
    hosts = ssh_hosts(lab, faults)
    if any(Fault.CLOCK_AHEAD in h.faults for h in hosts):
        require_commands("faketime")  # its libfaketime presents the wrong clock
    return hosts


def has_ssh_hosts(lab: Lab) -> bool:
    """Whether `up_ssh_hosts` was run for this lab (its SSH client key is made first)."""
    return client_key_path(lab.name).exists()


def up_ssh_hosts(
    lab: Lab,
    faults: Mapping[str, Iterable[Fault]] | None = None,
    *,
    kubernetes_nodes: bool = False,
) -> list[SshHost]:
    """Boot the lab's SSH hosts (fresh, or with faults) and serve the apt repository.

    Builds the cached root and repository first if this machine has none (about a minute).
    With `kubernetes_nodes`, each host boots with what a real kubelet and containerd need
    (pihost.HostConfig.kubernetes_node).
    """
    lab.require_up()
    hosts = checked_ssh_hosts(lab, faults)
    repo = aptrepo.ensure_repo()
    _serve_repository(lab, repo)
    client_key = _client_key(lab.name)
    cloned = [h for h in hosts if Fault.CLONED_SD_CARD in h.faults]
    original = _new_card(cloned[0].name) if cloned else None
    records = []
    for host in hosts:
        arch = rootfs.THIRTY_TWO_BIT if Fault.USERLAND_32_BIT in host.faults else rootfs.NATIVE
        card = original if host in cloned and original is not None else _new_card(host.name)
        _prepare_disk(
            lab, host, card, rootfs.ensure_rootfs(arch), repo, client_key, kubernetes_nodes
        )
        if Fault.USB_ETHERNET_DEFAULT_MAC in host.faults:
            _plug_usb_ethernet_adapter(lab, host.name)
        if Fault.UNREACHABLE in host.faults:
            continue
        records.append(_power_on(lab, host.name))
    _wait_for_sshd(lab, records)
    for host in hosts:
        if Fault.IP_FORWARD_OFF in host.faults:
            lab.run(host.name, ["sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True)
    return hosts


def _power_on(lab: Lab, host: str) -> ProcessRecord:
    directory = host_dir(lab.name, host)
    argv = [sys.executable, "-m", "pikube.lab.hosts.pihost", str(directory)]
    return lab.start(host, HOST_PROCESS, argv)


def _wait_for_sshd(lab: Lab, records: Iterable[ProcessRecord]) -> None:
    deadline = time.monotonic() + _BOOT_TIMEOUT_S
    listening = TcpListening(SSH_PORT)
    for record in records:
        while not listening(record):
            if time.monotonic() > deadline:
                console = host_dir(lab.name, record.host) / "console.log"
                raise PikubeError(
                    f"lab host {record.host} did not start sshd within {_BOOT_TIMEOUT_S:g} s; "
                    f"see {console} and {record.log_path}"
                )
            time.sleep(0.02)


def power_cut(lab: Lab, host: str) -> None:
    """Pull the host's power: every process of it dies at once (its disk stays as it was)."""
    lab.stop(lab.process(host, HOST_PROCESS))


def power_on(lab: Lab, host: str) -> None:
    """Boot a host whose power was cut, and wait for its sshd."""
    _wait_for_sshd(lab, [_power_on(lab, host)])


def host_processes(lab_name: str, host: str) -> list[tuple[int, tuple[str, ...]]]:
    """(pid, argv) of every process running on a booted lab host (its cgroup's)."""
    found = []
    for cgroup_root in _cgroup2_mounts():
        directory = cgroup_root / pihost.cgroup_name(lab_name, host)
        for procs in directory.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(OSError):
                        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                        found.append((int(pid), tuple(a.decode() for a in argv if a)))
        if found:
            break
    return found


def down_ssh_hosts(lab_name: str) -> None:
    """Remove the hosts' disks and cgroups (their processes are stopped by `Lab.down`)."""
    for cgroup_root in _cgroup2_mounts(("cgroup2", "cgroup")):  # Kubernetes nodes use v1 too
        parent = cgroup_root / "pikube"
        for directory in parent.glob(f"{lab_name}-*"):
            pihost.remove_cgroup(directory, timeout_s=2.0)
        with contextlib.suppress(OSError):
            parent.rmdir()  # only once no lab uses it
    shutil.rmtree(data_dir(lab_name), ignore_errors=True)


def _cgroup2_mounts(types: tuple[str, ...] = ("cgroup2",)) -> list[Path]:
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] in types:
            found.append(Path(fields[1]))
    return found


def _serve_repository(lab: Lab, repo: Path) -> None:
    router = lab.topology.gateway.name
    for record in lab.require_up().processes:
        if record.host == router and record.name == REPO_PROCESS:
            return
    lab.start(
        router,
        REPO_PROCESS,
        [sys.executable, "-m", "http.server", str(REPO_PORT), "--directory", str(repo)],
        ready=TcpListening(REPO_PORT),
    )


def repository_url(lab: Lab) -> str:
    return f"http://{lab.topology.gateway.ipv4}"


def _client_key(lab_name: str) -> asyncssh.SSHKey:
    path = client_key_path(lab_name)
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"pikube-lab-{lab_name}")
    write_atomic(path, key.export_private_key(), 0o600)
    return key


def _write(path: Path, content: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    path.chmod(mode)


_CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID={partuuid}-02 rootfstype=ext4 "
_CMDLINE += "fsck.repair=yes rootwait"
_CONFIG_TXT = "# Raspberry Pi firmware settings (pikube lab host)\narm_64bit=1\ndtparam=audio=on\n"
_CRI_DISABLED_TOML = (
    "#   Copyright 2018-2022 Docker Inc.\n\n"
    '#   Licensed under the Apache License, Version 2.0 (the "License");\n\n'
    'disabled_plugins = ["cri"]\n\n'
    '#root = "/var/lib/containerd"\n'
)


@dataclass(frozen=True)
class _Card:
    """What an SD card carries that makes a Pi itself (and what cloning it copies)."""

    hostname: str
    machine_id: str
    partuuid: str
    host_keys: tuple[tuple[str, bytes, bytes], ...]  # (name, private, public)


def _new_card(hostname: str) -> _Card:
    keys = []
    for algorithm, name in (("ssh-ed25519", "ed25519"), ("ecdsa-sha2-nistp256", "ecdsa")):
        key = asyncssh.generate_private_key(algorithm, comment=f"root@{hostname}")
        keys.append((name, key.export_private_key(), key.export_public_key()))
    return _Card(hostname, secrets.token_hex(16), secrets.token_hex(4), tuple(keys))


def _plug_usb_ethernet_adapter(lab: Lab, host: str) -> None:
    """eth1 with the adapter's factory MAC, up but without a cable (its peer is down, in the
    LAN namespace and on no bridge)."""
    peer = f"u-{host}"[:15]
    if lab.run(host, ["ip", "link", "show", USB_ETHERNET_IFNAME]).returncode == 0:
        return
    add = ["ip", "link", "add", USB_ETHERNET_IFNAME, "address", USB_ETHERNET_MAC, "type", "veth"]
    lab.run(host, [*add, "peer", "name", peer, "netns", lab.topology.lan_namespace], check=True)
    lab.run(host, ["ip", "link", "set", USB_ETHERNET_IFNAME, "up"], check=True)


def _prepare_disk(
    lab: Lab,
    host: SshHost,
    card: _Card,
    root: Path,
    repo: Path,
    client_key: asyncssh.SSHKey,
    kubernetes_node: bool = False,
) -> None:
    """The host's SD card: a fresh Raspberry Pi OS with this card's identity (and faults)."""
    directory = host_dir(lab.name, host.name)
    if directory.exists():
        shutil.rmtree(directory)
    for sub in ("upper", "work", "merged", "bootfs"):
        (directory / sub).mkdir(parents=True)
    upper = directory / "upper"
    _write(upper / "etc" / "hostname", f"{card.hostname}\n")
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost", f"127.0.1.1\t{card.hostname}"]
    lines += [f"{h.ipv4}\t{h.name}" for h in lab.topology.hosts]
    _write(upper / "etc" / "hosts", "\n".join(lines) + "\n")
    # The home router is the LAN's DNS server, as DHCP says on a home network; the lab's has
    # none, so a name outside the lab fails at once (kubeadm asks dl.k8s.io for its version).
    _write(upper / "etc" / "resolv.conf", f"nameserver {lab.topology.gateway.ipv4}\n")
    _write(upper / "etc" / "machine-id", card.machine_id + "\n", 0o444)
    for name, private, public in card.host_keys:
        base = upper / "etc" / "ssh" / f"ssh_host_{name}_key"
        _write(base, private, 0o600)
        _write(base.with_suffix(".pub"), public)
    _write(
        upper / "root" / ".ssh" / "authorized_keys",
        client_key.export_public_key().decode(),
        0o600,
    )
    (upper / "root").chmod(0o700)
    url = repository_url(lab)
    _write(
        upper / "etc" / "apt" / "sources.list",
        f"deb {url}/{aptrepo.DEBIAN_REPO_PATH} {rootfs.SUITE} main\n",
    )
    _write(
        upper / "etc" / "apt" / "trusted.gpg.d" / "pikube-lab.gpg",
        (repo / aptrepo.LAB_KEY_FILE).read_bytes(),
    )
    # containerd's registry hosts: registry.k8s.io and docker.io come from the router's
    # registry (read once containerd's CRI config_path names the directory).
    # ghcr.io (pikube's own image) from the app registry, when a test serves it there;
    # quay.io (MetalLB's images) from the MetalLB registry, when a comparison serves them.
    mirrors = registry.containerd_mirror_files(
        registry.mirror_url(lab),
        app_mirror_url=registry.app_mirror_url(lab),
        metallb_mirror_url=registry.metallb_mirror_url(lab),
    )
    for path, text in mirrors.items():
        _write(upper / path.lstrip("/"), text)
    cmdline = _CMDLINE.format(partuuid=card.partuuid)
    flags = " cgroup_enable=memory cgroup_memory=1"
    own = cmdline + (flags if Fault.MEMORY_CGROUP_OFF in host.faults else "")
    own += " maxcpus=1" if Fault.MAXCPUS_1 in host.faults else ""
    _write(directory / "bootfs" / "cmdline.txt", own + "\n")
    _write(directory / "bootfs" / "config.txt", _CONFIG_TXT)
    if Fault.WRONG_CMDLINE_FILE in host.faults:
        _write(upper / "boot" / "cmdline.txt", cmdline + flags + "\n")
    if Fault.CRI_DISABLED in host.faults:
        _write(upper / "etc" / "containerd" / "config.toml", _CRI_DISABLED_TOML)
    topo_host = lab.topology.host(host.name)
    pihost.HostConfig(
        lab=lab.name,
        host=host.name,
        hostdir=str(directory),
        rootfs=str(root),
        mac=topo_host.mac,
        serial="10000000" + secrets.token_hex(4),
        memory_forced_off=Fault.MEMORY_CGROUP_OFF in host.faults,
        board="pi3-1gb" if Fault.SMALL_BOARD in host.faults else pihost.DEFAULT_BOARD,
        missing_modules=tuple(
            module
            for module, fault in (
                ("vxlan", Fault.NO_VXLAN),
                ("br_netfilter", Fault.NO_BR_NETFILTER),
            )
            if fault in host.faults
        ),
        clock_offset_s=CLOCK_AHEAD_S if Fault.CLOCK_AHEAD in host.faults else 0,
        kubernetes_node=kubernetes_node,
    ).save()


def cluster_spec_yaml(lab: Lab, flannel: tuple[Path, str] | None = None) -> str:
    """A cluster.yaml for the lab's SSH hosts (run the builder from the lab's client:
    `pikube lab exec client -- pikube cluster plan -f cluster.yaml`).

    Host preparation only (`cluster.bootstrap: false`), unless `flannel` gives the path and
    sha256 of flannel's manifest: then the builder builds the whole cluster (the Pis must be
    booted as Kubernetes nodes)."""
    if flannel is None:
        bootstrap = "  bootstrap: false  # host preparation only\n"
        flannel_lines = ""
    else:
        bootstrap = "  bootstrap: true\n"
        flannel_lines = (
            "flannel:\n"
            "  # flannel's manifest from the module the lab builds (v0.26.1: decision 0051)\n"
            f"  manifest: {flannel[0]}\n"
            f"  sha256: {flannel[1]}\n"
            "kubelet:\n"
            "  # The lab's nodes share this machine's disk with everything else on it: evict\n"
            "  # only when it is nearly full (kubelet's default imagefs.available is 15%).\n"
            "  eviction_hard: {memory.available: 100Mi, nodefs.available: 5%, "
            "nodefs.inodesFree: 5%, imagefs.available: 5%}\n"
            "demo_app:\n"
            "  image: nginx  # the seed's `--image=nginx`: the tag the lab's registry serves\n"
        )
    nodes = "\n".join(
        f"  - {{name: {h.name}, address: {h.ipv4}, role: {h.role.value}}}"
        for h in lab.topology.hosts
        if h.is_kubernetes_node
    )
    return f"""\
# pikube cluster spec for the SSH hosts of lab {lab.name!r} (master and node01-03).
# Run the builder from the lab's client host, which is on the lab LAN:
#   {lab_command(lab.name, "exec", "client", "--", "pikube cluster plan -f cluster.yaml")}
apiVersion: pikube.dev/v1alpha1
cluster:
  name: kubeadm-orenge-cloud-playground
{bootstrap}ssh:
  user: root
  key: {client_key_path(lab.name)}
  port: {SSH_PORT}
  known_hosts: {known_hosts_path(lab.name)}
nodes:
{nodes}
versions:
  kubernetes: {aptrepo.KUBERNETES_VERSION}
  # The seed's containerd, built from its module and served by the lab's Debian subset.
  containerd: {debs.CONTAINERD_PACKAGE_VERSION}
  flannel: v0.26.3
packages:
  # The lab's copy of pkgs.k8s.io (kubelet, kubeadm, kubectl, cri-tools, kubernetes-cni built
  # from the pinned Go modules).
  kubernetes_repository: {repository_url(lab)}/{aptrepo.KUBERNETES_REPO_PATH}/
networking:
  pod_cidr: 10.244.0.0/16
  service_cidr: 10.96.0.0/12
  kube_proxy_mode: iptables
swap: disable
containerd:
  # The lab's machine has no CAP_SYS_RESOURCE, so no process there may lower an OOM score
  # (docs/decisions/0047); a Raspberry Pi needs false.
  restrict_oom_score_adj: true
{flannel_lines}load_balancer:
  mode: layer2
  pool: 198.51.100.230-198.51.100.250
"""
