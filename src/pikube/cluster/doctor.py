"""The doctor: read-only checks of what makes kubeadm fail on a Raspberry Pi, in the user's terms.

Pure: facts of every node (and why some could not be read) in, checks out. Each check says
what is wrong, why it matters, how to fix it, and whether `pikube cluster apply` does that.
Every check is decided from runtime state first (the running kernel's command line and cgroups,
active swap, loaded modules, live sysctls), and from files only for what happens at next boot.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from pikube.cluster.facts import HostFacts
from pikube.cluster.managed import (
    BOOT_CMDLINES,
    KUBE_PACKAGES,
    KUBE_PROXY_MODULES,
    KUBELET_DEFAULTS,
)
from pikube.cluster.operations import (
    CGROUP_FLAGS,
    KUBELET_SWAP_FLAG,
    boot_modules,
    kubelet_tolerates_swap,
    pause_image,
)
from pikube.cluster.spec import ClusterSpec, Role, SwapPolicy

CONTROL_PLANE_MIN_MEMORY_MB = 1700  # kubeadm's Mem preflight check
CONTROL_PLANE_MIN_CPUS = 2  # kubeadm's NumCPU preflight check
WORKER_MIN_MEMORY_MB = 1024
CLOCK_WARN_S = 1.0
CLOCK_FAIL_S = 5.0


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    id: str
    status: Status
    message: str
    fix: str = ""
    apply_fixes: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "status": self.status.value,
            "message": self.message,
            "fix": self.fix,
            "apply_fixes": self.apply_fixes,
        }


@dataclass(frozen=True)
class DoctorReport:
    hosts: Mapping[str, tuple[Check, ...]]

    @property
    def failed(self) -> bool:
        return any(c.status is Status.FAIL for checks in self.hosts.values() for c in checks)

    def check(self, node: str, check_id: str) -> Check:
        return next(c for c in self.hosts[node] if c.id == check_id)

    def to_json(self) -> dict[str, object]:
        return {
            "hosts": {
                node: {"checks": [c.to_json() for c in checks]}
                for node, checks in self.hosts.items()
            }
        }


def _ok(check_id: str, message: str) -> Check:
    return Check(check_id, Status.OK, message)


# -- one host ----------------------------------------------------------------------------------


def check_architecture(facts: HostFacts) -> Check:
    kernel_64 = facts.machine in ("aarch64", "x86_64")
    user_64 = facts.dpkg_arch in ("arm64", "amd64")
    if kernel_64 and user_64:
        return _ok(
            "arch-64bit", f"64-bit kernel ({facts.machine}) and userland ({facts.dpkg_arch})"
        )
    what = []
    if not kernel_64:
        what.append(f"a 32-bit kernel ({facts.machine or 'unknown'})")
    if not user_64:
        what.append(f"a 32-bit userland ({facts.dpkg_arch or 'unknown'})")
    return Check(
        "arch-64bit",
        Status.FAIL,
        f"this Pi runs {' and '.join(what)}; the Kubernetes packages and images the cluster "
        "uses are arm64 (a 64-bit kernel under an armhf userland still installs armhf packages)",
        "reinstall with Raspberry Pi OS Lite (64-bit)",
    )


def check_model(facts: HostFacts) -> Check:
    if facts.model:
        return _ok("hardware", f"{facts.model}")
    return _ok("hardware", "not a Raspberry Pi (no device-tree model)")


def check_memory_cgroup(facts: HostFacts) -> Check:
    path = facts.boot_cmdline_path
    if facts.memory_cgroup:
        return _ok("memory-cgroup", "the memory cgroup controller is enabled in the running kernel")
    running = facts.proc_cmdline.split()
    in_file = facts.boot_cmdline.split()
    if all(f in running for f in CGROUP_FLAGS):
        return Check(
            "memory-cgroup",
            Status.FAIL,
            f"the kernel booted with {' '.join(CGROUP_FLAGS)}, yet the memory controller is "
            "off: the firmware or kernel forces cgroup_disable=memory (reported for "
            "Raspberry Pi kernels since 6.6/6.12); kubeadm init would fail with "
            "CGROUPS_MEMORY: missing",
            "update the firmware and kernel (`apt full-upgrade`), or use a kernel that honours "
            "cgroup_enable=memory; pikube cannot fix this from cmdline.txt",
        )
    if all(f in in_file for f in CGROUP_FLAGS):
        return Check(
            "memory-cgroup",
            Status.FAIL,
            f"the memory controller is off: {path} has the flags, but the running kernel did "
            "not get them (not rebooted since the edit)",
            "reboot",
            apply_fixes=True,
        )
    return Check(
        "memory-cgroup",
        Status.FAIL,
        "the memory controller is off (Raspberry Pi OS disables it by default); kubelet cannot "
        "enforce memory limits and kubeadm init fails with CGROUPS_MEMORY: missing",
        f"add {' '.join(CGROUP_FLAGS)} to {path} and reboot",
        apply_fixes=True,
    )


def check_cmdline_file(facts: HostFacts) -> Check:
    used = facts.boot_cmdline_path
    bookworm, older = BOOT_CMDLINES
    other = older if used == bookworm else None
    other_text = facts.files.get(other) if other else None
    if other and other_text:
        other_words = (other_text.splitlines() or [""])[0].split()
        used_words = facts.boot_cmdline.split()
        misplaced = [f for f in CGROUP_FLAGS if f in other_words and f not in used_words]
        if misplaced:
            return Check(
                "cmdline-file",
                Status.FAIL,
                f"{' '.join(misplaced)} were added to {other}, which this Pi ignores: since "
                f"Bookworm the firmware reads {used}",
                f"add them to {used} instead",
                apply_fixes=True,
            )
    if facts.files.get(used) is None:
        return Check(
            "cmdline-file",
            Status.WARN,
            "no cmdline.txt found in /boot/firmware or /boot: the kernel command line cannot be "
            "checked or changed here",
            "check the boot partition is mounted",
        )
    return _ok("cmdline-file", f"the firmware reads {used}")


def check_swap(spec: ClusterSpec, facts: HostFacts) -> Check:
    sources = []
    if facts.swaps:
        sources.append("on now: " + ", ".join(s.name for s in facts.swaps))
    if facts.fstab_swap_lines:
        sources.append("/etc/fstab has swap entries")
    for unit in ("dphys-swapfile", "rpi-swap"):
        state = facts.unit(unit)
        if state.exists and state.enabled not in ("masked", "disabled"):
            sources.append(f"{unit} is enabled and turns swap on at every boot")
    if facts.zram_generator_active:
        sources.append("zram swap is set up at boot (zram-generator)")
    if not sources:
        return _ok("swap", "no swap now and none configured for the next boot")
    if spec.swap is SwapPolicy.KEEP:
        if kubelet_tolerates_swap(facts):
            return _ok(
                "swap",
                "swap: " + "; ".join(sources) + f" (kept, as the spec says; kubelet runs with "
                f"{KUBELET_SWAP_FLAG})",
            )
        return Check(
            "swap",
            Status.FAIL,
            "swap: " + "; ".join(sources) + "; the spec keeps swap, but kubelet refuses to "
            f"start with swap on unless told otherwise ({KUBELET_DEFAULTS} lacks "
            f"{KUBELET_SWAP_FLAG})",
            f"add {KUBELET_SWAP_FLAG} to KUBELET_EXTRA_ARGS in {KUBELET_DEFAULTS}",
            apply_fixes=True,
        )
    return Check(
        "swap",
        Status.FAIL,
        "swap: " + "; ".join(sources) + "; kubelet refuses to start with swap on, and "
        "`swapoff -a` alone does not survive a reboot",
        "swapoff -a, comment out fstab swap lines, mask dphys-swapfile/rpi-swap, disable zram",
        apply_fixes=True,
    )


def check_modules(spec: ClusterSpec, facts: HostFacts) -> Check:
    wanted = boot_modules(spec)
    needed = [*wanted, "vxlan"]
    missing = [m for m in needed if not facts.module_loadable(m)]
    mode = spec.networking.kube_proxy_mode
    why = "containerd needs overlay, flannel needs br_netfilter and vxlan"
    if mode in KUBE_PROXY_MODULES:
        why += f", kube-proxy's {mode.value} mode needs {', '.join(KUBE_PROXY_MODULES[mode])}"
    if missing:
        return Check(
            "kernel-modules",
            Status.FAIL,
            f"missing kernel modules: {', '.join(missing)} ({why}; without vxlan flannel "
            "fails with 'Error registering network: operation not supported')",
            "install the kernel's extra modules (Ubuntu: linux-modules-extra-raspi) or use "
            "Raspberry Pi OS's kernel",
        )
    not_loaded = [m for m in wanted if not facts.module_available(m)]
    if not_loaded:
        return Check(
            "kernel-modules",
            Status.WARN,
            f"{', '.join(not_loaded)} not loaded yet",
            "modprobe them and list them in /etc/modules-load.d/k8s.conf",
            apply_fixes=True,
        )
    return _ok("kernel-modules", f"{', '.join(needed)} are available")


def check_forwarding(facts: HostFacts) -> Check:
    forward = facts.sysctls.get("net.ipv4.ip_forward")
    bridge = facts.sysctls.get("net.bridge.bridge-nf-call-iptables")
    if forward != "1":
        return Check(
            "ip-forward",
            Status.FAIL,
            f"net.ipv4.ip_forward is {forward or 'unknown'}: pods on other nodes are "
            "unreachable and kubeadm's preflight fails "
            "([ERROR FileContent--proc-sys-net-ipv4-ip_forward])",
            "set net.ipv4.ip_forward = 1 in /etc/sysctl.d/k8s.conf and apply it",
            apply_fixes=True,
        )
    if bridge != "1":
        return Check(
            "ip-forward",
            Status.WARN,
            f"net.bridge.bridge-nf-call-iptables is {bridge or 'unavailable'}: Service traffic "
            "between pods on one node bypasses kube-proxy's rules",
            "load br_netfilter and set the bridge sysctls to 1",
            apply_fixes=True,
        )
    return _ok("ip-forward", "forwarding and bridge netfilter are on")


def check_containerd(spec: ClusterSpec, facts: HostFacts) -> list[Check]:
    config = facts.containerd_config
    installed = facts.package("containerd") is not None
    checks = []
    if config.parse_error:
        checks.append(
            Check(
                "containerd-cri",
                Status.FAIL,
                f"/etc/containerd/config.toml is not valid TOML: {config.parse_error}",
                "rewrite it",
                apply_fixes=True,
            )
        )
        return checks
    if config.cri_disabled:
        checks.append(
            Check(
                "containerd-cri",
                Status.FAIL,
                'containerd\'s config disables its CRI plugin (disabled_plugins = ["cri"], as '
                "Docker's containerd.io package ships it): kubeadm fails with [ERROR CRI] "
                "unknown service runtime.v1.RuntimeService",
                "remove cri from disabled_plugins and restart containerd",
                apply_fixes=True,
            )
        )
    elif not installed:
        checks.append(
            Check(
                "containerd-cri",
                Status.WARN,
                "containerd is not installed",
                "install containerd",
                apply_fixes=True,
            )
        )
    else:
        checks.append(_ok("containerd-cri", "containerd's CRI plugin is enabled"))
    if installed or config.present:
        if config.systemd_cgroup is not True:
            checks.append(
                Check(
                    "containerd-cgroup-driver",
                    Status.FAIL,
                    "containerd uses the cgroupfs driver while kubelet uses systemd: pods "
                    "restart and the node becomes unstable",
                    "set SystemdCgroup = true for the runc runtime and restart containerd",
                    apply_fixes=True,
                )
            )
        else:
            checks.append(_ok("containerd-cgroup-driver", "SystemdCgroup = true"))
        want = pause_image(spec)
        if config.sandbox_image != want:
            checks.append(
                Check(
                    "containerd-sandbox-image",
                    Status.WARN,
                    f"containerd's sandbox image is {config.sandbox_image or 'its default'}, "
                    f"kubeadm {spec.versions.kubernetes} uses {want} (an extra image pull and "
                    "kubeadm's ImagePull warning)",
                    f'set sandbox_image = "{want}"',
                    apply_fixes=True,
                )
            )
        else:
            checks.append(_ok("containerd-sandbox-image", f"sandbox image {want}"))
    return checks


def check_kube_packages(spec: ClusterSpec, facts: HostFacts) -> Check:
    version = spec.versions.kubernetes
    installed = {n: facts.package(n) for n in KUBE_PACKAGES}
    missing = [n for n, p in installed.items() if p is None]
    wrong = [
        f"{n} {p.upstream_version}"
        for n, p in installed.items()
        if p is not None and p.upstream_version != version
    ]
    if wrong:
        return Check(
            "kube-packages",
            Status.FAIL,
            f"{', '.join(wrong)} installed, the spec wants {version} (kubelet must not be newer "
            "than kubeadm's control plane)",
            f"install kubelet, kubeadm, kubectl {version} and hold them",
            apply_fixes=True,
        )
    if missing:
        return Check(
            "kube-packages",
            Status.WARN,
            f"{', '.join(missing)} not installed",
            f"install {version} from the Kubernetes repository and hold them",
            apply_fixes=True,
        )
    unheld = [n for n in KUBE_PACKAGES if n not in facts.holds]
    if unheld:
        return Check(
            "kube-packages",
            Status.WARN,
            f"{', '.join(unheld)} not held: an `apt upgrade` can move them past the cluster's "
            "version",
            "apt-mark hold kubelet kubeadm kubectl",
            apply_fixes=True,
        )
    return _ok("kube-packages", f"kubelet, kubeadm, kubectl {version}, held")


def _cpu_limit(facts: HostFacts) -> str:
    """`maxcpus=N` / `nr_cpus=N` on the running kernel's command line, if any."""
    words = [w for w in facts.proc_cmdline.split() if w.startswith(("maxcpus=", "nr_cpus="))]
    return " ".join(words)


def check_resources(role: Role, facts: HostFacts) -> Check:
    memory_mb = facts.mem_total_kb // 1024
    if role is Role.CONTROL_PLANE and (
        memory_mb < CONTROL_PLANE_MIN_MEMORY_MB or facts.cpus < CONTROL_PLANE_MIN_CPUS
    ):
        limit = _cpu_limit(facts) if facts.cpus < CONTROL_PLANE_MIN_CPUS else ""
        fixes = []
        if memory_mb < CONTROL_PLANE_MIN_MEMORY_MB:
            fixes.append("use a Pi with 2 GB or more as the control plane")
        if limit:
            fixes.append(f"remove {limit} from {facts.boot_cmdline_path} and reboot")
        elif facts.cpus < CONTROL_PLANE_MIN_CPUS:
            fixes.append("use a Pi with 2 or more cores as the control plane")
        return Check(
            "resources",
            Status.FAIL,
            f"{memory_mb} MB memory and {facts.cpus} CPU{'s' if facts.cpus != 1 else ''}"
            + (f" (the kernel was told {limit})" if limit else "")
            + f": a kubeadm control plane needs at least {CONTROL_PLANE_MIN_MEMORY_MB} MB and "
            f"{CONTROL_PLANE_MIN_CPUS} CPUs (kubeadm's preflight checks Mem and NumCPU fail)",
            "; ".join(fixes),
        )
    if role is Role.WORKER and memory_mb < WORKER_MIN_MEMORY_MB:
        return Check(
            "resources",
            Status.WARN,
            f"{memory_mb} MB memory leaves little room for pods",
            "use a Pi with 2 GB or more",
        )
    return _ok("resources", f"{memory_mb} MB memory, {facts.cpus} CPUs")


def check_dpkg(facts: HostFacts) -> Check:
    if facts.dpkg_audit:
        return Check(
            "dpkg-state",
            Status.FAIL,
            "package installs were interrupted: " + facts.dpkg_audit.splitlines()[0][:120],
            "dpkg --configure -a",
            apply_fixes=True,
        )
    return _ok("dpkg-state", "no half-installed packages")


def check_clock(facts: HostFacts, local_clock_s: float) -> Check:
    skew = facts.clock_s - local_clock_s
    message = f"clock {'ahead' if skew > 0 else 'behind'} by {abs(skew):.1f} s"
    if abs(skew) >= CLOCK_FAIL_S:
        return Check(
            "clock-skew",
            Status.FAIL,
            message + ": certificates look not yet valid or expired and etcd misbehaves",
            "enable time sync (systemd-timesyncd) and check the network's NTP",
        )
    if abs(skew) >= CLOCK_WARN_S:
        return Check("clock-skew", Status.WARN, message, "enable time sync (systemd-timesyncd)")
    return _ok("clock-skew", f"clock within {CLOCK_WARN_S:g} s of this machine's")


# -- across hosts ------------------------------------------------------------------------------


_IDENTITY_FIXES = {
    "hostname": "give each Pi its own hostname (`hostnamectl set-hostname NAME`, or raspi-config)",
    "machine-id": "regenerate /etc/machine-id (`rm /etc/machine-id && systemd-machine-id-setup`)",
    "MAC": "give the interface its own MAC address (e.g. MACAddress= in a systemd .link file)",
    "product_uuid": "give each (virtual) machine its own product_uuid",
    "serial number": "each Pi has its own serial number: check the spec's addresses",
}


def check_identities(facts: Mapping[str, HostFacts]) -> dict[str, Check]:
    """Hostname, MAC, machine-id and product_uuid/serial must differ between nodes."""
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for node, f in facts.items():
        keys = [("hostname", f.hostname), ("machine-id", f.machine_id)]
        keys += [("MAC", mac) for _iface, mac in f.macs if mac and mac != "00:00:00:00:00:00"]
        keys.append(("product_uuid", f.product_uuid))
        keys.append(("serial number", f.serial))
        for kind, value in keys:
            if value:
                seen[(kind, value)].append(node)
    result = {}
    for node in facts:
        clashes = [
            (kind, f"{kind} {value} also on {', '.join(n for n in nodes if n != node)}")
            for (kind, value), nodes in seen.items()
            if node in nodes and len(nodes) > 1
        ]
        if clashes:
            kinds = list(dict.fromkeys(kind for kind, _text in clashes))
            cloned = " (cloned SD card?)" if {"hostname", "machine-id"} & set(kinds) else ""
            result[node] = Check(
                "unique-identity",
                Status.FAIL,
                "; ".join(text for _kind, text in clashes) + cloned + ": kubeadm join, the "
                "node's identity in the cluster and the LAN's switches get confused",
                "; ".join(_IDENTITY_FIXES[kind] for kind in kinds),
            )
        else:
            result[node] = _ok("unique-identity", "hostname, MAC and machine-id are unique")
    return result


def diagnose(
    spec: ClusterSpec,
    facts: Mapping[str, HostFacts],
    errors: Mapping[str, str],
    local_clock_s: float,
) -> DoctorReport:
    identities = check_identities(facts)
    hosts: dict[str, tuple[Check, ...]] = {}
    for node in spec.nodes:
        if node.name in errors:
            hosts[node.name] = (
                Check(
                    "reachable",
                    Status.FAIL,
                    errors[node.name],
                    "check it is powered on, its address, and the SSH user and key in the spec",
                ),
            )
            continue
        f = facts[node.name]
        checks = [
            _ok("reachable", f"SSH as {spec.ssh_for(node)[0]}"),
            check_model(f),
            check_architecture(f),
            check_memory_cgroup(f),
            check_cmdline_file(f),
            check_swap(spec, f),
            check_modules(spec, f),
            check_forwarding(f),
            *check_containerd(spec, f),
            check_kube_packages(spec, f),
            check_dpkg(f),
            check_resources(node.role, f),
            identities[node.name],
            check_clock(f, local_clock_s),
        ]
        if f.hostname and f.hostname != node.name:
            checks.append(
                Check(
                    "hostname",
                    Status.WARN,
                    f"its hostname is {f.hostname}, the spec calls it {node.name}: the "
                    "Kubernetes node will be named after the hostname",
                    f"hostnamectl set-hostname {node.name}",
                )
            )
        hosts[node.name] = tuple(checks)
    return DoctorReport(hosts=hosts)
