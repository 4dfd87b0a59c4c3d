"""The cluster spec (cluster.yaml): what the user wants, validated before anything connects.

Owns: the pydantic model, loading YAML into it with errors that name the file and the field,
the published JSON Schema, and the commented spec `pikube cluster init` writes (the seed's
cluster). Pure apart from reading the file; it must not connect to anything.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pikube.errors import PikubeError

API_VERSION = "pikube.dev/v1alpha1"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class Role(enum.Enum):
    CONTROL_PLANE = "control-plane"
    WORKER = "worker"


class SwapPolicy(enum.Enum):
    DISABLE = "disable"  # swap off now and at every boot (fstab, dphys-swapfile, zram)
    KEEP = "keep"  # leave swap on; kubelet gets failSwapOn: false


class KubeProxyMode(enum.Enum):
    IPTABLES = "iptables"
    IPVS = "ipvs"
    NFTABLES = "nftables"


class LoadBalancerMode(enum.Enum):
    LAYER2 = "layer2"
    BGP = "bgp"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class SshSettings(_Model):
    """How to reach a node; `ssh:` at the top sets the defaults, a node may override them."""

    user: str | None = Field(default=None, description="SSH user (root, or a sudoer)")
    key: str | None = Field(default=None, description="path of the private key file")
    port: int | None = Field(default=None, ge=1, le=65535)


class Defaults(_Model):
    user: str = "pi"
    key: str = "~/.ssh/id_ed25519"
    port: int = Field(default=22, ge=1, le=65535)
    known_hosts: str = Field(
        default="~/.local/state/pikube/known_hosts",
        description="where host keys are recorded on first contact and checked afterwards",
    )


class Node(_Model):
    name: str = Field(description="the node's name (and the hostname it should have)")
    address: str = Field(description="IP address or DNS name the builder connects to")
    role: Role
    ssh: SshSettings = SshSettings()

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be a lower-case DNS label (a-z, 0-9, '-'), e.g. node01")
        return value


class Versions(_Model):
    kubernetes: str = Field(default="1.31.5", description="kubelet/kubeadm/kubectl version")
    containerd: str | None = Field(
        default=None,
        description="Debian package version of containerd to pin; null: the OS repository's",
    )
    flannel: str = "v0.26.3"

    @field_validator("kubernetes")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError("must look like 1.31.5")
        return value

    @property
    def kubernetes_minor(self) -> str:
        major, minor, _patch = self.kubernetes.split(".")
        return f"{major}.{minor}"


class Packages(_Model):
    kubernetes_repository: str | None = Field(
        default=None,
        description="the Kubernetes apt repository; null: pkgs.k8s.io for the minor version",
    )

    def repository(self, versions: Versions) -> str:
        url = self.kubernetes_repository or (
            f"https://pkgs.k8s.io/core:/stable:/v{versions.kubernetes_minor}/deb/"
        )
        return url if url.endswith("/") else url + "/"


class Networking(_Model):
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    kube_proxy_mode: KubeProxyMode = KubeProxyMode.IPTABLES

    @field_validator("pod_cidr", "service_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            ipaddress.ip_network(value)
        except ValueError as exc:
            raise ValueError(f"not a network in CIDR form: {exc}") from None
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> Networking:
        if ipaddress.ip_network(self.pod_cidr).overlaps(ipaddress.ip_network(self.service_cidr)):
            raise ValueError(f"pod_cidr {self.pod_cidr} overlaps service_cidr {self.service_cidr}")
        return self


class LoadBalancer(_Model):
    mode: LoadBalancerMode = LoadBalancerMode.LAYER2
    pool: str = Field(description="first-last address range, or a CIDR")

    @field_validator("pool")
    @classmethod
    def _range(cls, value: str) -> str:
        try:
            if "-" in value:
                first, last = (ipaddress.ip_address(p.strip()) for p in value.split("-", 1))
                if first.version != last.version or int(first) > int(last):
                    raise ValueError("the first address must not come after the last")
            else:
                ipaddress.ip_network(value)
        except ValueError as exc:
            raise ValueError(f"not an address range (a.b.c.d-a.b.c.e) or CIDR: {exc}") from None
        return value


class Containerd(_Model):
    restrict_oom_score_adj: bool = Field(
        default=False,
        description=(
            "true where no process may lower an OOM score (no CAP_SYS_RESOURCE: unprivileged "
            "LXC containers, some VMs and sandboxes): containerd then never asks for a score "
            "below its own, else kubelet's pod sandboxes (-998) fail to start"
        ),
    )


class DemoApp(_Model):
    enabled: bool = True
    image: str = "nginx:1.27"
    replicas: int = Field(default=1, ge=1)


class Cluster(_Model):
    name: str = Field(description="the cluster's name (its kubeconfig context is named after it)")


class ClusterSpec(_Model):
    api_version: Annotated[str, Field(alias="apiVersion")] = API_VERSION
    cluster: Cluster
    ssh: Defaults = Defaults()
    nodes: list[Node] = Field(min_length=1)
    versions: Versions = Versions()
    packages: Packages = Packages()
    networking: Networking = Networking()
    swap: SwapPolicy = SwapPolicy.DISABLE
    containerd: Containerd = Containerd()
    load_balancer: LoadBalancer | None = None
    demo_app: DemoApp = DemoApp()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("api_version")
    @classmethod
    def _api(cls, value: str) -> str:
        if value != API_VERSION:
            raise ValueError(f"must be {API_VERSION}")
        return value

    @model_validator(mode="after")
    def _nodes(self) -> ClusterSpec:
        seen: dict[str, int] = {}
        for index, node in enumerate(self.nodes):
            for key in (f"name {node.name}", f"address {node.address}"):
                if key in seen:
                    raise ValueError(f"nodes[{index}] repeats the {key} of nodes[{seen[key]}]")
                seen[key] = index
        planes = [n.name for n in self.nodes if n.role is Role.CONTROL_PLANE]
        if len(planes) != 1:
            raise ValueError(f"needs exactly one node with role control-plane (has {len(planes)})")
        return self

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise PikubeError(f"the spec has no node {name!r}")

    def ssh_for(self, node: Node) -> tuple[str, str, int]:
        """(user, key path, port) for a node, its own settings over the defaults."""
        return (
            node.ssh.user or self.ssh.user,
            str(Path(node.ssh.key or self.ssh.key).expanduser()),
            node.ssh.port or self.ssh.port,
        )

    @property
    def known_hosts(self) -> Path:
        return Path(self.ssh.known_hosts).expanduser()


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_spec(data: Any, source: str) -> ClusterSpec:
    """Validate parsed YAML; a PikubeError names the source and the first bad field."""
    if not isinstance(data, dict):
        raise PikubeError(f"{source}: the spec must be a mapping (apiVersion, cluster, nodes, ...)")
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _location(tuple(first["loc"]))
        message = first["msg"].removeprefix("Value error, ")
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise PikubeError(f"{source}: {where}: {message}{suffix}") from None


def load_spec(path: str | Path) -> ClusterSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PikubeError(f"cannot read the cluster spec {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PikubeError(f"{path}:{where}: not valid YAML: {problem}") from None
    return parse_spec(data, str(path))


def json_schema() -> dict[str, Any]:
    schema = ClusterSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pikube cluster.yaml"
    return schema


SCHEMA_FILE = "cluster.schema.json"  # written next to the spec by `pikube cluster init`

SEED_SPEC = """\
# yaml-language-server: $schema=cluster.schema.json
# pikube cluster spec: the cluster of the seed article ("Raspberry Pi で構築する
# Bare-Metal Kubernetes"): one control plane and three workers on a home LAN.
# Check it with `pikube cluster plan -f cluster.yaml`; nothing changes until `apply`.
# Editors: the line above points YAML language servers at the spec's JSON Schema, which
# `pikube cluster init` writes next to this file (or print it: `pikube cluster schema`).
apiVersion: pikube.dev/v1alpha1

cluster:
  # The seed renames kubeadm's context kubernetes-admin@kubernetes to this name.
  name: kubeadm-orenge-cloud-playground

# How to reach every node; a node may override user, key and port under its own `ssh:`.
# A user other than root must be able to run `sudo -n`.
ssh:
  user: pi
  key: ~/.ssh/id_ed25519
  port: 22
  # Host keys are recorded here on first contact; a changed key stops the run.
  known_hosts: ~/.local/state/pikube/known_hosts

nodes:
  - {name: master, address: 192.168.68.200, role: control-plane}
  - {name: node01, address: 192.168.68.201, role: worker}
  - {name: node02, address: 192.168.68.202, role: worker}
  - {name: node03, address: 192.168.68.203, role: worker}

versions:
  kubernetes: 1.31.5      # kubelet, kubeadm and kubectl, pinned and held
  # The seed used containerd 1.7.25; pikube installs the OS repository's containerd
  # package (Raspberry Pi OS 12: 1.6.20). Set a Debian version here to pin one.
  containerd: null
  flannel: v0.26.3

packages:
  # null: https://pkgs.k8s.io/core:/stable:/v1.31/deb/ (one repository per minor version)
  kubernetes_repository: null

networking:
  pod_cidr: 10.244.0.0/16       # flannel's default network
  service_cidr: 10.96.0.0/12
  kube_proxy_mode: iptables     # iptables | ipvs | nftables

# disable: swap off now and at every boot (swapon, fstab, dphys-swapfile, zram), as kubelet
# expects. keep: leave it on and start kubelet with failSwapOn: false.
swap: disable

# restrict_oom_score_adj: true only where no process may lower an OOM score (unprivileged LXC
# containers, some VMs); kubelet's pods then start there too. A Raspberry Pi needs false.
containerd:
  restrict_oom_score_adj: false

load_balancer:
  mode: layer2                          # layer2 (ARP/NDP) | bgp
  pool: 192.168.68.230-192.168.68.250   # the seed's IPAddressPool

demo_app:
  enabled: true
  image: nginx:1.27
  replicas: 1
"""
