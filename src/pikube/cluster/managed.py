"""What the builder manages on a node, declared once: the files it writes, the kernel modules,
sysctls, packages and units it sets up. Pure constants.

`operations` builds its changes from these; `facts` gathers exactly these (plus what only the
doctor reads), so a path added here is read before it is planned.
"""

from __future__ import annotations

from pikube.cluster.spec import KubeProxyMode

# Files the operations write.
FSTAB = "/etc/fstab"
MODULES_LOAD = "/etc/modules-load.d/k8s.conf"
SYSCTL_CONF = "/etc/sysctl.d/k8s.conf"
CONTAINERD_CONF = "/etc/containerd/config.toml"
KUBE_LIST = "/etc/apt/sources.list.d/kubernetes.list"
ZRAM_CONF = "/etc/systemd/zram-generator.conf"
# Read by kubelet's systemd drop-in from the kubeadm package (EnvironmentFile=, Debian family).
KUBELET_DEFAULTS = "/etc/default/kubelet"
KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
# The kernel command line the firmware reads (Bookworm's first; the builder edits the one that
# exists), and zram's packaged default, which is only read.
BOOT_CMDLINES = ("/boot/firmware/cmdline.txt", "/boot/cmdline.txt")
ZRAM_DEFAULT = "/usr/lib/systemd/zram-generator.conf"
WRITTEN = (
    FSTAB,
    MODULES_LOAD,
    SYSCTL_CONF,
    CONTAINERD_CONF,
    KUBE_LIST,
    ZRAM_CONF,
    KUBELET_DEFAULTS,
)

# Kernel modules loaded at every boot: containerd's overlay, kubeadm's br_netfilter, and what
# kube-proxy's mode needs (ipvs: the schedulers kube-proxy uses and conntrack).
BASE_MODULES = ("overlay", "br_netfilter")
KUBE_PROXY_MODULES = {
    KubeProxyMode.IPVS: ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"),
}
BOOT_MODULES = BASE_MODULES + tuple(m for ms in KUBE_PROXY_MODULES.values() for m in ms)

DESIRED_SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}

BASE_PACKAGES = ("apt-transport-https", "ca-certificates", "curl", "gpg")
KUBE_PACKAGES = ("kubelet", "kubeadm", "kubectl")
CONTAINERD = "containerd"
SWAP_UNITS = ("dphys-swapfile", "rpi-swap")  # stopped and disabled: swap off for good
PACKAGES = (*BASE_PACKAGES, CONTAINERD, *KUBE_PACKAGES, "dphys-swapfile")
UNITS = (*SWAP_UNITS, CONTAINERD, "kubelet")
