"""The lab's Pis for `pikube cluster apply` to build the whole cluster on (not by hand).

Lab glue: the same parts as seedcluster.up_kubernetes (the lab registry, flannel's manifest
from the module the lab builds, the Pis booted as Kubernetes nodes, the machine's conntrack
limit kube-proxy insists on) but it stops before host preparation and writes a cluster.yaml
with `cluster.bootstrap: true` and flannel's manifest as a local file pinned by its sha256,
so the builder does everything the seed does. pikube's own image is served by the router's
app registry, for the load balancer the builder installs from pikube's manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from pikube.lab import state
from pikube.lab.hosts import sshhosts
from pikube.lab.kubernetes import appimage, registry, seedcluster
from pikube.lab.lab import Lab
from pikube.system import require_commands


def flannel_manifest_file(lab: Lab) -> tuple[Path, str]:
    """flannel's kube-flannel.yml in the lab's directory, and its sha256."""
    text = seedcluster.flannel_manifest()
    path = state.lab_dir(lab.name) / "kubernetes" / "kube-flannel.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path, hashlib.sha256(text.encode()).hexdigest()


def up_for_builder(lab: Lab, say: Callable[[str], None] = print) -> Path:
    """Boot the lab's Pis as fresh Kubernetes nodes; the path of a cluster.yaml for them."""
    require_commands("ssh")
    lab.require_up()
    registry.up_registry(lab)
    appimage.serve_image(lab, appimage.ensure_image())
    flannel = flannel_manifest_file(lab)
    sshhosts.up_ssh_hosts(lab, kubernetes_nodes=True)
    seedcluster.set_conntrack_max(say)
    spec = state.lab_dir(lab.name) / "kubernetes" / "cluster.yaml"
    spec.write_text(sshhosts.cluster_spec_yaml(lab, flannel))
    return spec
