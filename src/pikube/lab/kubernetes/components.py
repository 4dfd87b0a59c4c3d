"""The pinned components of the seed's cluster: what pikube builds, from which module, how.

Owns: the table of components (upstream project, module, version, main packages, build tags,
cgo, upstream's version stamping), the exact `go build` / `cc` command lines that build them,
and the cache key of a build. Pure: plain data in and out; no files, no processes, no clock
(gobuild.py runs the commands and owns the cache).

Versions are the seed's where the Go module proxy serves them; where it answers 403 ("not
available") the nearest available version is pinned instead and `pinned` keeps the seed's, so
the substitution is visible (docs/decisions/0051). Each Go component is built from a wrapper
module in pikube/data/gobuild/<wrapper>/ (go.mod, go.sum, tools.go; committed): it requires
the upstream module at the pinned version and names the main packages in tools.go, so the
build is reproducible from the checksums alone, with the Go release upstream used (0050).
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

# Bump when the way a component is built changes in a way neither its table entry nor its
# commands show (the cache layout, the manifest): every cached build is then rebuilt once.
RECIPE_VERSION = 1


class Toolchain(enum.Enum):
    GO = "go"
    C = "c"  # pause: one C file, compiled statically


@dataclass(frozen=True)
class Binary:
    """One program of a component: its file name and where its source is.

    For Go, `package` is the main package's import path; for C, the source file's path inside
    the module `Component.module` (read from the Go module cache).
    """

    name: str
    package: str
    cgo: bool = False  # upstream builds it with cgo (kubelet, containerd, flanneld)


@dataclass(frozen=True)
class Component:
    name: str  # what `pikube lab build --component` and `ensure_built` take
    module: str  # the upstream module holding the sources
    version: str  # the version built (served by the module proxy)
    pinned: str  # the version the seed names; differs from `version` only when substituted
    binaries: tuple[Binary, ...]
    # The Go release upstream built this version with (its .go-version, go.mod toolchain line
    # or release image); the go command fetches it from the module proxy (GOTOOLCHAIN).
    go: str = ""
    # Upstream's version stamping: `-X symbol=value` pairs, as upstream's release build sets them.
    stamps: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    toolchain: Toolchain = Toolchain.GO
    wrapper: str = ""  # directory under pikube/data/gobuild; the component's name if empty
    cflags: tuple[str, ...] = ()  # C only
    # cgo binaries linked statically all the same (`-extldflags=-static`), as upstream does
    cgo_static: bool = False

    @property
    def wrapper_dir(self) -> str:
        return self.wrapper or self.name

    @property
    def substituted(self) -> bool:
        return self.version != self.pinned


def _kubernetes_stamps(version: str, commit: str, build_date: str) -> tuple[tuple[str, str], ...]:
    """What hack/lib/version.sh stamps into every Kubernetes binary (both version packages)."""
    major, minor = version.lstrip("v").split(".")[:2]
    stamps: list[tuple[str, str]] = []
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        stamps += [
            (f"{package}.gitVersion", version),
            (f"{package}.gitMajor", major),
            (f"{package}.gitMinor", minor),
            (f"{package}.gitCommit", commit),
            (f"{package}.gitTreeState", "clean"),
            (f"{package}.buildDate", build_date),
        ]
    return tuple(stamps)


KUBERNETES_VERSION = "v1.31.5"
# The tag's commit, as the module proxy reports it (`.info` Origin.Hash), and its commit date.
_KUBERNETES_COMMIT = "af64d838aacd9173317b39cf273741816bd82377"
_KUBERNETES_BUILD_DATE = "2025-01-15T14:32:04Z"

# containerd's v1.7.25 tag (what its release binaries print as the revision).
_CONTAINERD_COMMIT = "bcc810d6b9066471b0b6fa75f557a15a1cbf31bb"

_K8S = "k8s.io/kubernetes/cmd"
_CNI = "github.com/containernetworking/plugins/plugins"
# What kubernetes-cni 1.5.1 ships: every Linux plugin of containernetworking/plugins v1.5.1.
_CNI_PLUGINS = (
    "main/bridge",
    "main/dummy",
    "main/host-device",
    "main/ipvlan",
    "main/loopback",
    "main/macvlan",
    "main/ptp",
    "main/tap",
    "main/vlan",
    "ipam/dhcp",
    "ipam/host-local",
    "ipam/static",
    "meta/bandwidth",
    "meta/firewall",
    "meta/portmap",
    "meta/sbr",
    "meta/tuning",
    "meta/vrf",
)

COMPONENTS: tuple[Component, ...] = (
    Component(
        name="kubernetes",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        pinned=KUBERNETES_VERSION,
        go="go1.22.10",
        binaries=(
            Binary("kubeadm", f"{_K8S}/kubeadm"),
            Binary("kubectl", f"{_K8S}/kubectl"),
            Binary("kube-apiserver", f"{_K8S}/kube-apiserver"),
            Binary("kube-controller-manager", f"{_K8S}/kube-controller-manager"),
            Binary("kube-scheduler", f"{_K8S}/kube-scheduler"),
            Binary("kube-proxy", f"{_K8S}/kube-proxy"),
            Binary("kubelet", f"{_K8S}/kubelet", cgo=True),  # upstream's only dynamic one
        ),
        stamps=_kubernetes_stamps(KUBERNETES_VERSION, _KUBERNETES_COMMIT, _KUBERNETES_BUILD_DATE),
        tags=("selinux", "notest"),
    ),
    Component(
        # registry.k8s.io/pause:3.10, the sandbox image kubeadm v1.31.5 pins; its source is
        # build/pause/ of the Kubernetes tree (REV: `git describe --contains` of the tag).
        name="pause",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        pinned=KUBERNETES_VERSION,
        binaries=(Binary("pause", "build/pause/linux/pause.c"),),
        toolchain=Toolchain.C,
        wrapper="kubernetes",
        cflags=("-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v3.10-{KUBERNETES_VERSION}"),
    ),
    Component(
        name="etcd",
        module="go.etcd.io/etcd/server/v3",
        version="v3.5.15",
        pinned="v3.5.15",
        go="go1.21.12",
        binaries=(
            Binary("etcd", "go.etcd.io/etcd/server/v3"),
            Binary("etcdctl", "go.etcd.io/etcd/etcdctl/v3"),
        ),
        stamps=(("go.etcd.io/etcd/api/v3/version.GitSHA", "9a55333"),),
    ),
    Component(
        name="coredns",
        module="github.com/coredns/coredns",
        version="v1.11.3",
        pinned="v1.11.3",
        go="go1.21.8",
        binaries=(Binary("coredns", "github.com/coredns/coredns"),),
        stamps=(("github.com/coredns/coredns/coremain.GitCommit", "a7ed346"),),
    ),
    Component(
        name="cri-tools",
        # Served as sigs.k8s.io/cri-tools, but its go.mod names the GitHub path, which the
        # wrapper therefore requires and replaces with the served one. Stamped as its
        # hack/release.sh stamps releases (the tag, with its "v").
        module="github.com/kubernetes-sigs/cri-tools",
        version="v1.30.0",
        pinned="v1.31.1",
        go="go1.22.1",
        binaries=(Binary("crictl", "github.com/kubernetes-sigs/cri-tools/cmd/crictl"),),
        stamps=(("github.com/kubernetes-sigs/cri-tools/pkg/version.Version", "v1.30.0"),),
    ),
    Component(
        name="cni-plugins",
        module="github.com/containernetworking/plugins",
        version="v1.5.1",
        pinned="v1.5.1",
        go="go1.22.4",
        binaries=tuple(Binary(p.rsplit("/", 1)[1], f"{_CNI}/{p}") for p in _CNI_PLUGINS),
        stamps=(
            (
                "github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion",
                "v1.5.1",
            ),
        ),
    ),
    Component(
        name="flannel",
        module="github.com/flannel-io/flannel",
        version="v0.26.1",
        pinned="v0.26.3",
        go="go1.23.3",
        # cgo: the udp backend's proxy is C (upstream: CGO_ENABLED=1 on amd64, linked static)
        binaries=(Binary("flanneld", "github.com/flannel-io/flannel", cgo=True),),
        cgo_static=True,
        stamps=(("github.com/flannel-io/flannel/pkg/version.Version", "v0.26.1"),),
    ),
    Component(
        # No version of github.com/flannel-io/cni-plugin is served; its ancestor, the flannel
        # meta plugin of containernetworking/plugins (removed in v1.0.0), is (decision 0051).
        name="flannel-cni-plugin",
        module="github.com/containernetworking/plugins",
        version="v0.9.1",
        pinned="v1.6.0-flannel1",
        go="go1.15.8",
        binaries=(Binary("flannel", f"{_CNI}/meta/flannel"),),
        stamps=(
            (
                "github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion",
                "v0.9.1",
            ),
        ),
    ),
    Component(
        name="containerd",
        module="github.com/containerd/containerd",
        version="v1.7.25",
        pinned="v1.7.25",
        go="go1.22.10",
        binaries=(
            Binary("containerd", "github.com/containerd/containerd/cmd/containerd", cgo=True),
            Binary(
                "containerd-shim-runc-v2",
                "github.com/containerd/containerd/cmd/containerd-shim-runc-v2",
            ),
            Binary("ctr", "github.com/containerd/containerd/cmd/ctr", cgo=True),
        ),
        stamps=(
            ("github.com/containerd/containerd/version.Version", "v1.7.25"),
            ("github.com/containerd/containerd/version.Revision", _CONTAINERD_COMMIT),
            (
                "github.com/containerd/containerd/version.Package",
                "github.com/containerd/containerd",
            ),
        ),
        tags=("no_aufs", "no_btrfs", "no_devmapper", "no_zfs"),
    ),
    Component(
        # Not part of the seed's cluster: MetalLB itself, to measure pikube against it in the
        # same lab (issue 13). Upstream's Dockerfiles: golang 1.22.7, CGO_ENABLED=0.
        name="metallb",
        module="go.universe.tf/metallb",
        version="v0.14.9",
        pinned="v0.14.9",
        go="go1.22.7",
        binaries=(
            Binary("metallb-controller", "go.universe.tf/metallb/controller"),
            Binary("metallb-speaker", "go.universe.tf/metallb/speaker"),
        ),
        # No stamps: upstream's release sets gitCommit/gitBranch to the release commit, which
        # the module does not carry; the version (0.14.9) is in the source itself.
    ),
)

BY_NAME: Mapping[str, Component] = {c.name: c for c in COMPONENTS}


def component(name: str) -> Component | None:
    return BY_NAME.get(name)


def go_toolchain(comp: Component) -> str:
    """GOTOOLCHAIN for the component's build: upstream's Go release (every Go component pins
    one), else the local Go."""
    return comp.go or "local"


def ldflags(comp: Component) -> str:
    """The -ldflags of a Go component: stripped, plus upstream's version stamping."""
    flags = ["-s", "-w"]
    for symbol, value in comp.stamps:
        flags.append(f"-X {symbol}={value}")
    if comp.cgo_static:
        flags.append("-extldflags=-static")
    return " ".join(flags)


def default_binary_name(package: str) -> str:
    """The file name `go build -o DIR/` gives a main package: its last path element, or the one
    before it when the last is a major-version suffix (go.etcd.io/etcd/server/v3 -> server)."""
    parts = package.split("/")
    if len(parts) > 1 and re.fullmatch(r"v[0-9]+", parts[-1]):
        return parts[-2]
    return parts[-1]


@dataclass(frozen=True)
class BuildStep:
    """One command of a build, run in the wrapper module's directory.

    `renames` maps the file a command writes (relative to the output directory) to the
    binary's name, for packages whose default name is not upstream's.
    """

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    renames: tuple[tuple[str, str], ...] = ()


def build_steps(comp: Component, out_dir: str, module_dir: str = "") -> tuple[BuildStep, ...]:
    """The commands that build `comp` into `out_dir`.

    Go: one `go build` per cgo setting, all of its packages at once (they share compilation
    and link in parallel). C: one `cc` per source, from `module_dir` (the module's directory in
    the Go module cache, which gobuild.py asks `go mod download` for).
    """
    if comp.toolchain is Toolchain.C:
        return tuple(
            BuildStep(
                # -s: stripped at link, as upstream strips it after compiling
                argv=(
                    "cc",
                    *comp.cflags,
                    "-s",
                    "-o",
                    f"{out_dir}/{b.name}",
                    f"{module_dir}/{b.package}",
                ),
                env=(),
            )
            for b in comp.binaries
        )
    steps: list[BuildStep] = []
    for cgo in (False, True):
        group = [b for b in comp.binaries if b.cgo is cgo]
        if not group:
            continue
        argv = ["go", "build", "-trimpath"]
        if comp.tags:
            argv += ["-tags", ",".join(comp.tags)]
        argv += ["-ldflags", ldflags(comp), "-o", f"{out_dir}/"]
        argv += [b.package for b in group]
        renames = tuple(
            (default_binary_name(b.package), b.name)
            for b in group
            if default_binary_name(b.package) != b.name
        )
        steps.append(
            BuildStep(
                argv=tuple(argv),
                env=(("CGO_ENABLED", "1" if cgo else "0"), ("GOTOOLCHAIN", go_toolchain(comp))),
                renames=renames,
            )
        )
    return tuple(steps)


def cache_key(comp: Component, wrapper_files: Mapping[str, bytes], goarch: str) -> str:
    """A short digest of everything that decides the build's output: the table entry and the
    commands it renders, the wrapper module's files (go.mod pins every dependency, go.sum their
    checksums), the Go release, the architecture and the recipe's version."""
    recipe = {
        "recipe": RECIPE_VERSION,
        "name": comp.name,
        "module": comp.module,
        "version": comp.version,
        "binaries": [[b.name, b.package, b.cgo] for b in comp.binaries],
        "stamps": [list(s) for s in comp.stamps],
        "tags": list(comp.tags),
        "toolchain": comp.toolchain.value,
        "go": comp.go,
        "cflags": list(comp.cflags),
        "cgo_static": comp.cgo_static,
        "goarch": goarch,
        # The commands themselves, so a change in how they are rendered is a new build too.
        "steps": [[list(st.argv), list(st.env), list(st.renames)] for st in build_steps(comp, "")],
        "wrapper": {
            name: hashlib.sha256(data).hexdigest() for name, data in sorted(wrapper_files.items())
        },
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def entry_name(comp: Component, key: str) -> str:
    """The cache entry's directory name: readable, and unique per key."""
    return f"{comp.name}-{comp.version}-{key}"
