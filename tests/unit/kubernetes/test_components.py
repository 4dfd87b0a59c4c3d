"""The component table, its build commands and cache keys (pure)."""

from __future__ import annotations

import dataclasses

import pytest

from pikube.lab.kubernetes.components import (
    BY_NAME,
    COMPONENTS,
    Toolchain,
    build_steps,
    cache_key,
    default_binary_name,
    entry_name,
    ldflags,
)

WRAPPER = {"go.mod": b"module pikube.local/gobuild/x\n", "go.sum": b""}


def test_kubernetes_binaries_carry_upstreams_version_stamping() -> None:
    flags = ldflags(BY_NAME["kubernetes"])
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        assert f"-X {package}.gitVersion=v1.31.5" in flags
        assert f"-X {package}.gitMajor=1 " in flags
        assert f"-X {package}.gitMinor=31 " in flags
        assert f"-X {package}.gitTreeState=clean" in flags
        assert f"-X {package}.gitCommit=af64d838aacd9173317b39cf273741816bd82377" in flags


def test_kubelet_alone_is_built_with_cgo_the_rest_statically() -> None:
    static, dynamic = build_steps(BY_NAME["kubernetes"], "/out")
    assert dict(static.env)["CGO_ENABLED"] == "0"
    assert dict(dynamic.env)["CGO_ENABLED"] == "1"
    assert dynamic.argv[-1] == "k8s.io/kubernetes/cmd/kubelet"
    assert "k8s.io/kubernetes/cmd/kubeadm" in static.argv
    assert "k8s.io/kubernetes/cmd/kubelet" not in static.argv
    assert static.argv[static.argv.index("-tags") + 1] == "selinux,notest"
    assert static.argv[static.argv.index("-o") + 1] == "/out/"


def test_every_component_stamps_its_own_version_where_upstream_does() -> None:
    for name in ("cri-tools", "cni-plugins", "flannel", "flannel-cni-plugin", "containerd"):
        comp = BY_NAME[name]
        assert comp.version in ldflags(comp), name


def test_each_component_is_built_with_the_go_release_upstream_used() -> None:
    (static, dynamic) = build_steps(BY_NAME["kubernetes"], "/out")
    assert dict(static.env)["GOTOOLCHAIN"] == "go1.22.10"  # v1.31.5's .go-version
    assert dict(dynamic.env)["GOTOOLCHAIN"] == "go1.22.10"
    (etcd,) = build_steps(BY_NAME["etcd"], "/out")
    assert dict(etcd.env)["GOTOOLCHAIN"] == "go1.21.12"
    for comp in COMPONENTS:
        if comp.toolchain is Toolchain.GO:
            assert comp.go.startswith("go1."), comp.name


def test_major_version_suffixes_are_renamed_to_upstreams_names() -> None:
    assert default_binary_name("go.etcd.io/etcd/server/v3") == "server"
    assert default_binary_name("github.com/coredns/coredns") == "coredns"
    (step,) = build_steps(BY_NAME["etcd"], "/out")
    assert step.renames == (("server", "etcd"),)  # etcdctl/v3 is already named etcdctl
    (flannel,) = build_steps(BY_NAME["flannel"], "/out")
    assert flannel.renames == (("flannel", "flanneld"),)


def test_flanneld_uses_cgo_but_is_linked_statically_as_upstream_does() -> None:
    (step,) = build_steps(BY_NAME["flannel"], "/out")
    assert dict(step.env)["CGO_ENABLED"] == "1"
    assert step.argv[step.argv.index("-ldflags") + 1].endswith(" -extldflags=-static")
    assert "-extldflags" not in ldflags(BY_NAME["kubernetes"])  # kubelet stays dynamic


def test_pause_is_compiled_statically_from_the_kubernetes_module() -> None:
    pause = BY_NAME["pause"]
    assert pause.toolchain is Toolchain.C
    assert pause.wrapper_dir == "kubernetes"
    (step,) = build_steps(pause, "/out", "/mod/k8s.io/kubernetes@v1.31.5")
    assert step.argv[0] == "cc"
    assert "-static" in step.argv
    assert "-s" in step.argv  # stripped, as upstream's Makefile does
    assert "-DVERSION=v3.10-v1.31.5" in step.argv
    assert step.argv[-1] == "/mod/k8s.io/kubernetes@v1.31.5/build/pause/linux/pause.c"
    assert step.argv[step.argv.index("-o") + 1] == "/out/pause"


def test_binary_names_are_unique_within_a_component() -> None:
    for comp in COMPONENTS:
        names = [b.name for b in comp.binaries]
        assert len(names) == len(set(names)), comp.name


def test_substitutions_are_visible() -> None:
    assert BY_NAME["kubernetes"].substituted is False
    assert BY_NAME["flannel"].substituted is True
    assert BY_NAME["flannel"].pinned == "v0.26.3"


def test_cache_key_is_stable() -> None:
    comp = BY_NAME["etcd"]
    assert cache_key(comp, WRAPPER, "amd64") == cache_key(comp, dict(WRAPPER), "amd64")


@pytest.mark.parametrize(
    "change",
    [
        {"version": "v3.5.16"},
        {"tags": ("extra",)},
        {"stamps": (("go.etcd.io/etcd/api/v3/version.GitSHA", "0000000"),)},
        {"binaries": BY_NAME["etcd"].binaries[:1]},
        {"go": "go1.22.10"},
    ],
)
def test_cache_key_changes_with_the_recipe(change: dict[str, object]) -> None:
    comp = BY_NAME["etcd"]
    other = dataclasses.replace(comp, **change)  # type: ignore[arg-type]
    assert cache_key(other, WRAPPER, "amd64") != cache_key(comp, WRAPPER, "amd64")
    assert entry_name(other, cache_key(other, WRAPPER, "amd64")) != entry_name(
        comp, cache_key(comp, WRAPPER, "amd64")
    )


def test_cache_key_changes_with_the_wrapper_module_and_architecture() -> None:
    comp = BY_NAME["coredns"]
    base = cache_key(comp, WRAPPER, "amd64")
    assert cache_key(comp, {**WRAPPER, "go.sum": b"h1:x\n"}, "amd64") != base
    assert cache_key(comp, WRAPPER, "arm64") != base
