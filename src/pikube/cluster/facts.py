"""Host facts: one shell script run in one SSH round trip, and a pure parser of its output.

Owns: what the builder knows about a host (`HostFacts`) and how it is read. Every fact is read
from where a Raspberry Pi shows it at runtime (the running kernel's /proc/cmdline and
/proc/cgroups, not just the file someone edited; /proc/swaps and every persistent swap source;
the device tree's model). The parser is pure (text in, dataclass out) so operations and the
doctor are tested with fixtures, without hosts.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pikube.cluster import managed

MARK = "@@pikube "
# Every file the operations write or read (declared in `managed`): their whole content is
# part of the facts.
FILES = (*managed.WRITTEN, *managed.BOOT_CMDLINES, managed.ZRAM_DEFAULT)
KEYRING = managed.KEYRING
UNITS = managed.UNITS
# The boot modules the operations load, and flannel's vxlan, which only the doctor checks.
MODULES = (*managed.BOOT_MODULES, "vxlan")
SYSCTLS = tuple(managed.DESIRED_SYSCTLS)
PACKAGES = managed.PACKAGES

# Programs that hold dpkg's lock while they run (process names, at most 15 characters).
PACKAGE_MANAGERS = ("apt", "apt-get", "aptitude", "dpkg", "unattended-upgr")


def facts_script() -> str:
    """The script that prints every fact, section by section (POSIX sh, read-only)."""
    files = " ".join(FILES)
    units = " ".join(f"{u}.service" for u in UNITS)
    modules = "|".join(MODULES)
    sysctls = " ".join(s.replace(".", "/") for s in SYSCTLS)
    packages = " ".join(PACKAGES)
    package_managers = "|".join(PACKAGE_MANAGERS)
    return f"""export LC_ALL=C
s() {{ printf '\\n{MARK}%s\\n' "$1"; }}
s uname; uname -m; uname -r
s dpkg-arch; dpkg --print-architecture
s os-release; cat /etc/os-release 2>/dev/null
s rpi-issue; head -n1 /etc/rpi-issue 2>/dev/null
s model; tr -d '\\000' < /sys/firmware/devicetree/base/model 2>/dev/null
s serial; tr -d '\\000' < /sys/firmware/devicetree/base/serial-number 2>/dev/null
s product-uuid; cat /sys/class/dmi/id/product_uuid 2>/dev/null
s machine-id; cat /etc/machine-id 2>/dev/null
s boot-id; cat /proc/sys/kernel/random/boot_id
s hostname; hostname
s macs; for i in /sys/class/net/*; do
  n=${{i##*/}}; [ "$n" = lo ] || echo "$n $(cat "$i/address")"
done
s proc-cmdline; cat /proc/cmdline
s proc-cgroups; cat /proc/cgroups
s cgroup-fs; stat -fc %T /sys/fs/cgroup
s cgroup-controllers; cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null
s swaps; cat /proc/swaps
s zram; ls -d /sys/block/zram* 2>/dev/null
s filesystems; cut -f2 /proc/filesystems
s modules; cut -d' ' -f1 /proc/modules 2>/dev/null
s sys-module; ls /sys/module
s modules-builtin; sed 's#.*/##; s#[.]ko.*##' "/lib/modules/$(uname -r)/modules.builtin" 2>/dev/null
s modules-on-disk; cut -d: -f1 "/lib/modules/$(uname -r)/modules.dep" 2>/dev/null |
  sed 's#.*/##; s#[.]ko.*##' | grep -xE '{modules}'
s sysctl; for k in {sysctls}; do echo "$k $(cat "/proc/sys/$k" 2>/dev/null || echo -)"; done
s units; systemctl show -p Id,LoadState,UnitFileState,ActiveState {units} 2>/dev/null
s containerd-version; containerd --version 2>/dev/null
s dpkg; dpkg-query -W -f='${{Package}} ${{Version}} ${{db:Status-Abbrev}}\\n' {packages} 2>/dev/null
s dpkg-audit; dpkg --audit 2>/dev/null | head -n 5
s dpkg-journal; ls /var/lib/dpkg/updates 2>/dev/null | grep -x '[0-9]*' | head -n 3
s package-manager; ps -e -o pid=,comm= | grep -E '^ *[0-9]+ ({package_managers})$'
s keyring; [ -s {KEYRING} ] && echo present
s clock; date +%s.%N
s memory; grep '^MemTotal:' /proc/meminfo; nproc
for f in {files}; do
  s "file $f"; if [ -f "$f" ]; then echo present; cat "$f"; else echo absent; fi
done
s end
"""


@dataclass(frozen=True)
class SwapEntry:
    name: str
    kind: str  # file | partition
    size_kb: int


@dataclass(frozen=True)
class UnitState:
    enabled: str  # enabled | disabled | masked | static | "" (no such unit)
    active: str  # active | inactive | failed | activating | ...

    @property
    def exists(self) -> bool:
        return self.enabled != ""

    @property
    def is_enabled(self) -> bool:
        return self.enabled in ("enabled", "enabled-runtime", "alias", "static", "generated")

    @property
    def is_active(self) -> bool:
        return self.active in ("active", "activating", "reloading")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    status: str  # dpkg's abbreviation: want, state, error: "ii", "hi" (held), "rc", "iU", ...

    @property
    def installed(self) -> bool:
        return len(self.status) >= 2 and self.status[1] == "i"  # state: installed

    @property
    def upstream_version(self) -> str:
        """ "1.31.5-1.1" -> "1.31.5" (an epoch is dropped too)."""
        version = self.version.split(":", 1)[-1]
        return version.rsplit("-", 1)[0] if "-" in version else version


@dataclass(frozen=True)
class ContainerdConfig:
    """What the doctor and operations need from /etc/containerd/config.toml."""

    present: bool
    parse_error: str | None = None
    cri_disabled: bool = False
    systemd_cgroup: bool | None = None  # None: not set (containerd's default is cgroupfs)
    sandbox_image: str | None = None


@dataclass(frozen=True)
class HostFacts:
    machine: str = ""
    kernel: str = ""
    dpkg_arch: str = ""
    os_release: Mapping[str, str] = field(default_factory=dict)
    rpi_issue: str = ""
    model: str = ""
    serial: str = ""
    product_uuid: str = ""
    machine_id: str = ""
    boot_id: str = ""
    hostname: str = ""
    macs: tuple[tuple[str, str], ...] = ()
    proc_cmdline: str = ""
    proc_cgroups: Mapping[str, bool] = field(default_factory=dict)
    cgroup_fs: str = ""
    cgroup_controllers: tuple[str, ...] = ()
    swaps: tuple[SwapEntry, ...] = ()
    zram_devices: tuple[str, ...] = ()
    filesystems: frozenset[str] = frozenset()
    modules_loaded: frozenset[str] = frozenset()
    sys_module: frozenset[str] = frozenset()
    modules_builtin: frozenset[str] = frozenset()
    modules_loadable: frozenset[str] = frozenset()
    sysctls: Mapping[str, str | None] = field(default_factory=dict)
    units: Mapping[str, UnitState] = field(default_factory=dict)
    containerd_version: str = ""
    packages: Mapping[str, Package] = field(default_factory=dict)
    holds: frozenset[str] = frozenset()
    dpkg_audit: str = ""
    dpkg_journal: tuple[str, ...] = ()  # /var/lib/dpkg/updates: a dpkg run was cut short
    package_managers: tuple[str, ...] = ()  # "PID NAME" of apt/dpkg runs going on right now
    keyring_present: bool = False
    clock_s: float = 0.0
    mem_total_kb: int = 0
    cpus: int = 0
    files: Mapping[str, str | None] = field(default_factory=dict)

    # -- derived facts ---------------------------------------------------------------------

    @property
    def cgroup_v2(self) -> bool:
        return self.cgroup_fs == "cgroup2fs"

    @property
    def memory_cgroup(self) -> bool:
        """Is the memory controller really on in the running kernel?"""
        if not self.proc_cgroups.get("memory", False):
            return False
        return "memory" in self.cgroup_controllers if self.cgroup_v2 else True

    @property
    def boot_cmdline_path(self) -> str:
        """The cmdline.txt the firmware reads: /boot/firmware on Bookworm, else /boot."""
        bookworm, older = managed.BOOT_CMDLINES
        return bookworm if self.files.get(bookworm) is not None else older

    @property
    def boot_cmdline(self) -> str:
        text = self.files.get(self.boot_cmdline_path) or ""
        lines = text.splitlines()
        return lines[0].strip() if lines else ""

    def module_available(self, name: str) -> bool:
        """Loaded, built in, or (for modules with a runtime sign) active right now."""
        if name in self.modules_loaded or name in self.modules_builtin:
            return True
        if name == "overlay":
            return "overlay" in self.filesystems
        if name == "br_netfilter":
            return self.sysctls.get("net.bridge.bridge-nf-call-iptables") is not None
        return name in self.sys_module

    def module_loadable(self, name: str) -> bool:
        return self.module_available(name) or name in self.modules_loadable

    def unit(self, name: str) -> UnitState:
        return self.units.get(name, UnitState("", "inactive"))

    def package(self, name: str) -> Package | None:
        pkg = self.packages.get(name)
        return pkg if pkg is not None and pkg.installed else None

    @property
    def fstab_swap_lines(self) -> tuple[str, ...]:
        lines = []
        for line in (self.files.get("/etc/fstab") or "").splitlines():
            fields = line.split()
            if len(fields) >= 3 and not fields[0].startswith("#") and fields[2] == "swap":
                lines.append(line)
        return tuple(lines)

    @property
    def zram_generator_active(self) -> bool:
        """zram swap set up at boot (systemd-zram-generator, as rpi-swap uses)."""
        etc = self.files.get("/etc/systemd/zram-generator.conf")
        usr = self.files.get(managed.ZRAM_DEFAULT)
        if etc is not None:
            return "[zram" in etc
        return usr is not None and "[zram" in usr

    @property
    def containerd_config(self) -> ContainerdConfig:
        return parse_containerd_config(self.files.get("/etc/containerd/config.toml"))


def _sections(output: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(MARK):
            if name is not None:
                sections[name] = "\n".join(lines).strip("\n")
            name = line[len(MARK) :].strip()
            lines = []
        elif name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = "\n".join(lines).strip("\n")
    return sections


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _os_release(text: str) -> dict[str, str]:
    result = {}
    for line in _lines(text):
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.strip().strip('"')
    return result


def _proc_cgroups(text: str) -> dict[str, bool]:
    result = {}
    for line in _lines(text):
        fields = line.split()
        if line.startswith("#") or len(fields) < 4:
            continue
        result[fields[0]] = fields[3] == "1"
    return result


def _swaps(text: str) -> tuple[SwapEntry, ...]:
    entries = []
    for line in _lines(text)[1:]:
        fields = line.split()
        if len(fields) >= 3:
            entries.append(SwapEntry(fields[0], fields[1], _int(fields[2])))
    return tuple(entries)


def _units(text: str) -> dict[str, UnitState]:
    """`systemctl show -p Id,LoadState,UnitFileState,ActiveState`: blank-line separated."""
    result = {}
    for block in text.split("\n\n"):
        props = dict(line.partition("=")[::2] for line in _lines(block))
        unit = props.get("Id", "").removesuffix(".service")
        if not unit:
            continue
        enabled = "" if props.get("LoadState") == "not-found" else props.get("UnitFileState", "")
        result[unit] = UnitState(enabled, props.get("ActiveState", "inactive"))
    return result


def _packages(text: str) -> dict[str, Package]:
    result = {}
    for line in _lines(text):
        fields = line.split()
        if len(fields) >= 3:
            result[fields[0]] = Package(fields[0], fields[1], fields[2])
    return result


def _sysctls(text: str) -> dict[str, str | None]:
    result: dict[str, str | None] = {}
    for line in _lines(text):
        key, _, value = line.partition(" ")
        result[key.replace("/", ".")] = None if value.strip() in ("-", "") else value.strip()
    return result


def _files(sections: Mapping[str, str]) -> dict[str, str | None]:
    files: dict[str, str | None] = {}
    for name, text in sections.items():
        if not name.startswith("file "):
            continue
        status, _, content = text.partition("\n")
        files[name[5:]] = (
            content + "\n"
            if status == "present" and content
            else ("" if status == "present" else None)
        )
    return files


def _dig(data: Mapping[str, Any], *path: str) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def parse_containerd_config(text: str | None) -> ContainerdConfig:
    if text is None:
        return ContainerdConfig(present=False)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return ContainerdConfig(present=True, parse_error=str(exc))
    disabled = data.get("disabled_plugins") or []
    cri_names = {"cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"}
    plugins = data.get("plugins") or {}
    # config version 2 (containerd 1.x) and version 3 (containerd 2.x)
    v2 = _dig(plugins, "io.containerd.grpc.v1.cri")
    cgroup = _dig(v2 or {}, "containerd", "runtimes", "runc", "options", "SystemdCgroup")
    if cgroup is None:
        cgroup = _dig(
            plugins,
            "io.containerd.cri.v1.runtime",
            "containerd",
            "runtimes",
            "runc",
            "options",
            "SystemdCgroup",
        )
    sandbox = _dig(v2 or {}, "sandbox_image") or _dig(
        plugins, "io.containerd.cri.v1.images", "pinned_images", "sandbox"
    )
    return ContainerdConfig(
        present=True,
        cri_disabled=any(str(p) in cri_names for p in disabled),
        systemd_cgroup=cgroup if isinstance(cgroup, bool) else None,
        sandbox_image=sandbox if isinstance(sandbox, str) else None,
    )


def parse_facts(output: str) -> HostFacts:
    """HostFacts from the script's output (missing sections give empty facts)."""
    sec = _sections(output)
    uname = _lines(sec.get("uname", ""))
    memory = _lines(sec.get("memory", ""))
    mem_kb = _int(memory[0].split()[1]) if memory and len(memory[0].split()) > 1 else 0
    clock = sec.get("clock", "").strip()
    macs = []
    for line in _lines(sec.get("macs", "")):
        iface, _, mac = line.partition(" ")
        macs.append((iface, mac.strip()))

    packages = _packages(sec.get("dpkg", ""))

    def names(key: str) -> frozenset[str]:
        return frozenset(w for line in _lines(sec.get(key, "")) for w in line.split())

    return HostFacts(
        machine=uname[0] if uname else "",
        kernel=uname[1] if len(uname) > 1 else "",
        dpkg_arch=sec.get("dpkg-arch", "").strip(),
        os_release=_os_release(sec.get("os-release", "")),
        rpi_issue=sec.get("rpi-issue", "").strip(),
        model=sec.get("model", "").strip(),
        serial=sec.get("serial", "").strip(),
        product_uuid=sec.get("product-uuid", "").strip(),
        machine_id=sec.get("machine-id", "").strip(),
        boot_id=sec.get("boot-id", "").strip(),
        hostname=sec.get("hostname", "").strip(),
        macs=tuple(macs),
        proc_cmdline=sec.get("proc-cmdline", "").strip(),
        proc_cgroups=_proc_cgroups(sec.get("proc-cgroups", "")),
        cgroup_fs=sec.get("cgroup-fs", "").strip(),
        cgroup_controllers=tuple(sec.get("cgroup-controllers", "").split()),
        swaps=_swaps(sec.get("swaps", "")),
        zram_devices=tuple(_lines(sec.get("zram", ""))),
        filesystems=names("filesystems"),
        modules_loaded=names("modules"),
        sys_module=names("sys-module"),
        modules_builtin=names("modules-builtin"),
        modules_loadable=names("modules-on-disk"),
        sysctls=_sysctls(sec.get("sysctl", "")),
        units=_units(sec.get("units", "")),
        containerd_version=sec.get("containerd-version", "").strip(),
        packages=packages,
        holds=frozenset(p.name for p in packages.values() if p.status.startswith("h")),
        dpkg_audit=sec.get("dpkg-audit", "").strip(),
        dpkg_journal=tuple(_lines(sec.get("dpkg-journal", ""))),
        package_managers=tuple(
            " ".join(line.split()) for line in _lines(sec.get("package-manager", ""))
        ),
        keyring_present=sec.get("keyring", "").strip() == "present",
        clock_s=float(clock) if clock.replace(".", "", 1).isdigit() else 0.0,
        mem_total_kb=mem_kb,
        cpus=_int(memory[1]) if len(memory) > 1 else 0,
        files=_files(sec),
    )


def complete(output: str) -> bool:
    """Did the script run to its end (a cut connection leaves it short)?"""
    return f"{MARK}end" in output


def names_of(items: Iterable[str]) -> str:
    return ", ".join(sorted(items))
