"""Operations: facts in, commands out (pyinfra style fixtures); nothing when there is no gap."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from pikube.cluster.facts import HostFacts, SwapEntry, UnitState
from pikube.cluster.operations import changes_for, kubelet_defaults, write_file_command
from pikube.cluster.plan import make_plan
from pikube.cluster.spec import ClusterSpec, KubeProxyMode, SwapPolicy

FRESH_PLAN = [
    "packages",
    "swap-dphys-swapfile",
    "modules-load",
    "sysctl-conf",
    "sysctl-now",
    "containerd-config",
    "containerd-service",
    "kubernetes-keyring",
    "kubernetes-list",
    "kubernetes-index",
    "kubernetes-packages",
    "kubernetes-hold",
    "kubelet-service",
    "cmdline",
    "reboot",
]


def _ids(spec: ClusterSpec, facts: HostFacts) -> list[str]:
    return [c.id for c in changes_for(spec, facts)]


def test_a_fresh_pi_gets_the_seeds_whole_preparation(spec: ClusterSpec, fresh: HostFacts) -> None:
    changes = changes_for(spec, fresh)
    assert [c.id for c in changes] == FRESH_PLAN
    commands = [cmd for c in changes for cmd in c.commands]
    assert commands[0] == "apt-get update -q -o DPkg::Lock::Timeout=300"
    assert "containerd" in commands[1].split()
    installs = [c for c in commands if "apt-get install" in c]
    assert all("--force-confold" in c for c in installs)  # never a question that waits
    assert all("DPkg::Lock::Timeout=300" in c for c in installs)  # apt-daily, a resumed run
    assert "systemctl mask dphys-swapfile.service" in commands
    assert any("kubelet=1.31.5-* kubeadm=1.31.5-* kubectl=1.31.5-*" in c for c in commands)
    assert "apt-mark hold kubelet kubeadm kubectl" in commands
    assert commands[-1] == "systemctl reboot"
    cmdline = next(c for c in changes if c.id == "cmdline")
    assert cmdline.diff is not None
    assert "+console=serial0" in cmdline.diff
    assert "cgroup_enable=memory cgroup_memory=1" in cmdline.diff


def test_a_prepared_pi_needs_nothing(spec: ClusterSpec, prepared: HostFacts) -> None:
    assert changes_for(spec, prepared) == []


def test_flags_in_the_file_but_not_in_the_running_kernel_mean_a_reboot_only(
    spec: ClusterSpec, prepared: HostFacts
) -> None:
    stale = dataclasses.replace(
        prepared, proc_cmdline=prepared.proc_cmdline.replace(" cgroup_enable=memory", "")
    )
    assert _ids(spec, stale) == ["reboot"]


def test_no_reboot_loop_when_the_kernel_got_the_flags_but_ignores_them(
    spec: ClusterSpec, prepared: HostFacts
) -> None:
    forced = dataclasses.replace(
        prepared,
        proc_cmdline=prepared.proc_cmdline + " cgroup_disable=memory",
        proc_cgroups={**prepared.proc_cgroups, "memory": False},
    )
    assert not forced.memory_cgroup
    assert _ids(spec, forced) == []


def test_every_swap_source_is_switched_off(spec: ClusterSpec, prepared: HostFacts) -> None:
    fstab = "proc /proc proc defaults 0 0\n/swapfile none swap sw 0 0\n"
    swapping = dataclasses.replace(
        prepared,
        swaps=(SwapEntry("/dev/zram0", "partition", 102396),),
        files={
            **prepared.files,
            "/etc/fstab": fstab,
            "/usr/lib/systemd/zram-generator.conf": "[zram0]\nzram-size = ram / 2\n",
        },
        units={**prepared.units, "rpi-swap": UnitState("enabled", "active")},
    )
    changes = {c.id: c for c in changes_for(spec, swapping)}
    assert list(changes) == ["swap-off", "swap-fstab", "swap-rpi-swap", "swap-zram"]
    assert changes["swap-off"].commands == ("swapoff -a",)
    assert changes["swap-rpi-swap"].commands == (
        "systemctl stop rpi-swap.service",
        "systemctl mask rpi-swap.service",
    )
    assert "+#/swapfile none swap sw 0 0" in (changes["swap-fstab"].diff or "")
    assert "proc /proc" not in (changes["swap-fstab"].diff or "").replace(" proc /proc", "")


def test_keeping_swap_leaves_it_alone(spec: ClusterSpec, fresh: HostFacts) -> None:
    keep = spec.model_copy(update={"swap": spec.swap.__class__("keep")})
    assert "swap-dphys-swapfile" not in _ids(keep, fresh)


def test_modules_not_built_in_are_loaded_now(spec: ClusterSpec, prepared: HostFacts) -> None:
    real_pi = dataclasses.replace(
        prepared, filesystems=frozenset(), sysctls={"net.ipv4.ip_forward": "1"}
    )
    changes = {c.id: c for c in changes_for(spec, real_pi)}
    assert changes["modules-now"].commands == ("modprobe overlay", "modprobe br_netfilter")
    assert changes["sysctl-now"].commands == ("sysctl -q -p /etc/sysctl.d/k8s.conf",)


def test_a_wrong_kube_version_is_reinstalled_through_the_hold(
    spec: ClusterSpec, prepared: HostFacts
) -> None:
    newer = spec.model_copy(
        update={"versions": spec.versions.model_copy(update={"kubernetes": "1.31.6"})}
    )
    changes = changes_for(newer, prepared)
    assert [c.id for c in changes] == ["kubernetes-packages"]
    assert "--allow-change-held-packages" in changes[0].commands[0]


def test_an_interrupted_package_install_is_finished_first(
    spec: ClusterSpec, prepared: HostFacts
) -> None:
    broken = dataclasses.replace(prepared, dpkg_audit="The following packages are only half")
    assert _ids(spec, broken) == ["dpkg-repair"]
    journal = dataclasses.replace(prepared, dpkg_journal=("0000", "0001"))
    assert _ids(spec, journal) == ["dpkg-repair"]


def test_a_package_manager_run_going_on_is_waited_for_first(
    spec: ClusterSpec, fresh: HostFacts
) -> None:
    busy = dataclasses.replace(
        fresh, package_managers=("812 apt-get", "830 dpkg"), dpkg_audit="half configured"
    )
    changes = changes_for(spec, busy)
    assert [c.id for c in changes[:3]] == ["wait-package-manager", "dpkg-repair", "packages"]
    wait = changes[0]
    assert "812 apt-get" in wait.summary
    (command,) = wait.commands
    assert command.startswith("for p in apt-get dpkg; do while pgrep -x $p")


def test_the_plan_keeps_unreachable_nodes_apart(spec: ClusterSpec, fresh: HostFacts) -> None:
    plan = make_plan(
        spec,
        {"master": fresh, "node01": fresh, "node02": fresh},
        {"node03": "node03: cannot connect"},
    )
    data = plan.to_json()
    hosts = data["hosts"]
    assert isinstance(hosts, dict)
    assert list(hosts) == ["master", "node01", "node02", "node03"]
    assert hosts["node03"] == {"changes": [], "error": "node03: cannot connect"}
    assert plan.change_count == 3 * len(FRESH_PLAN)


def test_file_writes_are_atomic_and_keep_content_verbatim(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "x.conf"
    content = "a = '$HOME' `id` \\n\nPIKUBE_EOF\nlast\n"
    subprocess.run(["sh", "-c", write_file_command(str(target), content)], check=True)
    assert target.read_text() == content
    assert not list(target.parent.glob("*.pikube-new"))


def test_ipvs_mode_loads_kube_proxys_modules_at_boot(
    spec: ClusterSpec, prepared: HostFacts
) -> None:
    ipvs = spec.model_copy(
        update={
            "networking": spec.networking.model_copy(update={"kube_proxy_mode": KubeProxyMode.IPVS})
        }
    )
    changes = {c.id: c for c in changes_for(ipvs, prepared)}
    assert list(changes) == ["modules-load", "modules-now"]
    assert "+ip_vs_wrr\n" in (changes["modules-load"].diff or "")
    assert "modprobe ip_vs" in changes["modules-now"].commands
    assert "modprobe overlay" not in changes["modules-now"].commands  # already there


def test_keeping_swap_tells_kubelet_to_tolerate_it(spec: ClusterSpec, prepared: HostFacts) -> None:
    keep = spec.model_copy(update={"swap": SwapPolicy.KEEP})
    (change,) = changes_for(keep, prepared)
    assert change.id == "kubelet-swap"
    assert "+KUBELET_EXTRA_ARGS=--fail-swap-on=false" in (change.diff or "")
    kept = dataclasses.replace(
        prepared,
        files={
            **prepared.files,
            "/etc/default/kubelet": "KUBELET_EXTRA_ARGS=--v=2 --fail-swap-on=false\n",
        },
    )
    assert changes_for(keep, kept) == []
    # Back to swap: disable, the flag goes and the user's own argument stays.
    (back,) = changes_for(spec, kept)
    assert "+KUBELET_EXTRA_ARGS=--v=2\n" in (back.diff or "")


def test_kubelet_defaults_keep_other_settings() -> None:
    text = 'KUBELET_EXTRA_ARGS="--node-ip=198.51.100.21"\nOTHER=1\n'
    assert kubelet_defaults(text, tolerate_swap=True) == (
        "KUBELET_EXTRA_ARGS=--node-ip=198.51.100.21 --fail-swap-on=false\nOTHER=1\n"
    )
    assert kubelet_defaults(None, tolerate_swap=False) is None
    assert kubelet_defaults("OTHER=1\n", tolerate_swap=True) == (
        "OTHER=1\nKUBELET_EXTRA_ARGS=--fail-swap-on=false\n"
    )


def test_containerd_may_be_told_not_to_lower_oom_scores(spec: ClusterSpec) -> None:
    from pikube.cluster.operations import containerd_config  # noqa: PLC0415
    from pikube.cluster.spec import Containerd  # noqa: PLC0415

    assert "restrict_oom_score_adj" not in containerd_config(spec)
    restricted = spec.model_copy(update={"containerd": Containerd(restrict_oom_score_adj=True)})
    config = containerd_config(restricted)
    cri = config.split('[plugins."io.containerd.grpc.v1.cri"]\n', 1)[1].split("\n\n", 1)[0]
    assert "  restrict_oom_score_adj = true" in cri.splitlines()


def test_every_file_an_operation_writes_is_gathered_as_a_fact(
    spec: ClusterSpec, fresh: HostFacts
) -> None:
    from pikube.cluster import facts, managed  # noqa: PLC0415
    from pikube.cluster.operations import Kind  # noqa: PLC0415

    changes = changes_for(spec, fresh)
    # A file change's last command is write_file_command's: `... && mv TMP PATH`.
    written = {c.commands[-1].split()[-1] for c in changes if c.kind is Kind.FILE}
    assert written
    assert written <= {*facts.FILES, facts.KEYRING}  # the keyring (binary): present or not
    assert set(managed.WRITTEN) <= set(facts.FILES)
    assert set(managed.BOOT_MODULES) <= set(facts.MODULES)
    assert set(managed.DESIRED_SYSCTLS) == set(facts.SYSCTLS)
