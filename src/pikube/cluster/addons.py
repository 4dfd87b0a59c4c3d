"""What the builder installs on the API once the control plane is up (pure: text in, text out).

- flannel: its own release manifest, read from a local file or a URL, refused unless its
  sha256 is the spec's (`flannel.sha256`); the one field the builder edits is the `Network` of
  the ConfigMap's net-conf.json, set to `networking.pod_cidr` (a one-line edit `plan` shows).
- the load balancer: pikube's install manifest from the package data (CRDs, RBAC, controller,
  speaker), or with `implementation: metallb` MetalLB's own metallb-native.yaml (unmodified,
  pinned by its sha256 like flannel's), then the spec's IPAddressPool and L2Advertisement (or
  BGPAdvertisement).
- the seed's nginx: a Deployment and a `type: LoadBalancer` Service.

Each add-on is applied with `kubectl apply` on the control plane (its text on stdin) and
recorded, by sha256, in the ConfigMap kube-system/pikube-addons; the next plan applies it
again only when its text changed or one of its objects is gone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import yaml

from pikube.cluster.spec import ClusterSpec, LoadBalancerImplementation, LoadBalancerMode
from pikube.errors import InvalidInput

RECORD_NAMESPACE = "kube-system"
RECORD_NAME = "pikube-addons"
LB_NAMESPACE = "metallb-system"
POOL_NAME = "first-pool"  # the seed's names
ADVERTISEMENT_NAME = "example"
DEMO_NAME = "nginx"
DEMO_NAMESPACE = "default"
FLANNEL_NAMESPACE = "kube-flannel"
FLANNEL_DAEMONSET = "kube-flannel-ds"
FLANNEL_RELEASE_URL = (
    "https://github.com/flannel-io/flannel/releases/download/{version}/kube-flannel.yml"
)
# pikube's load balancer as one rendered file (CRDs, RBAC, controller, speaker).
LB_MANIFEST_RESOURCE = ("pikube.data", "deploy/pikube.yaml")
# libyaml's loader when PyYAML has it: every plan reads the add-ons' objects (the load
# balancer's manifest is 36 KB), which pure-Python parsing makes most of a second's CPU.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# load_balancer.implementation: metallb: MetalLB's own release manifest, unmodified; by default
# v0.14.9's (the release pikube is compared with), pinned by the sha256 of that file.
METALLB_VERSION = "v0.14.9"
METALLB_RELEASE_URL = (
    "https://raw.githubusercontent.com/metallb/metallb/{version}/config/manifests/"
    "metallb-native.yaml"
)
METALLB_SHA256 = "951065e85692aa106f1bb5d5a487d9306154923a794ab1d82122881cbaf588e4"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Addon:
    """One manifest the builder applies: its name, its text, and the objects in it."""

    name: str
    manifest: str
    summary: str
    diff: str | None = None  # what the builder changed in an upstream manifest

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def objects(self) -> tuple[str, ...]:
        """`kind/name` of every object, lower-case kind (as `kubectl get -o name` prints)."""
        return manifest_objects(self.manifest)


def manifest_objects(manifest: str) -> tuple[str, ...]:
    found = []
    for doc in yaml.load_all(manifest, Loader=_LOADER):
        if isinstance(doc, dict) and "kind" in doc:
            found.append(f"{str(doc['kind']).lower()}/{doc['metadata']['name']}")
    return tuple(found)


# -- flannel -------------------------------------------------------------------------------------

_NETWORK = re.compile(r'("Network"\s*:\s*")([^"]*)(")')


def flannel_with_pod_cidr(manifest: str, pod_cidr: str) -> tuple[str, str | None]:
    """The manifest with net-conf.json's Network set to `pod_cidr`, and a diff of that line
    (None when it already was). Only that field changes; anything else is an error."""
    matches = list(_NETWORK.finditer(manifest))
    if len(matches) != 1:
        raise InvalidInput(
            f'flannel\'s manifest has {len(matches)} "Network" fields in net-conf.json '
            "(expected one): is it kube-flannel.yml?"
        )
    match = matches[0]
    if match.group(2) == pod_cidr:
        return manifest, None
    edited = manifest[: match.start(2)] + pod_cidr + manifest[match.end(2) :]
    start = manifest.rfind("\n", 0, match.start()) + 1
    end = manifest.find("\n", match.end())
    old_line = manifest[start : end if end >= 0 else None]
    new_line = old_line.replace(match.group(0), match.group(1) + pod_cidr + match.group(3))
    _check_flannel(edited, pod_cidr)
    return edited, f"-{old_line}\n+{new_line}\n"


def _check_flannel(manifest: str, pod_cidr: str) -> None:
    for doc in yaml.load_all(manifest, Loader=_LOADER):
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
            net_conf = (doc.get("data") or {}).get("net-conf.json")
            if net_conf is not None and json.loads(net_conf).get("Network") == pod_cidr:
                return
    raise InvalidInput("flannel's manifest: net-conf.json's Network could not be set")


def flannel_addon(spec: ClusterSpec, manifest: str) -> Addon:
    """flannel from its manifest's text, which must have the spec's sha256."""
    got = sha256(manifest)
    want = spec.flannel.sha256
    source = spec.flannel.source(spec.versions.flannel)
    if want is None:
        raise InvalidInput(
            f"flannel.sha256: not set; the manifest at {source} has sha256 {got}: check it and "
            "put it in the spec to pin it"
        )
    if got != want.lower():
        raise InvalidInput(
            f"flannel.sha256: the manifest at {source} has sha256 {got}, the spec pins {want}"
        )
    edited, diff = flannel_with_pod_cidr(manifest, spec.networking.pod_cidr)
    what = "its net-conf.json Network set to networking.pod_cidr" if diff else "unmodified"
    return Addon("flannel", edited, f"flannel from {source} ({what})", diff)


# -- the load balancer ---------------------------------------------------------------------------


def lb_manifest() -> str | None:
    """pikube's rendered install manifest, or None when this build has none."""
    package, name = LB_MANIFEST_RESOURCE
    try:
        return resources.files(package).joinpath(name).read_text()
    except (FileNotFoundError, ModuleNotFoundError, NotADirectoryError):
        return None


def uses_metallb(spec: ClusterSpec) -> bool:
    lb = spec.load_balancer
    return lb is not None and lb.implementation is LoadBalancerImplementation.METALLB


def metallb_source(spec: ClusterSpec) -> str:
    """Where MetalLB's manifest is read from: load_balancer.manifest, or v0.14.9's release."""
    lb = spec.load_balancer
    assert lb is not None
    return lb.manifest or METALLB_RELEASE_URL.format(version=METALLB_VERSION)


def metallb_addon(spec: ClusterSpec, manifest: str) -> Addon:
    """MetalLB's manifest as it is, refused unless its sha256 is the spec's (by default, with
    the default manifest, v0.14.9's)."""
    lb = spec.load_balancer
    assert lb is not None
    source = metallb_source(spec)
    want = lb.sha256 or (METALLB_SHA256 if lb.manifest is None else None)
    got = sha256(manifest)
    if want is None:
        raise InvalidInput(
            f"load_balancer.sha256: not set; the manifest at {source} has sha256 {got}: check "
            "it and put it in the spec to pin it"
        )
    if got != want.lower():
        raise InvalidInput(
            f"load_balancer.sha256: the manifest at {source} has sha256 {got}, the spec pins {want}"
        )
    return Addon("load-balancer", manifest, f"MetalLB from {source} (unmodified)")


def pool_manifest(spec: ClusterSpec) -> str:
    lb = spec.load_balancer
    assert lb is not None
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": POOL_NAME, "namespace": LB_NAMESPACE},
        "spec": {"addresses": [lb.pool]},
    }
    kind = "L2Advertisement" if lb.mode is LoadBalancerMode.LAYER2 else "BGPAdvertisement"
    advert = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": kind,
        "metadata": {"name": ADVERTISEMENT_NAME, "namespace": LB_NAMESPACE},
        "spec": {"ipAddressPools": [POOL_NAME]},
    }
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in (pool, advert))


def demo_manifest(spec: ClusterSpec) -> str:
    """The seed's nginx: a Deployment and its `type: LoadBalancer` Service on port 80."""
    labels = {"app": DEMO_NAME}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEMO_NAME, "namespace": DEMO_NAMESPACE, "labels": labels},
        "spec": {
            "replicas": spec.demo_app.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": spec.demo_app.image,
                            "ports": [{"containerPort": 80}],
                        }
                    ]
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": DEMO_NAME, "namespace": DEMO_NAMESPACE},
        "spec": {
            "type": "LoadBalancer",
            "selector": labels,
            "ports": [{"name": "http", "port": 80, "targetPort": 80}],
        },
    }
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in (deployment, service))


def addons(
    spec: ClusterSpec, flannel_text: str, lb_text: str | None, metallb_text: str | None = None
) -> list[Addon]:
    """Every add-on the spec asks for, in the order they are applied. The load balancer and
    its pool need pikube's manifest (`lb_text`) or, with `implementation: metallb`, MetalLB's
    (`metallb_text`); without it they are left out (see `missing_load_balancer`)."""
    result = [flannel_addon(spec, flannel_text)]
    if uses_metallb(spec):
        if metallb_text is not None:
            result.append(metallb_addon(spec, metallb_text))
            lb_text = metallb_text
        else:
            lb_text = None
    elif spec.load_balancer is not None and lb_text is not None:
        result.append(
            Addon("load-balancer", lb_text, "pikube's load balancer (controller, speaker)")
        )
    if spec.load_balancer is not None and lb_text is not None:
        mode = spec.load_balancer.mode.value
        result.append(
            Addon("pool", pool_manifest(spec), f"the pool {spec.load_balancer.pool} ({mode})")
        )
    if spec.demo_app.enabled:
        result.append(
            Addon(
                "demo-app",
                demo_manifest(spec),
                f"the seed's nginx ({spec.demo_app.image}) as a type: LoadBalancer Service",
            )
        )
    return result


def missing_load_balancer(spec: ClusterSpec, lb_text: str | None) -> str | None:
    """Why the load balancer the spec asks for is not installed, or None."""
    if spec.load_balancer is None or lb_text is not None or uses_metallb(spec):
        return None
    return (
        "load_balancer: this build of pikube has no install manifest "
        f"({'/'.join(LB_MANIFEST_RESOURCE)}); the load balancer, its pool and advertisement are "
        "not installed and nginx is checked through its NodePort"
    )


def addons_needed(
    wanted: list[Addon], recorded: Mapping[str, str], existing: frozenset[str]
) -> list[Addon]:
    """The add-ons to apply: those never applied, changed since, or with an object gone. Once
    one is applied, every later one is applied too (the pool needs the CRDs, nginx the pool)."""
    result: list[Addon] = []
    for addon in wanted:
        stale = recorded.get(addon.name) != addon.digest
        gone = any(obj not in existing for obj in addon.objects)
        if result or stale or gone:
            result.append(addon)
    return result


def record_command(applied: Mapping[str, str]) -> str:
    """The kubectl command that records what was applied (names and digests, no secrets)."""
    literals = " ".join(f"--from-literal={k}={v}" for k, v in sorted(applied.items()))
    return (
        f"kubectl --kubeconfig /etc/kubernetes/admin.conf -n {RECORD_NAMESPACE} create configmap "
        f"{RECORD_NAME} {literals} --dry-run=client -o yaml | "
        "kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f -"
    )


def parse_object_names(output: str) -> frozenset[str]:
    """`kubectl get -o name` lines ("daemonset.apps/kube-flannel-ds") as kind/name."""
    names = set()
    for line in output.splitlines():
        resource, _, name = line.strip().partition("/")
        if name:
            names.add(f"{resource.split('.', 1)[0]}/{name}")
    return frozenset(names)
