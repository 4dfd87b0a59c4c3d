"""The lab Pi's kernel view: what the firmware and cmdline.txt make the kernel show."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pikube.lab.hosts.pihost import (
    BOARDS,
    Firmware,
    inside_mounts,
    kernel_view,
    meminfo_view,
    memory_cgroup_enabled,
    online_cpus,
    v1_hierarchies,
)

PLAIN = "console=serial0,115200 root=PARTUUID=1234-02 rootwait\n"
FLAGS = (
    "console=serial0,115200 root=PARTUUID=1234-02 rootwait cgroup_enable=memory cgroup_memory=1\n"
)


def test_a_stock_pi_boots_with_the_memory_cgroup_off() -> None:
    view = kernel_view(Firmware("02:00:00:00:00:21"), PLAIN)
    assert "cgroup_disable=memory" in view.cmdline
    assert view.cmdline.endswith("rootwait")
    assert view.memory_cgroup is False
    assert "memory\t0\t64\t0" in view.proc_cgroups
    assert "memory" not in view.cgroup_controllers.split()


def test_the_flags_in_cmdline_txt_turn_it_on() -> None:
    view = kernel_view(Firmware("02:00:00:00:00:21"), FLAGS)
    assert view.memory_cgroup is True
    assert "memory" in view.cgroup_controllers.split()


def test_firmware_that_forces_it_off_ignores_the_flags() -> None:
    view = kernel_view(Firmware("02:00:00:00:00:21", memory_forced_off=True), FLAGS)
    assert "cgroup_enable=memory" in view.cmdline
    assert view.memory_cgroup is False


@given(st.lists(st.sampled_from(["cgroup_disable=memory", "cgroup_enable=memory", "quiet"])))
def test_the_last_word_on_memory_wins(words: list[str]) -> None:
    decisive = [w for w in words if "memory" in w]
    expected = not decisive or decisive[-1] == "cgroup_enable=memory"
    assert memory_cgroup_enabled(" ".join(words)) is expected


def test_a_pi_brings_up_its_cores_unless_the_command_line_says_fewer() -> None:
    pi3 = Firmware("02:00:00:00:00:21", board=BOARDS["pi3-1gb"])
    assert kernel_view(pi3, PLAIN).cpus == 4
    assert kernel_view(pi3, PLAIN.replace("rootwait", "rootwait maxcpus=1")).cpus == 1
    assert online_cpus("maxcpus=0", 4) == 1  # the boot CPU always runs
    assert online_cpus("nr_cpus=2 maxcpus=3", 4) == 2
    assert online_cpus("maxcpus=8", 4) == 4


MACHINE_MEMINFO = """\
MemTotal:       24683812 kB
MemFree:        22995004 kB
MemAvailable:   24200420 kB
SwapTotal:             0 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""


def test_meminfo_shows_the_boards_memory() -> None:
    pi3 = meminfo_view(MACHINE_MEMINFO, 944_000)
    values = {line.split()[0]: line.split()[1] for line in pi3.splitlines()}
    assert values["MemTotal:"] == "944000"
    assert int(values["MemFree:"]) < int(values["MemAvailable:"]) < 944_000
    assert values["Hugepagesize:"] == "2048"  # not an amount of the board's memory
    assert values["HugePages_Total:"] == "0"
    assert pi3.startswith("MemTotal:         944000 kB\n")


# -- Kubernetes nodes: the machine's cgroup v1 hierarchies ------------------------------------

MACHINE_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/net_cls,net_prio cgroup rw,nosuid,net_cls,net_prio 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,xattr,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


def test_v1_hierarchies_keep_co_mounted_controllers_and_named_ones() -> None:
    assert v1_hierarchies(MACHINE_MOUNTS) == [
        ("cpu", "cpu"),
        ("cpuacct", "cpuacct"),
        ("memory", "memory"),
        ("net_cls,net_prio", "net_cls,net_prio"),
        ("systemd", "none,name=systemd"),
    ]


def test_a_node_mounts_the_memory_hierarchy_only_when_the_kernel_has_it_on() -> None:
    hierarchies = v1_hierarchies(MACHINE_MOUNTS)
    assert "memory memory" in inside_mounts(hierarchies, memory_cgroup=True)
    off = inside_mounts(hierarchies, memory_cgroup=False)
    assert "memory" not in off
    assert "systemd none,name=systemd" in off
