"""One lab SSH host as a Raspberry Pi: its "hardware", firmware and power button.

Run as `python -m pikube.lab.hosts.pihost HOSTDIR` inside the host's network namespace (the lab
supervisor does that). It boots the host: real systemd as PID 1 in fresh mount, UTS, IPC, PID
and cgroup namespaces, on an overlay of the cached Debian root (rootfs.py) with the host's own
upper layer, and its own boot partition mounted at /boot/firmware. systemd starts sshd and the
rest, as on a Pi. When the host reboots (`systemctl reboot`: the namespace's init dies by
SIGHUP), it boots it again, reading the boot partition afresh, as the Pi firmware does; SIGTERM
pulls the plug.

What a network namespace cannot show faithfully is presented here, and only here, as a
Raspberry Pi running Raspberry Pi OS would show it (the builder reads the standard paths and
never knows it is in a lab); docs/decisions/0032 and 0034 list what and how:

- /proc/cmdline: the firmware's own arguments, then the first line of the boot partition's
  cmdline.txt. Like current Raspberry Pi firmware/kernels, the firmware part carries
  `cgroup_disable=memory`, so the memory controller is off until cmdline.txt enables it and the
  host reboots. With the `memory-cgroup-off` fault the firmware also appends it after
  cmdline.txt, so the flags are ignored (the Raspberry Pi 6.12 kernel reports).
- /proc/cgroups and /sys/fs/cgroup/cgroup.controllers: derived from that command line.
- The board: /sys/firmware/devicetree/base/{model,serial-number}, /proc/meminfo (the board's
  memory), and the CPUs the kernel brought up (its cores, fewer with `maxcpus=` on the command
  line) as the host's CPU affinity, which is what nproc and kubeadm count.
- /proc/sys/kernel/random/boot_id: a new one at every boot, as on a real machine.
- A kernel built without some modules (Ubuntu's raspi kernel has no vxlan until
  linux-modules-extra-raspi is installed): they are missing from /sys/module, and a missing
  br_netfilter takes its sysctls (/proc/sys/net/bridge) with it.
- A wrong wall clock (no RTC, no time sync): every dynamically linked program of the host
  reads CLOCK_REALTIME through Debian's libfaketime, preloaded host-wide; the monotonic clocks
  are left alone, as a wrong wall clock leaves them.
- Kernel-wide sysctls are read-only (as in any container), so nothing a host does changes the
  machine; the host's own network sysctls (/proc/sys/net) are real and writable.
- Swap cannot be enabled in a namespace (swapon acts on the whole machine, and fails on an
  overlay anyway): dphys-swapfile runs at boot and fails to turn its file on, so a lab host
  shows "swap configured to come back", never active swap.

The pure part (the kernel's view from firmware and cmdline.txt) is `kernel_view`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

# -- the pure part ---------------------------------------------------------------------------

FIRMWARE_CMDLINE = (
    "coherent_pool=1M 8250.nr_uarts=0 snd_bcm2835.enable_headphones=0 cgroup_disable=memory "
    "numa_policy=interleave smsc95xx.macaddr={mac} vc_mem.mem_base=0x3ec00000 "
    "vc_mem.mem_size=0x40000000"
)
# Debian's libfaketime (machine package `libfaketime`), preloaded in a host whose clock is wrong.
FAKETIME_LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# /proc/meminfo lines that are not amounts of the board's memory.
_MEMINFO_KEEP = ("Swap", "Vmalloc", "Hugepagesize", "Hugetlb", "DirectMap", "HugePages_")
_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "pids")
_V1_NAMES = (
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "pids",
)


@dataclass(frozen=True)
class Board:
    """The Raspberry Pi a lab host is: its device-tree model, memory and cores."""

    model: str
    memory_kb: int  # MemTotal as Raspberry Pi OS shows it (less the GPU's and kernel's share)
    cores: int


BOARDS = {
    "pi4-4gb": Board("Raspberry Pi 4 Model B Rev 1.5", 3_884_000, 4),
    "pi3-1gb": Board("Raspberry Pi 3 Model B Rev 1.2", 944_000, 4),
}
DEFAULT_BOARD = "pi4-4gb"


@dataclass(frozen=True)
class Firmware:
    """The board and what its firmware adds to the kernel command line."""

    mac: str
    memory_forced_off: bool = False  # the `memory-cgroup-off` fault
    board: Board = BOARDS[DEFAULT_BOARD]


@dataclass(frozen=True)
class KernelView:
    cmdline: str
    memory_cgroup: bool
    cpus: int  # the CPUs the kernel brought up

    @property
    def proc_cgroups(self) -> str:
        lines = ["#subsys_name\thierarchy\tnum_cgroups\tenabled"]
        for name in _V1_NAMES:
            enabled = 0 if name == "memory" and not self.memory_cgroup else 1
            lines.append(f"{name}\t0\t64\t{enabled}")
        return "\n".join(lines) + "\n"

    @property
    def cgroup_controllers(self) -> str:
        names = [c for c in _CONTROLLERS if c != "memory" or self.memory_cgroup]
        return " ".join(names) + "\n"


def memory_cgroup_enabled(cmdline: str) -> bool:
    """The kernel reads its arguments in order; the last word on `memory` wins."""
    enabled = True
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key == "cgroup_disable" and "memory" in value.split(","):
            enabled = False
        elif key == "cgroup_enable" and "memory" in value.split(","):
            enabled = True
    return enabled


def online_cpus(cmdline: str, cores: int) -> int:
    """The CPUs a kernel brings up: all cores, or fewer with maxcpus= / nr_cpus= (the last of
    each wins; maxcpus=0 leaves the boot CPU alone)."""
    limits: dict[str, int] = {}
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key in ("maxcpus", "nr_cpus") and value.isdigit():
            limits[key] = max(int(value), 1)
    return min([cores, *limits.values()])


def kernel_view(firmware: Firmware, cmdline_txt: str) -> KernelView:
    """What the kernel shows after booting with this firmware and this cmdline.txt."""
    lines = cmdline_txt.splitlines()
    own = lines[0].strip() if lines else ""
    cmdline = FIRMWARE_CMDLINE.format(mac=firmware.mac.upper()) + (f" {own}" if own else "")
    if firmware.memory_forced_off:
        cmdline += " cgroup_disable=memory"
    return KernelView(
        cmdline=cmdline,
        memory_cgroup=memory_cgroup_enabled(cmdline),
        cpus=online_cpus(cmdline, firmware.board.cores),
    )


def meminfo_view(machine_meminfo: str, memory_kb: int) -> str:
    """/proc/meminfo of a board with `memory_kb`: the machine's, every amount of memory scaled
    to the board's size (so free <= total still holds); swap and the like are kept."""
    lines = machine_meminfo.splitlines()
    total = next((int(line.split()[1]) for line in lines if line.startswith("MemTotal:")), 0)
    result = []
    for line in lines:
        fields = line.split()
        key = fields[0] if fields else ""
        if len(fields) == 3 and fields[2] == "kB" and total and not key.startswith(_MEMINFO_KEEP):
            amount = memory_kb if key == "MemTotal:" else int(fields[1]) * memory_kb // total
            result.append(f"{key:<16}{amount:>8} kB")
        else:
            result.append(line)
    return "\n".join(result) + "\n"


# -- the host's configuration, written by sshhosts.py ----------------------------------------


@dataclass(frozen=True)
class HostConfig:
    lab: str
    host: str
    hostdir: str
    rootfs: str
    mac: str
    serial: str
    memory_forced_off: bool
    board: str = DEFAULT_BOARD
    missing_modules: tuple[str, ...] = ()  # what the host's kernel was built without
    clock_offset_s: int = 0  # how wrong the host's wall clock is
    # A Kubernetes node: cgroup v1 hierarchies of its own (kubelet and containerd need real
    # controllers), /dev/kmsg, container storage on the host's disk (see KUBERNETES_NODE).
    kubernetes_node: bool = False

    def to_json(self) -> dict[str, object]:
        return {**self.__dict__, "missing_modules": list(self.missing_modules)}

    @classmethod
    def load(cls, hostdir: Path) -> HostConfig:
        data = json.loads((hostdir / "host.json").read_text())
        data["missing_modules"] = tuple(data.get("missing_modules", ()))
        return cls(**data)

    def save(self) -> None:
        Path(self.hostdir, "host.json").write_text(json.dumps(self.to_json(), indent=2))


# The boot: mounts in the host's own mount namespace, then systemd. Runs under `sh -eu`.
BOOT_SCRIPT = r"""
M="$HOSTDIR/merged"; V="$HOSTDIR/view"
mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$HOSTDIR/upper,workdir=$HOSTDIR/work" "$M"
mount --bind "$HOSTDIR/bootfs" "$M/boot/firmware"
mount -t proc -o nosuid,nodev,noexec proc "$M/proc"
mount --bind "$V/cmdline" "$M/proc/cmdline"
mount --bind "$V/cgroups" "$M/proc/cgroups"
mount --bind "$V/meminfo" "$M/proc/meminfo"
mount --bind "$M/proc/sys" "$M/proc/sys"
mount --bind "$M/proc/sys/net" "$M/proc/sys/net"
mount -o remount,bind,ro "$M/proc/sys"
mount --bind "$V/boot_id" "$M/proc/sys/kernel/random/boot_id"
MISSING=" $(cat "$V/missing-modules") "
case "$MISSING" in
  *" br_netfilter "*) mount -t tmpfs -o ro,mode=555 nobrnf "$M/proc/sys/net/bridge";;
esac
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"
if [ "$MISSING" != "  " ]; then
  mount -t tmpfs -o mode=755 modules "$M/sys/module"
  for d in /sys/module/*; do
    n=${d##*/}
    case "$MISSING" in *" $n "*) continue;; esac
    mkdir "$M/sys/module/$n"; mount --bind "$d" "$M/sys/module/$n"
  done
  mount -o remount,ro "$M/sys/module"
fi
if [ -f "$V/cgroup-v1" ]; then
  # The machine's cgroup v1 hierarchies, each rooted at this host's own cgroup (we are in a
  # cgroup namespace), plus the empty unified hierarchy: systemd's "hybrid" layout.
  mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup "$M/sys/fs/cgroup"
  while read -r dir opts; do
    mkdir -p "$M/sys/fs/cgroup/$dir"
    mount -t cgroup -o "nosuid,nodev,noexec,$opts" cgroup "$M/sys/fs/cgroup/$dir"
  done < "$V/cgroup-v1"
  mkdir -p "$M/sys/fs/cgroup/unified"
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$M/sys/fs/cgroup/unified"
  mount -o remount,ro "$M/sys/fs/cgroup"
else
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$M/sys/fs/cgroup"
  mount --bind "$V/cgroup.controllers" "$M/sys/fs/cgroup/cgroup.controllers"
fi
mount -t tmpfs -o mode=755 firmware "$M/sys/firmware"
mkdir -p "$M/sys/firmware/devicetree/base"
cp "$V/model" "$V/serial-number" "$M/sys/firmware/devicetree/base/"
mount -o remount,ro "$M/sys/firmware"
if [ -d "$M/sys/class/dmi" ]; then mount -t tmpfs -o ro nodmi "$M/sys/class/dmi"; fi
mount -t tmpfs -o mode=755,nosuid,nodev run "$M/run"
mount -t tmpfs -o mode=755,nosuid dev "$M/dev"
for d in null zero full random urandom tty; do
  touch "$M/dev/$d"; mount --bind "/dev/$d" "$M/dev/$d"
done
mkdir "$M/dev/pts" "$M/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$M/dev/pts"
ln -s pts/ptmx "$M/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$M/dev/shm"
touch "$M/dev/console"; mount --bind "$HOSTDIR/console.log" "$M/dev/console"
if [ -d "$V/node-sysctl" ]; then
  # A Kubernetes node: kubelet reads the kernel log and needs the machine-wide settings it
  # would write; containers' overlay snapshots and pod volumes need a real disk, not an overlay.
  touch "$M/dev/kmsg"; mount --bind /dev/kmsg "$M/dev/kmsg"
  for f in "$V"/node-sysctl/*; do
    mount --bind -o ro "$f" "$M/proc/sys/$(echo "${f##*/}" | tr . /)"
  done
  for d in containerd kubelet; do
    mkdir -p "$HOSTDIR/disk/$d" "$M/var/lib/$d"
    mount --bind "$HOSTDIR/disk/$d" "$M/var/lib/$d"
  done
  mount --make-rshared "$M"
fi
INIT_ARGS=""
if [ -f "$V/faketimerc" ]; then
  # A wrong wall clock for every program but systemd's own (libfaketime breaks their timerfd
  # timers); the monotonic clocks stay right, as a wrong wall clock leaves them.
  SKIP="systemctl,journalctl$(for f in "$M"/lib/systemd/systemd*; do printf ,%s "${f##*/}"; done)"
  mkdir -p "$M${FAKETIME_LIBRARY%/*}"
  touch "$M$FAKETIME_LIBRARY" "$M/etc/faketimerc" "$M/etc/ld.so.preload"
  mount --bind -o ro "$FAKETIME_LIBRARY" "$M$FAKETIME_LIBRARY"
  mount --bind "$V/faketimerc" "$M/etc/faketimerc"
  mount --bind "$V/ld.so.preload" "$M/etc/ld.so.preload"
  export FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_SKIP_CMDS="$SKIP"
  INIT_ARGS="systemd.setenv=FAKETIME_DONT_FAKE_MONOTONIC=1 systemd.setenv=FAKETIME_SKIP_CMDS=$SKIP"
fi
hostname "$(cat "$M/etc/hostname")"
export container=pikube-lab
exec chroot "$M" /lib/systemd/systemd $INIT_ARGS
"""

_UNSHARE = (
    'for f in $(cat "$1"); do echo $$ > "$f"; done && exec unshare --mount --uts --ipc --pid '
    '--cgroup --fork --kill-child --propagation private sh -eu "$2"'
)
# What kubelet (protectKernelDefaults: false) sets machine-wide when they differ, and fails to
# start when it cannot. A lab host cannot write kernel-wide sysctls, so a Kubernetes node is
# shown these values (docs/decisions/0050).
KUBELET_KERNEL_SETTINGS = {
    "vm.overcommit_memory": "1",
    "vm.panic_on_oom": "0",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
}
_V1_CONTROLLERS = frozenset(_V1_NAMES) | {"hugetlb", "rdma", "misc"}


def v1_hierarchies(mounts: str) -> list[tuple[str, str]]:
    """The machine's cgroup v1 hierarchies from a mounts table: (directory name, the mount
    options that name the hierarchy: its controllers, or `none,name=X` for a named one)."""
    found: dict[str, str] = {}
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] != "cgroup":
            continue
        options = fields[3].split(",")
        controllers = [o for o in options if o in _V1_CONTROLLERS]
        names = [o for o in options if o.startswith("name=")]
        if controllers:
            found.setdefault(",".join(controllers), ",".join(controllers))
        elif names:
            found.setdefault(names[0].removeprefix("name="), "none," + names[0])
    return sorted(found.items())


def inside_mounts(hierarchies: list[tuple[str, str]], memory_cgroup: bool) -> str:
    """The v1 hierarchies a booted host mounts (`dir options` lines): the memory controller
    only when the kernel command line leaves it on, as on the Pi."""
    lines = [
        f"{directory} {options}"
        for directory, options in hierarchies
        if memory_cgroup or "memory" not in options.split(",")
    ]
    return "\n".join(lines) + "\n"


def _cgroup_root(hostdir: Path) -> Path:
    """cgroup2, mounted privately (`ip netns exec` gave us a fresh /sys without it)."""
    mountpoint = hostdir / "cgroupfs"
    mountpoint.mkdir(exist_ok=True)
    if not os.path.ismount(mountpoint):
        subprocess.run(["mount", "-t", "cgroup2", "cgroup2", str(mountpoint)], check=True)
    return mountpoint


def _v1_roots(hostdir: Path, hierarchies: list[tuple[str, str]]) -> list[Path]:
    """Each v1 hierarchy of the machine, mounted privately under the host's directory."""
    roots = []
    for directory, options in hierarchies:
        mountpoint = hostdir / "cgroup-v1" / directory
        mountpoint.mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(mountpoint):
            subprocess.run(
                ["mount", "-t", "cgroup", "-o", options, "cgroup", str(mountpoint)], check=True
            )
        roots.append(mountpoint)
    return roots


def _make_v1_cgroup(root: Path, name: str) -> Path:
    """The host's cgroup in one v1 hierarchy; cpuset cgroups start empty, so each level gets
    its parent's CPUs and memory nodes (else joining it fails with ENOSPC)."""
    path = root
    for part in name.split("/"):
        parent, path = path, path / part
        path.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (path / knob).exists() and not (path / knob).read_text().strip():
                (path / knob).write_text((parent / knob).read_text())
    return path


def cgroup_name(lab: str, host: str) -> str:
    return f"pikube/{lab}-{host}"


def remove_cgroup(directory: Path, timeout_s: float = 5.0) -> None:
    """Remove a cgroup and its children once their processes are gone."""
    if not directory.exists():
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            for sub in sorted(directory.rglob("*"), key=lambda p: -len(p.parts)):
                if sub.is_dir():
                    sub.rmdir()
            directory.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)


def _write_view(config: HostConfig, hostdir: Path) -> KernelView:
    """The files this boot presents (read by the boot script), from the boot partition."""
    cmdline_txt = hostdir / "bootfs" / "cmdline.txt"
    text = cmdline_txt.read_text() if cmdline_txt.exists() else ""
    board = BOARDS[config.board]
    view = kernel_view(Firmware(config.mac, config.memory_forced_off, board), text)
    directory = hostdir / "view"
    directory.mkdir(exist_ok=True)
    (directory / "cmdline").write_text(view.cmdline + "\n")
    (directory / "cgroups").write_text(view.proc_cgroups)
    (directory / "cgroup.controllers").write_text(view.cgroup_controllers)
    (directory / "model").write_bytes(board.model.encode() + b"\0")
    (directory / "serial-number").write_bytes(config.serial.encode() + b"\0")
    meminfo = meminfo_view(Path("/proc/meminfo").read_text(), board.memory_kb)
    (directory / "meminfo").write_text(meminfo)
    (directory / "boot_id").write_text(f"{uuid.uuid4()}\n")
    (directory / "missing-modules").write_text(" ".join(config.missing_modules) + "\n")
    if config.kubernetes_node:
        hierarchies = v1_hierarchies(Path("/proc/1/mounts").read_text())
        (directory / "cgroup-v1").write_text(inside_mounts(hierarchies, view.memory_cgroup))
        sysctls = directory / "node-sysctl"
        sysctls.mkdir(exist_ok=True)
        for key, value in KUBELET_KERNEL_SETTINGS.items():
            (sysctls / key).write_text(value + "\n")
    faketimerc = directory / "faketimerc"
    if config.clock_offset_s:
        faketimerc.write_text(f"{config.clock_offset_s:+d}\n")
        (directory / "ld.so.preload").write_text(FAKETIME_LIBRARY + "\n")
    else:
        faketimerc.unlink(missing_ok=True)
    return view


def _bring_up_cpus(machine_cpus: list[int], count: int) -> None:
    """The CPUs this boot's kernel brought up: the host's processes inherit the affinity."""
    os.sched_setaffinity(0, machine_cpus[: max(1, count)])


def run(hostdir: Path) -> int:
    config = HostConfig.load(hostdir)
    name = cgroup_name(config.lab, config.host)
    cgroup = _cgroup_root(hostdir) / name
    cgroup.mkdir(parents=True, exist_ok=True)
    cgroups = [cgroup]
    if config.kubernetes_node:
        hierarchies = v1_hierarchies(Path("/proc/1/mounts").read_text())
        cgroups += [_make_v1_cgroup(r, name) for r in _v1_roots(hostdir, hierarchies)]
    (hostdir / "cgroup-procs").write_text("".join(f"{c}/cgroup.procs\n" for c in cgroups))
    (hostdir / "boot.sh").write_text(BOOT_SCRIPT)
    (hostdir / "console.log").touch()
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOSTDIR": str(hostdir),
        "ROOTFS": config.rootfs,
        "FAKETIME_LIBRARY": FAKETIME_LIBRARY,
    }
    machine_cpus = sorted(os.sched_getaffinity(0))
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def pull_the_plug(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.kill()  # unshare's --kill-child takes the host's init (and all) with it

    signal.signal(signal.SIGTERM, pull_the_plug)
    signal.signal(signal.SIGINT, pull_the_plug)
    boots = 0
    status = 0
    try:
        while not stopping:
            view = _write_view(config, hostdir)
            _bring_up_cpus(machine_cpus, view.cpus)
            boots += 1
            (hostdir / "boots").write_text(f"{boots}\n")
            child = subprocess.Popen(
                [
                    "sh",
                    "-c",
                    _UNSHARE,
                    "pihost",
                    str(hostdir / "cgroup-procs"),
                    str(hostdir / "boot.sh"),
                ],
                env=env,
            )
            status = child.wait()
            if status != -signal.SIGHUP:  # anything but a reboot: the host stays off
                break
    finally:
        for directory in cgroups:
            remove_cgroup(directory)
    return 0 if stopping else (status if status >= 0 else 128 - status)


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
