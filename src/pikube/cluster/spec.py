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

from pikube.errors import InvalidInput, PikubeError
from pikube.inputs import SPEC_LIMIT_BYTES, InputBudget

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


class LoadBalancerImplementation(enum.Enum):
    PIKUBE = "pikube"
    METALLB = "metallb"


class LoadBalancer(_Model):
    implementation: LoadBalancerImplementation = Field(
        default=LoadBalancerImplementation.PIKUBE,
        description=(
            "pikube (its install manifest, shipped with pikube) or metallb (MetalLB's own "
            "metallb-native.yaml, unmodified: see manifest and sha256)"
        ),
    )
    mode: LoadBalancerMode = LoadBalancerMode.LAYER2
    pool: str = Field(description="first-last address range, or a CIDR")
    manifest: str | None = Field(
        default=None,
        description=(
            "metallb only: its metallb-native.yaml, a local file or an https URL; null: "
            "MetalLB v0.14.9's on GitHub"
        ),
    )
    sha256: str | None = Field(
        default=None,
        description=(
            "metallb only: the manifest's sha256; null with manifest null: v0.14.9's; apply "
            "refuses another (and says the one it got)"
        ),
    )

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("must be 64 hexadecimal digits")
        return value

    @field_validator("pool")
    @classmethod
    def _range(cls, value: str) -> str:
        try:
            pool_networks(value)
        except ValueError as exc:
            raise ValueError(f"not an address range (a.b.c.d-a.b.c.e) or CIDR: {exc}") from None
        return value

    @property
    def networks(self) -> list[Network]:
        return pool_networks(self.pool)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def pool_networks(text: str) -> list[Network]:
    """The networks that make up a pool written as `first-last` or as a CIDR."""
    if "-" not in text:
        return [ipaddress.ip_network(text)]
    first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
    if first.version != last.version or int(first) > int(last):
        raise ValueError("the first address must not come after the last")
    return list(ipaddress.summarize_address_range(first, last))


def network_overlaps(spec: ClusterSpec) -> list[str]:
    """The address ranges of the spec that must not share an address and do, each naming both
    fields: the pod network against the nodes, the services and the load balancer's pool;
    the service network against the nodes; the pool against the nodes (pure)."""
    fields: list[tuple[str, list[Network]]] = [
        (
            f"networking.pod_cidr {spec.networking.pod_cidr}",
            [ipaddress.ip_network(spec.networking.pod_cidr)],
        ),
        (
            f"networking.service_cidr {spec.networking.service_cidr}",
            [ipaddress.ip_network(spec.networking.service_cidr)],
        ),
    ]
    if spec.load_balancer is not None:
        fields.append(
            (f"load_balancer.pool {spec.load_balancer.pool}", spec.load_balancer.networks)
        )
    problems = []
    for i, (name, networks) in enumerate(fields):
        for other_name, others in fields[i + 1 :]:
            if any(a.overlaps(b) for a in networks for b in others):
                problems.append(f"{name} overlaps {other_name}")
        inside = [
            (index, node)
            for index, node in enumerate(spec.nodes)
            if (address := _ip_or_none(node.address)) is not None
            and any(address in n for n in networks)
        ]
        if inside:
            index, node = inside[0]
            count = len(inside) - 1
            more = f"; and {count} more node{'s' * (count > 1)}" if count else ""
            why = "" if name.startswith("load_balancer") else ": it must not overlap the nodes' LAN"
            problems.append(
                f"{name} contains nodes[{index}].address {node.address} ({node.name}{more}){why}"
            )
    return problems


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None  # a DNS name: nothing to compare before connecting


class Containerd(_Model):
    restrict_oom_score_adj: bool = Field(
        default=False,
        description=(
            "true where no process may lower an OOM score (no CAP_SYS_RESOURCE: unprivileged "
            "LXC containers, some VMs and sandboxes): containerd then never asks for a score "
            "below its own, else kubelet's pod sandboxes (-998) fail to start"
        ),
    )


class Flannel(_Model):
    """Where flannel's release manifest comes from, pinned by its sha256."""

    manifest: str | None = Field(
        default=None,
        description=(
            "a local file (offline sites) or an https URL; null: the release's kube-flannel.yml "
            "on GitHub for versions.flannel"
        ),
    )
    sha256: str | None = Field(
        default=None,
        description="the manifest's sha256; apply refuses another (and says the one it got)",
    )

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("must be 64 hexadecimal digits")
        return value

    def source(self, version: str) -> str:
        from pikube.cluster.addons import FLANNEL_RELEASE_URL  # noqa: PLC0415

        return self.manifest or FLANNEL_RELEASE_URL.format(version=version)


class Kubelet(_Model):
    eviction_hard: dict[str, str] | None = Field(
        default=None,
        description=(
            "kubelet's evictionHard thresholds (e.g. imagefs.available: 10%), given whole: "
            "kubelet does not merge its defaults into a partial map; null: kubelet's defaults"
        ),
    )


class DemoApp(_Model):
    enabled: bool = True
    image: str = "nginx:1.27"
    replicas: int = Field(default=1, ge=1)


class Cluster(_Model):
    name: str = Field(description="the cluster's name (its kubeconfig context is named after it)")
    bootstrap: bool = Field(
        default=True,
        description=(
            "true: apply runs kubeadm init and join, flannel, the load balancer and the demo "
            "app after preparing the hosts; false: it prepares the hosts only"
        ),
    )


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
    kubelet: Kubelet = Kubelet()
    flannel: Flannel = Flannel()
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
        overlaps = network_overlaps(self)
        if overlaps:
            more = len(overlaps) - 1
            raise ValueError(
                overlaps[0] + (f" (and {more} more overlap{'s' * (more > 1)})" if more else "")
            )
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


# Fields `cluster init` writes that the builder does not read yet. Each is marked "not yet
# used" in the JSON Schema, in the commented spec (a `# not yet used` comment on its line) and
# by `plan`. When the builder reads one, delete its entry here and its comment in SEED_SPEC (a
# test keeps the two equal). Since kubeadm init/join, flannel, the load balancer and the demo
# app are built (decision 0130), every field is used.
NOT_YET_USED: dict[str, str] = {}
NOT_YET_USED_COMMENT = "# not yet used"


# Fields only the stages after host preparation read (kubeadm's configuration, flannel, the
# load balancer, nginx): with `cluster.bootstrap: false` they change nothing, and `plan` says so
# for each one the spec sets; the JSON Schema and the commented spec say it too.
BOOTSTRAP_ONLY = (
    "networking.pod_cidr",
    "networking.service_cidr",
    "kubelet.eviction_hard",
    "versions.flannel",
    "flannel.manifest",
    "flannel.sha256",
    "load_balancer",
    "demo_app",
)
BOOTSTRAP_ONLY_NOTE = "Used only with cluster.bootstrap: true."


def _is_set(spec: ClusterSpec, dotted: str) -> bool:
    """Whether the spec's file sets the field (a default nobody wrote needs no notice)."""
    *parents, leaf = dotted.split(".")
    model: BaseModel | None = spec
    for part in parents:
        model = getattr(model, part, None)
    return (
        model is not None
        and leaf in model.model_fields_set
        and getattr(model, leaf, None) is not None
    )


def not_yet_used(spec: ClusterSpec) -> list[str]:
    """The NOT_YET_USED fields this spec sets."""
    return [dotted for dotted in NOT_YET_USED if _is_set(spec, dotted)]


def without_effect(spec: ClusterSpec) -> dict[str, str]:
    """The fields this spec sets that change nothing under its own settings, each with why
    (pure; `plan` prints them, so no field is a silent no-op)."""
    found = {dotted: f"not yet used: {NOT_YET_USED[dotted]}" for dotted in not_yet_used(spec)}
    if not spec.cluster.bootstrap:
        for dotted in BOOTSTRAP_ONLY:
            if _is_set(spec, dotted):
                found[dotted] = "cluster.bootstrap is false: apply prepares the hosts only"
        return found
    if spec.flannel.manifest is not None and _is_set(spec, "versions.flannel"):
        found["versions.flannel"] = (
            "flannel.manifest names the manifest, so its version is whatever that file holds"
        )
    if not spec.demo_app.enabled:
        for leaf in ("image", "replicas"):
            if leaf in spec.demo_app.model_fields_set:
                found[f"demo_app.{leaf}"] = "demo_app.enabled is false: nginx is not deployed"
    lb = spec.load_balancer
    if lb is not None and lb.mode is LoadBalancerMode.BGP:
        found["load_balancer.mode"] = (
            "bgp: apply installs a BGPAdvertisement but no BGPPeer (the spec has no field for "
            "peers), so nothing is announced until you apply a BGPPeer for your router"
        )
    return found


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_spec(data: Any, source: str) -> ClusterSpec:
    """Validate parsed YAML; a PikubeError names the source and the first bad field."""
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{source}: the spec must be a mapping (apiVersion, cluster, nodes, ...)"
        )
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        # A check across fields (at the top) names its fields itself.
        where = "" if not loc else f"{_location(loc)}: "
        message = first["msg"].removeprefix("Value error, ")
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise InvalidInput(f"{source}: {where}{message}{suffix}") from None


def load_spec(path: str | Path) -> ClusterSpec:
    path = Path(path)
    try:
        text = InputBudget(SPEC_LIMIT_BYTES, "the cluster spec").read_text(path)
    except OSError as exc:
        raise InvalidInput(f"cannot read the cluster spec {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{path}:{where}: not valid YAML: {problem}") from None
    return parse_spec(data, str(path))


def json_schema() -> dict[str, Any]:
    schema = ClusterSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pikube cluster.yaml"
    notes = {dotted: f"Not yet used: {why}." for dotted, why in NOT_YET_USED.items()}
    for dotted in BOOTSTRAP_ONLY:
        notes[dotted] = " ".join(filter(None, [notes.get(dotted), BOOTSTRAP_ONLY_NOTE]))
    for dotted, note in notes.items():
        *parents, leaf = dotted.split(".")
        node = schema
        for part in parents:
            ref = (
                node["properties"][part].get("$ref") or node["properties"][part]["anyOf"][0]["$ref"]
            )
            node = schema["$defs"][ref.rsplit("/", 1)[1]]
        prop = node["properties"][leaf]
        prop["description"] = " ".join(filter(None, [note, prop.get("description")]))
    return schema


SCHEMA_FILE = "cluster.schema.json"  # written next to the spec by `pikube cluster init`

SEED_SPEC = """\
# yaml-language-server: $schema=cluster.schema.json
# pikube cluster spec: the cluster of the seed article ("Raspberry Pi で構築する
# Bare-Metal Kubernetes"): one control plane and three workers on a home LAN.
# Check it with `pikube cluster plan -f cluster.yaml`; nothing changes until `apply`.
# apply prepares the Pis for kubeadm, runs kubeadm init and join, installs flannel, the load
# balancer and the demo app, and checks that nginx answers on its LoadBalancer IP.
# Editors: the line above points YAML language servers at the spec's JSON Schema, which
# `pikube cluster init` writes next to this file (or print it: `pikube cluster schema`).
apiVersion: pikube.dev/v1alpha1

cluster:
  # The seed renames kubeadm's context kubernetes-admin@kubernetes to this name; pikube names
  # the cluster, the context and the user of `pikube cluster kubeconfig` after it.
  name: kubeadm-orenge-cloud-playground
  # false: prepare the hosts only (then kubeadm init/join by hand, as the seed does); the
  # pod and service CIDRs, kubelet, versions.flannel, flannel, load_balancer and demo_app
  # are then not used (`plan` names those you set).
  bootstrap: true

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
  pod_cidr: 10.244.0.0/16       # flannel's net-conf.json Network is set to this
  service_cidr: 10.96.0.0/12
  kube_proxy_mode: iptables     # iptables | ipvs | nftables

# disable: swap off now and at every boot (swapon, fstab, dphys-swapfile, zram), as kubelet
# expects. keep: leave it on and start kubelet with failSwapOn: false.
swap: disable

# restrict_oom_score_adj: true only where no process may lower an OOM score (unprivileged LXC
# containers, some VMs); kubelet's pods then start there too. A Raspberry Pi needs false.
containerd:
  restrict_oom_score_adj: false

# flannel's release manifest (null: GitHub's for versions.flannel; a local file for offline
# sites), pinned by its sha256: apply refuses another and, while this is null, says the one it
# got so you can check it and pin it.
flannel:
  manifest: null
  sha256: null

load_balancer:
  implementation: pikube                # pikube (MetalLB-compatible) | metallb (its own manifest)
  mode: layer2                          # layer2 (ARP/NDP) | bgp (add your BGPPeer with kubectl)
  pool: 192.168.68.230-192.168.68.250   # the seed's IPAddressPool

demo_app:                               # the seed's nginx, as a type: LoadBalancer Service
  enabled: true                         # false: no nginx (image and replicas then unused)
  image: nginx:1.27
  replicas: 1
"""
