"""Doctor checks from facts fixtures: each fault named, in the user's terms."""

from __future__ import annotations

import dataclasses

from pikube.cluster.doctor import Status, diagnose
from pikube.cluster.facts import HostFacts
from pikube.cluster.spec import ClusterSpec, KubeProxyMode, SwapPolicy


def _report(spec: ClusterSpec, facts: dict[str, HostFacts], clock: float | None = None):  # type: ignore[no-untyped-def]
    now = clock if clock is not None else next(iter(facts.values())).clock_s
    return diagnose(spec, facts, {}, local_clock_s=now)


def _four(facts: HostFacts) -> dict[str, HostFacts]:
    result = {}
    for i, node in enumerate(("master", "node01", "node02", "node03")):
        result[node] = dataclasses.replace(
            facts,
            hostname=node,
            machine_id=f"{i:032x}",
            serial=f"1000000{i}",
            macs=(("eth0", f"02:00:00:00:00:2{i}"),),
        )
    return result


def test_a_prepared_cluster_is_healthy(spec: ClusterSpec, prepared: HostFacts) -> None:
    report = _report(spec, _four(prepared))
    bad = [(n, c.id) for n, cs in report.hosts.items() for c in cs if c.status is not Status.OK]
    assert bad == []
    assert not report.failed


def test_a_fresh_pi_fails_on_the_memory_cgroup_and_swap(
    spec: ClusterSpec, fresh: HostFacts
) -> None:
    report = _report(spec, _four(fresh))
    memory = report.check("node01", "memory-cgroup")
    assert memory.status is Status.FAIL
    assert memory.apply_fixes
    assert "cgroup_enable=memory" in memory.fix
    swap = report.check("node01", "swap")
    assert swap.status is Status.FAIL
    assert "dphys-swapfile" in swap.message


def test_firmware_forcing_the_memory_cgroup_off_is_not_fixable_by_apply(
    spec: ClusterSpec, prepared: HostFacts
) -> None:
    forced = dataclasses.replace(
        prepared,
        proc_cmdline=prepared.proc_cmdline + " cgroup_disable=memory",
        proc_cgroups={**prepared.proc_cgroups, "memory": False},
    )
    check = _report(spec, _four(forced)).check("node02", "memory-cgroup")
    assert check.status is Status.FAIL
    assert not check.apply_fixes
    assert "forces cgroup_disable=memory" in check.message


def test_flags_in_the_wrong_cmdline_file(spec: ClusterSpec, fresh: HostFacts) -> None:
    wrong = dataclasses.replace(
        fresh,
        files={
            **fresh.files,
            "/boot/cmdline.txt": fresh.boot_cmdline + " cgroup_enable=memory cgroup_memory=1\n",
        },
    )
    check = _report(spec, _four(wrong)).check("node01", "cmdline-file")
    assert check.status is Status.FAIL
    assert "/boot/cmdline.txt" in check.message
    assert "/boot/firmware/cmdline.txt" in check.message


def test_cri_disabled_cgroupfs_and_sandbox(spec: ClusterSpec, prepared: HostFacts) -> None:
    docker = dataclasses.replace(
        prepared,
        files={**prepared.files, "/etc/containerd/config.toml": 'disabled_plugins = ["cri"]\n'},
    )
    report = _report(spec, _four(docker))
    assert report.check("node01", "containerd-cri").status is Status.FAIL
    assert "[ERROR CRI]" in report.check("node01", "containerd-cri").message
    assert report.check("node01", "containerd-cgroup-driver").status is Status.FAIL
    assert report.check("node01", "containerd-sandbox-image").status is Status.WARN


def test_32_bit_userland(spec: ClusterSpec, prepared: HostFacts) -> None:
    armhf = dataclasses.replace(prepared, machine="aarch64", dpkg_arch="armhf")
    check = _report(spec, _four(armhf)).check("master", "arch-64bit")
    assert check.status is Status.FAIL
    assert "32-bit userland (armhf)" in check.message


def test_missing_vxlan_and_ip_forward_off(spec: ClusterSpec, prepared: HostFacts) -> None:
    no_vxlan = dataclasses.replace(
        prepared,
        sys_module=prepared.sys_module - {"vxlan"},
        sysctls={**prepared.sysctls, "net.ipv4.ip_forward": "0"},
    )
    report = _report(spec, _four(no_vxlan))
    assert "vxlan" in report.check("node01", "kernel-modules").message
    assert report.check("node01", "ip-forward").status is Status.FAIL


def test_unheld_and_mismatched_kube_packages(spec: ClusterSpec, prepared: HostFacts) -> None:
    unheld = dataclasses.replace(prepared, holds=frozenset())
    assert _report(spec, _four(unheld)).check("node01", "kube-packages").status is Status.WARN
    newer = spec.model_copy(
        update={"versions": spec.versions.model_copy(update={"kubernetes": "1.31.6"})}
    )
    check = _report(newer, _four(prepared)).check("node01", "kube-packages")
    assert check.status is Status.FAIL
    assert "kubelet 1.31.5" in check.message


def test_cloned_sd_cards_share_identities(spec: ClusterSpec, prepared: HostFacts) -> None:
    facts = _four(prepared)
    facts["node03"] = dataclasses.replace(facts["node03"], machine_id=facts["node02"].machine_id)
    report = _report(spec, facts)
    check = report.check("node03", "unique-identity")
    assert check.status is Status.FAIL
    assert "also on node02" in check.message
    assert report.check("node01", "unique-identity").status is Status.OK


def test_clock_skew_and_small_control_plane(spec: ClusterSpec, prepared: HostFacts) -> None:
    small = dataclasses.replace(prepared, mem_total_kb=900 * 1024, cpus=4)
    report = _report(spec, _four(small), clock=prepared.clock_s - 30)
    assert report.check("master", "clock-skew").status is Status.FAIL
    assert "ahead by 30.0 s" in report.check("master", "clock-skew").message
    assert report.check("master", "resources").status is Status.FAIL
    assert report.check("node01", "resources").status is Status.WARN


def test_unreachable_nodes_and_json_shape(spec: ClusterSpec, prepared: HostFacts) -> None:
    facts = _four(prepared)
    del facts["node03"]
    report = diagnose(spec, facts, {"node03": "node03: cannot connect"}, prepared.clock_s)
    data = report.to_json()
    hosts = data["hosts"]
    assert isinstance(hosts, dict)
    assert hosts["node03"]["checks"][0]["id"] == "reachable"
    assert hosts["node03"]["checks"][0]["status"] == "fail"
    assert set(hosts["master"]["checks"][0]) >= {"id", "status", "message", "fix"}


def test_swap_kept_needs_kubelet_told(spec: ClusterSpec, fresh: HostFacts) -> None:
    keep = spec.model_copy(update={"swap": SwapPolicy.KEEP})
    check = _report(keep, _four(fresh)).check("node01", "swap")
    assert check.status is Status.FAIL
    assert "--fail-swap-on=false" in check.message
    assert check.apply_fixes
    told = dataclasses.replace(
        fresh,
        files={**fresh.files, "/etc/default/kubelet": "KUBELET_EXTRA_ARGS=--fail-swap-on=false\n"},
    )
    assert _report(keep, _four(told)).check("node01", "swap").status is Status.OK
    assert _report(spec, _four(told)).check("node01", "swap").status is Status.FAIL


def test_ipvs_mode_needs_ip_vs(spec: ClusterSpec, prepared: HostFacts) -> None:
    ipvs = spec.model_copy(
        update={
            "networking": spec.networking.model_copy(update={"kube_proxy_mode": KubeProxyMode.IPVS})
        }
    )
    no_ipvs = dataclasses.replace(prepared, sys_module=prepared.sys_module - {"ip_vs"})
    check = _report(ipvs, _four(no_ipvs)).check("master", "kernel-modules")
    assert check.status is Status.FAIL
    assert "ip_vs" in check.message
    assert "kube-proxy's ipvs mode" in check.message
    assert _report(spec, _four(no_ipvs)).check("master", "kernel-modules").status is Status.OK
