"""Which kinds the API stand-in serves: built-in types and those a CustomResourceDefinition adds.

Pure data and pure functions. A `ResourceType` is one (group, version, resource) the server
answers for, with what discovery, tables and the store need to know about it. `Registry` holds
the built-ins plus the kinds served by the CRDs currently stored; `types_from_crd()` turns a CRD
object into the types it serves (or says precisely why it cannot).

Must not: store objects, do I/O, or know about HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class PrinterColumn:
    """A CRD's additionalPrinterColumn (or a built-in's column)."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    # Nodes and namespaces keep .status given at create (a kubelet registers with its status).
    status_on_create: bool = False
    custom: bool = False  # served by a CRD
    printer_columns: tuple[PrinterColumn, ...] = ()
    # The CRD version's openAPIV3Schema (for defaulting); excluded from equality and hashing.
    schema: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def storage_key(self) -> str:
        """Objects are stored once per group and resource, whatever version serves them."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def scope(self) -> str:
        return "Namespaced" if self.namespaced else "Cluster"


def _t(
    group: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: Sequence[str] = (),
    all_category: bool = False,
    status: bool = False,
    status_on_create: bool = False,
    version: str = "v1",
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        short_names=tuple(short),
        categories=("all",) if all_category else (),
        status_subresource=status,
        status_on_create=status_on_create,
    )


RBAC = "rbac.authorization.k8s.io"
ADMISSION = "admissionregistration.k8s.io"
APIEXTENSIONS = "apiextensions.k8s.io"

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _t(
        "",
        "namespaces",
        "Namespace",
        namespaced=False,
        short=("ns",),
        status=True,
        status_on_create=True,
    ),
    _t("", "nodes", "Node", namespaced=False, short=("no",), status=True, status_on_create=True),
    _t("", "services", "Service", short=("svc",), all_category=True, status=True),
    _t("", "endpoints", "Endpoints", short=("ep",)),
    _t("", "events", "Event", short=("ev",)),
    _t("", "configmaps", "ConfigMap", short=("cm",)),
    _t("", "secrets", "Secret"),
    _t("", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _t("", "pods", "Pod", short=("po",), all_category=True, status=True),
    _t("apps", "deployments", "Deployment", short=("deploy",), all_category=True, status=True),
    _t("apps", "daemonsets", "DaemonSet", short=("ds",), all_category=True, status=True),
    _t("apps", "replicasets", "ReplicaSet", short=("rs",), all_category=True, status=True),
    _t(RBAC, "roles", "Role"),
    _t(RBAC, "rolebindings", "RoleBinding"),
    _t(RBAC, "clusterroles", "ClusterRole", namespaced=False),
    _t(RBAC, "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _t("discovery.k8s.io", "endpointslices", "EndpointSlice"),
    _t("coordination.k8s.io", "leases", "Lease"),
    _t("events.k8s.io", "events", "Event", short=("ev",)),
    _t(
        APIEXTENSIONS,
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=("crd", "crds"),
        status=True,
    ),
    _t(
        ADMISSION,
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        namespaced=False,
    ),
    _t(
        ADMISSION, "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", namespaced=False
    ),
    _t("policy", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), status=True),
)

# Groups in the order discovery lists them (core first, as the real server does).
BUILTIN_GROUP_ORDER = (
    "",
    "apps",
    "events.k8s.io",
    RBAC,
    "discovery.k8s.io",
    "coordination.k8s.io",
    APIEXTENSIONS,
    ADMISSION,
    "policy",
)


class CrdError(ValueError):
    """A CustomResourceDefinition that cannot be served; the message names the field."""


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_KIND = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def _require_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise CrdError(f"{where}.{key}: Required value")
    return value


def types_from_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
    """The resource types a CRD serves (one per served version); CrdError if it is invalid."""
    spec = crd.get("spec")
    if not isinstance(spec, Mapping):
        raise CrdError("spec: Required value")
    group = _require_str(spec, "group", "spec")
    names = spec.get("names")
    if not isinstance(names, Mapping):
        raise CrdError("spec.names: Required value")
    plural = _require_str(names, "plural", "spec.names")
    kind = _require_str(names, "kind", "spec.names")
    if not _DNS_LABEL.match(plural):
        raise CrdError(f"spec.names.plural: Invalid value: {plural!r}: must be a DNS-1035 label")
    if not _KIND.match(kind):
        raise CrdError(f"spec.names.kind: Invalid value: {kind!r}: must be a CamelCase name")
    name = crd.get("metadata", {}).get("name")
    if name != f"{plural}.{group}":
        raise CrdError(
            f'metadata.name: Invalid value: {name!r}: must be spec.names.plural+"."+spec.group'
        )
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        raise CrdError(
            f'spec.scope: Unsupported value: {scope!r}: supported values: "Cluster", "Namespaced"'
        )
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        raise CrdError(
            "spec.versions: Required value: must have exactly one version marked as storage version"
        )
    storage = [v for v in versions if isinstance(v, Mapping) and v.get("storage") is True]
    if len(storage) != 1:
        raise CrdError(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
        )
    short_names = tuple(str(s) for s in names.get("shortNames") or ())
    categories = tuple(str(c) for c in names.get("categories") or ())
    singular = str(names.get("singular") or kind.lower())
    result = []
    for index, version in enumerate(versions):
        if not isinstance(version, Mapping):
            raise CrdError(f"spec.versions[{index}]: Invalid value: must be an object")
        vname = _require_str(version, "name", f"spec.versions[{index}]")
        if not version.get("served", False):
            continue
        subresources = version.get("subresources") or {}
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        columns = tuple(
            PrinterColumn(
                name=str(c.get("name", "")),
                type=str(c.get("type", "string")),
                json_path=str(c.get("jsonPath", "")),
                description=str(c.get("description", "")),
                priority=int(c.get("priority", 0) or 0),
                format=str(c.get("format", "")),
            )
            for c in version.get("additionalPrinterColumns") or ()
            if isinstance(c, Mapping)
        )
        result.append(
            ResourceType(
                group=group,
                version=vname,
                plural=plural,
                kind=kind,
                namespaced=scope == "Namespaced",
                singular=singular,
                short_names=short_names,
                categories=categories,
                status_subresource="status" in subresources,
                custom=True,
                printer_columns=columns,
                schema=schema if isinstance(schema, Mapping) else None,
            )
        )
    return result


class Registry:
    """The served types: built-ins, plus the CRD-served ones (replaced when CRDs change)."""

    def __init__(self, builtins: Iterable[ResourceType] = BUILTIN_TYPES) -> None:
        self._builtins = tuple(builtins)
        self._custom: dict[str, tuple[ResourceType, ...]] = {}  # CRD name -> its types
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        self._rebuild()

    def _rebuild(self) -> None:
        self._by_path = {}
        self._by_kind = {}
        for rt in self.all():
            self._by_path[(rt.group, rt.version, rt.plural)] = rt
            self._by_kind.setdefault((rt.api_version, rt.kind), rt)

    def all(self) -> tuple[ResourceType, ...]:
        customs = tuple(rt for types in self._custom.values() for rt in types)
        return self._builtins + customs

    def set_crd(self, crd_name: str, types: Sequence[ResourceType]) -> None:
        self._custom[crd_name] = tuple(types)
        self._rebuild()

    def remove_crd(self, crd_name: str) -> None:
        self._custom.pop(crd_name, None)
        self._rebuild()

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((api_version, kind))

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions, in discovery order (a CRD's storage version first)."""
        result: dict[str, list[str]] = {g: [] for g in BUILTIN_GROUP_ORDER}
        for rt in self.all():
            versions = result.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        for group, versions in result.items():
            if group not in BUILTIN_GROUP_ORDER:
                versions.sort(key=version_priority, reverse=True)
        return {g: v for g, v in result.items() if v}

    def types_in(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self.all() if rt.group == group and rt.version == version]


_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version ordering: GA > beta > alpha, then by number (v1 > v1beta2 > v1beta1)."""
    match = _VERSION.match(version)
    if not match:
        return (-1, 0, 0)
    major = int(match.group(1))
    stage = {"alpha": 0, "beta": 1, None: 2}[match.group(2)]
    minor = int(match.group(3) or 0)
    return (stage, major, minor)
