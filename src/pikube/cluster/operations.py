"""Operations: compare a host's facts with the spec and yield the commands that close the gap.

Pure (facts and spec in, `Change`s out; no I/O, no clock). Each operation yields nothing when
there is no gap, so a second apply has nothing to do, and the plan is exactly the list of
commands yielded here: `apply` runs those and nothing else. The seed's manual preparation, in
its order: prerequisites and containerd packages, swap off for good, kernel modules, sysctls,
containerd's configuration, the Kubernetes apt repository, kubelet/kubeadm/kubectl pinned and
held, the cgroup flags on the kernel command line, and a reboot when the running kernel lacks
them.

Resuming after an interruption (Ctrl-C, a lost host, a power cut) needs no memory of the
interrupted run: files are written atomically (a temporary file, then mv), so each is old or
new; an apt or dpkg run still going is waited for; a dpkg run cut short is finished with
`dpkg --configure -a`; and everything else is read afresh from the facts.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterator
from dataclasses import dataclass

from pikube.cluster.facts import HostFacts
from pikube.cluster.managed import (
    BASE_MODULES,
    BASE_PACKAGES,
    CONTAINERD_CONF,
    DESIRED_SYSCTLS,
    FSTAB,
    KEYRING,
    KUBE_LIST,
    KUBE_PACKAGES,
    KUBE_PROXY_MODULES,
    KUBELET_DEFAULTS,
    MODULES_LOAD,
    SWAP_UNITS,
    SYSCTL_CONF,
    ZRAM_CONF,
)
from pikube.cluster.spec import ClusterSpec, SwapPolicy

CGROUP_FLAGS = ("cgroup_enable=memory", "cgroup_memory=1")
KUBELET_SWAP_FLAG = "--fail-swap-on=false"  # kubelet's failSwapOn: false
APT_ENV = "DEBIAN_FRONTEND=noninteractive"
# Wait (up to 5 minutes) for dpkg's lock instead of failing: apt-daily on a fresh Pi, or the
# apt run of an apply that was interrupted and is finishing on its own.
APT_LOCK_WAIT = "-o DPkg::Lock::Timeout=300"
APT_UPDATE = f"apt-get update -q {APT_LOCK_WAIT}"
# Keep a configuration file the user (or an earlier tool) changed instead of asking: a
# conffile question would wait forever (the operations below then write what the spec says).
APT_KEEP_CONFIG = "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
# kubeadm's pause image for each minor version (kubeadm config images list).
PAUSE_IMAGES = {"1.29": "3.9", "1.30": "3.9", "1.31": "3.10", "1.32": "3.10"}


class Kind(enum.Enum):
    PACKAGES = "packages"
    FILE = "file"
    SERVICE = "service"
    KERNEL = "kernel"
    REBOOT = "reboot"


@dataclass(frozen=True)
class Change:
    """One step toward the spec: why, what (a diff for files), and the exact commands."""

    id: str
    kind: Kind
    summary: str
    commands: tuple[str, ...]
    diff: str | None = None

    @property
    def reboot(self) -> bool:
        return self.kind is Kind.REBOOT

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "summary": self.summary,
            "commands": list(self.commands),
            "diff": self.diff,
        }


# -- desired state ---------------------------------------------------------------------------


def boot_modules(spec: ClusterSpec) -> tuple[str, ...]:
    return BASE_MODULES + KUBE_PROXY_MODULES.get(spec.networking.kube_proxy_mode, ())


def modules_load_content(spec: ClusterSpec) -> str:
    mode = spec.networking.kube_proxy_mode
    extra = f", and kube-proxy's {mode.value} mode" if mode in KUBE_PROXY_MODULES else ""
    return f"# pikube: kernel modules for containerd and flannel{extra}\n" + "".join(
        f"{module}\n" for module in boot_modules(spec)
    )


def kubelet_defaults(current: str | None, tolerate_swap: bool) -> str | None:
    """/etc/default/kubelet with (or without) the swap flag in KUBELET_EXTRA_ARGS, the rest
    kept; None when there is no file and nothing to say."""
    lines = (current or "").splitlines()
    found = False
    result = []
    for line in lines:
        if line.startswith("KUBELET_EXTRA_ARGS="):
            found = True
            value = line.partition("=")[2].strip().strip('"')
            args = [a for a in value.split() if not a.startswith("--fail-swap-on")]
            args += [KUBELET_SWAP_FLAG] if tolerate_swap else []
            result.append(f"KUBELET_EXTRA_ARGS={' '.join(args)}")
        else:
            result.append(line)
    if not found and tolerate_swap:
        result.append(f"KUBELET_EXTRA_ARGS={KUBELET_SWAP_FLAG}")
    if current is None and not result:
        return None
    return "\n".join(result) + "\n"


def kubelet_tolerates_swap(facts: HostFacts) -> bool:
    for line in (facts.files.get(KUBELET_DEFAULTS) or "").splitlines():
        if line.startswith("KUBELET_EXTRA_ARGS=") and KUBELET_SWAP_FLAG in line.split("=", 1)[1]:
            return True
    return False


SYSCTL_CONTENT = (
    "# pikube: bridged traffic through iptables, and forwarding (kubeadm, flannel)\n"
    "net.bridge.bridge-nf-call-iptables = 1\n"
    "net.bridge.bridge-nf-call-ip6tables = 1\n"
    "net.ipv4.ip_forward = 1\n"
)


CONTAINERD_CERTS_D = "/etc/containerd/certs.d"


def pause_image(spec: ClusterSpec) -> str:
    tag = PAUSE_IMAGES.get(spec.versions.kubernetes_minor, "3.10")
    return f"registry.k8s.io/pause:{tag}"


def containerd_config(spec: ClusterSpec) -> str:
    """containerd 1.6/1.7 (config version 2): CRI on, systemd cgroup driver, kubeadm's pause,
    and registry hosts from /etc/containerd/certs.d (where a site puts a mirror for
    registry.k8s.io or docker.io; nothing there means the registries themselves)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return (
        "# pikube: containerd for kubeadm (CRI enabled, systemd cgroup driver)\n"
        "version = 2\n"
        "\n"
        f"[{cri}]\n"
        f'  sandbox_image = "{pause_image(spec)}"\n'
        + ("  restrict_oom_score_adj = true\n" if spec.containerd.restrict_oom_score_adj else "")
        + "\n"
        f"[{cri}.registry]\n"
        f'  config_path = "{CONTAINERD_CERTS_D}"\n'
        "\n"
        f"[{cri}.containerd.runtimes.runc]\n"
        '  runtime_type = "io.containerd.runc.v2"\n'
        "\n"
        f"[{cri}.containerd.runtimes.runc.options]\n"
        "  SystemdCgroup = true\n"
    )


def kubernetes_list(spec: ClusterSpec) -> str:
    return f"deb [signed-by={KEYRING}] {spec.packages.repository(spec.versions)} /\n"


# -- command builders --------------------------------------------------------------------------


def write_file_command(path: str, content: str, mode: str = "0644") -> str:
    """Atomic write with a quoted heredoc (nothing in `content` is expanded by the shell)."""
    directory = path.rsplit("/", 1)[0] or "/"
    marker = "PIKUBE_EOF"
    while marker in content:
        marker += "_"
    body = content if content.endswith("\n") else content + "\n"
    tmp = f"{path}.pikube-new"
    return (
        f"install -d -m 0755 {directory} && cat > {tmp} <<'{marker}'\n{body}{marker}\n"
        f"chmod {mode} {tmp} && mv {tmp} {path}"
    )


def unified_diff(path: str, old: str | None, new: str | None) -> str:
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        (new or "").splitlines(keepends=True),
        fromfile="/dev/null" if old is None else f"a{path}",
        tofile="/dev/null" if new is None else f"b{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _file_change(
    change_id: str, facts: HostFacts, path: str, content: str, why: str
) -> Change | None:
    current = facts.files.get(path)
    if current == content:
        return None
    verb = "create" if current is None else "update"
    return Change(
        id=change_id,
        kind=Kind.FILE,
        summary=f"{verb} {path}: {why}",
        commands=(write_file_command(path, content),),
        diff=unified_diff(path, current, content),
    )


# -- the operations --------------------------------------------------------------------------


def package_manager_idle(_spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    """dpkg takes no turns: wait for an apt/dpkg run that is going on (bounded by the command
    timeout), so the repair and installs below do not fail on its lock."""
    if facts.package_managers:
        names = ", ".join(facts.package_managers)
        pattern = " ".join(sorted({p.split()[-1] for p in facts.package_managers}))
        yield Change(
            "wait-package-manager",
            Kind.PACKAGES,
            f"wait for the package manager run going on ({names}) to finish",
            (f"for p in {pattern}; do while pgrep -x $p >/dev/null; do sleep 1; done; done",),
        )


def dpkg_repair(_spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    if facts.dpkg_audit or facts.dpkg_journal:
        yield Change(
            "dpkg-repair",
            Kind.PACKAGES,
            "finish the package installs a cut-short dpkg run left half done",
            (f"{APT_ENV} dpkg --configure -a",),
        )


def base_packages(spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    wanted = [p for p in BASE_PACKAGES if facts.package(p) is None]
    containerd = facts.package("containerd")
    pin = spec.versions.containerd
    if containerd is None or (pin is not None and containerd.version != pin):
        wanted.append(f"containerd={pin}" if pin else "containerd")
    if wanted:
        yield Change(
            "packages",
            Kind.PACKAGES,
            f"install {', '.join(wanted)}",
            (
                APT_UPDATE,
                f"{APT_ENV} apt-get install -y -q {APT_LOCK_WAIT} {APT_KEEP_CONFIG} "
                "--no-install-recommends " + " ".join(wanted),
            ),
        )


def kubelet_swap(spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    """swap: keep means kubelet's failSwapOn: false (KUBELET_EXTRA_ARGS); disable takes it
    back out, so kubelet refuses swap that comes back."""
    keep = spec.swap is SwapPolicy.KEEP
    current = facts.files.get(KUBELET_DEFAULTS)
    if current is None and not keep:
        return
    new = kubelet_defaults(current, tolerate_swap=keep)
    if new is None:
        return
    why = "kubelet tolerates swap" if keep else "kubelet refuses swap again"
    change = _file_change("kubelet-swap", facts, KUBELET_DEFAULTS, new, why)
    if change is not None:
        yield change


def swap_off(spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    """Swap off now and for good: swapon, /etc/fstab, dphys-swapfile, zram (rpi-swap)."""
    if spec.swap is SwapPolicy.KEEP:
        return
    if facts.swaps:
        names = ", ".join(s.name for s in facts.swaps)
        yield Change("swap-off", Kind.KERNEL, f"turn swap off now ({names})", ("swapoff -a",))
    fstab_lines = facts.fstab_swap_lines
    current = facts.files.get(FSTAB)
    if fstab_lines and current is not None:
        new = "".join(
            f"#{line}  # disabled by pikube (kubelet needs swap off)\n"
            if line in fstab_lines
            else f"{line}\n"
            for line in current.splitlines()
        )
        change = _file_change("swap-fstab", facts, FSTAB, new, "swap entries disabled")
        if change is not None:
            yield change
    for unit in SWAP_UNITS:
        state = facts.unit(unit)
        if state.exists and state.enabled != "masked":
            commands = [f"systemctl mask {unit}.service"]
            if state.is_active:
                commands.insert(0, f"systemctl stop {unit}.service")
            yield Change(
                f"swap-{unit}",
                Kind.SERVICE,
                f"stop {unit} from turning swap on at boot",
                tuple(commands),
            )
    if facts.zram_generator_active:
        change = _file_change(
            "swap-zram",
            facts,
            ZRAM_CONF,
            "# pikube: no zram swap (kubelet needs swap off)\n",
            "no zram swap devices at boot",
        )
        if change is not None:
            yield change


def kernel_modules(spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    wanted = boot_modules(spec)
    change = _file_change(
        "modules-load",
        facts,
        MODULES_LOAD,
        modules_load_content(spec),
        f"load {', '.join(wanted)} at boot",
    )
    if change is not None:
        yield change
    missing = [m for m in wanted if not facts.module_available(m)]
    if missing:
        yield Change(
            "modules-now",
            Kind.KERNEL,
            f"load {', '.join(missing)} now",
            tuple(f"modprobe {m}" for m in missing),
        )


def sysctls(_spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    change = _file_change(
        "sysctl-conf", facts, SYSCTL_CONF, SYSCTL_CONTENT, "bridge netfilter and forwarding"
    )
    if change is not None:
        yield change
    wrong = [k for k, v in DESIRED_SYSCTLS.items() if facts.sysctls.get(k) != v]
    if change is not None or wrong:
        what = ", ".join(f"{k}=1" for k in wrong) or "the new file"
        yield Change(
            "sysctl-now", Kind.KERNEL, f"apply {what} now", (f"sysctl -q -p {SYSCTL_CONF}",)
        )


def containerd(spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    change = _file_change(
        "containerd-config",
        facts,
        CONTAINERD_CONF,
        containerd_config(spec),
        "CRI on, SystemdCgroup = true, sandbox image " + pause_image(spec),
    )
    if change is not None:
        yield change
    unit = facts.unit("containerd")
    commands = []
    if not unit.is_enabled:
        commands.append("systemctl enable containerd.service")
    if change is not None or not unit.is_active:
        commands.append("systemctl restart containerd.service")
    if commands:
        yield Change(
            "containerd-service",
            Kind.SERVICE,
            "containerd enabled and running with its configuration",
            tuple(commands),
        )


def kubernetes_repository(spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    repo = spec.packages.repository(spec.versions)
    changed = False
    if not facts.keyring_present:
        changed = True
        yield Change(
            "kubernetes-keyring",
            Kind.FILE,
            f"fetch the signing key of {repo} into {KEYRING}",
            (
                "install -d -m 0755 /etc/apt/keyrings",
                f"curl -fsSL {repo}Release.key | gpg --dearmor --yes -o {KEYRING}",
            ),
        )
    change = _file_change(
        "kubernetes-list", facts, KUBE_LIST, kubernetes_list(spec), f"the repository {repo}"
    )
    if change is not None:
        changed = True
        yield change
    if changed:
        yield Change(
            "kubernetes-index",
            Kind.PACKAGES,
            "read the Kubernetes repository's index",
            (APT_UPDATE,),
        )


def kubernetes_packages(spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    version = spec.versions.kubernetes
    wrong = []
    for name in KUBE_PACKAGES:
        pkg = facts.package(name)
        if pkg is None or pkg.upstream_version != version:
            wrong.append(name)
    if wrong:
        targets = " ".join(f"{name}={version}-*" for name in KUBE_PACKAGES)
        yield Change(
            "kubernetes-packages",
            Kind.PACKAGES,
            f"install {', '.join(wrong)} {version}",
            (
                f"{APT_ENV} apt-get install -y -q {APT_LOCK_WAIT} {APT_KEEP_CONFIG} "
                f"--no-install-recommends --allow-change-held-packages {targets}",
            ),
        )
    unheld = [n for n in KUBE_PACKAGES if n not in facts.holds]
    if unheld:
        yield Change(
            "kubernetes-hold",
            Kind.PACKAGES,
            f"hold {', '.join(unheld)} at {version} (no accidental upgrades)",
            (f"apt-mark hold {' '.join(KUBE_PACKAGES)}",),
        )
    if not facts.unit("kubelet").is_enabled:
        yield Change(
            "kubelet-service",
            Kind.SERVICE,
            "kubelet enabled at boot (it waits for kubeadm init/join)",
            ("systemctl enable kubelet.service",),
        )


def cgroup_flags(_spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    path = facts.boot_cmdline_path
    current = facts.files.get(path)
    if current is None:
        return
    words = facts.boot_cmdline.split()
    missing = [f for f in CGROUP_FLAGS if f not in words]
    if missing:
        rest = current.splitlines()[1:]
        new = "\n".join([" ".join([*words, *missing]), *rest]) + "\n"
        change = _file_change(
            "cmdline", facts, path, new, f"add {' '.join(missing)} (the memory cgroup)"
        )
        if change is not None:
            yield change


def reboot(_spec: ClusterSpec, facts: HostFacts) -> Iterator[Change]:
    """Reboot when the running kernel did not get the flags (they are or will be in the file)."""
    if facts.files.get(facts.boot_cmdline_path) is None:
        return
    running = facts.proc_cmdline.split()
    if all(flag in running for flag in CGROUP_FLAGS):
        return
    yield Change(
        "reboot",
        Kind.REBOOT,
        "reboot: the running kernel lacks the cgroup flags (memory cgroup "
        f"{'on' if facts.memory_cgroup else 'off'})",
        ("systemctl reboot",),
    )


OPERATIONS = (
    package_manager_idle,
    dpkg_repair,
    base_packages,
    swap_off,
    kernel_modules,
    sysctls,
    containerd,
    kubernetes_repository,
    kubernetes_packages,
    kubelet_swap,
    cgroup_flags,
    reboot,
)


def changes_for(spec: ClusterSpec, facts: HostFacts) -> list[Change]:
    """Every change this host needs, in order; empty when it matches the spec."""
    return [change for operation in OPERATIONS for change in operation(spec, facts)]
