"""The facts parser, on the real output of the facts script."""

from __future__ import annotations

from pikube.cluster.facts import (
    HostFacts,
    complete,
    facts_script,
    parse_containerd_config,
    parse_facts,
)
from tests.unit.cluster.conftest import FIXTURES


def test_a_fresh_pi(fresh: HostFacts) -> None:
    assert complete((FIXTURES / "fresh-pi.txt").read_text())
    assert fresh.model == "Raspberry Pi 4 Model B Rev 1.5"
    assert fresh.hostname == "node01"
    assert fresh.macs == (("eth0", "02:00:00:00:00:21"),)
    assert fresh.memory_cgroup is False
    assert fresh.cgroup_v2 is True
    assert fresh.boot_cmdline_path == "/boot/firmware/cmdline.txt"
    assert fresh.boot_cmdline.endswith("rootwait")
    assert fresh.unit("dphys-swapfile").is_enabled
    assert not fresh.unit("rpi-swap").exists
    assert fresh.package("dphys-swapfile") is not None
    assert fresh.package("kubelet") is None
    assert fresh.sysctls["net.ipv4.ip_forward"] == "1"
    assert fresh.module_available("br_netfilter")
    assert fresh.module_available("overlay")
    assert fresh.module_loadable("vxlan")
    assert not fresh.keyring_present
    assert fresh.clock_s > 1_700_000_000
    assert fresh.mem_total_kb > 0
    assert fresh.cpus >= 1


def test_a_prepared_pi(prepared: HostFacts) -> None:
    assert prepared.memory_cgroup is True
    assert "cgroup_enable=memory" in prepared.proc_cmdline
    assert prepared.unit("dphys-swapfile").enabled == "masked"
    assert prepared.unit("containerd").is_active
    kubelet = prepared.package("kubelet")
    assert kubelet is not None
    assert kubelet.upstream_version == "1.31.5"
    assert {"kubelet", "kubeadm", "kubectl"} <= prepared.holds
    config = prepared.containerd_config
    assert config.systemd_cgroup is True
    assert not config.cri_disabled
    assert config.sandbox_image == "registry.k8s.io/pause:3.10"


def test_a_cut_off_output_is_incomplete_and_missing_facts_are_empty() -> None:
    text = (FIXTURES / "fresh-pi.txt").read_text()
    cut = text[: text.index("@@pikube dpkg\n")]
    assert not complete(cut)
    facts = parse_facts(cut)
    assert facts.packages == {}
    assert facts.hostname == "node01"


def test_containerd_configs_of_both_formats() -> None:
    docker = parse_containerd_config('disabled_plugins = ["cri"]\n')
    assert docker.cri_disabled
    assert docker.systemd_cgroup is None
    v3 = parse_containerd_config(
        'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]\n'
        "SystemdCgroup = true\n"
        '[plugins."io.containerd.cri.v1.images".pinned_images]\n'
        'sandbox = "registry.k8s.io/pause:3.10"\n'
    )
    assert v3.systemd_cgroup is True
    assert v3.sandbox_image == "registry.k8s.io/pause:3.10"
    assert parse_containerd_config("version = [\n").parse_error
    assert not parse_containerd_config(None).present


def test_the_script_reads_every_managed_file() -> None:
    script = facts_script()
    for path in ("/boot/firmware/cmdline.txt", "/etc/containerd/config.toml", "/etc/fstab"):
        assert path in script
