"""What a real API server fills in and checks before storing an object. Pure.

Defaulting: the fields kube-apiserver v1.31 sets on the kinds the lab uses (Service cluster IPs,
IP families, port protocols and node ports; Deployment/DaemonSet strategies and pod template
defaults; Namespace finalizers and phase; Secret type and stringData), plus the `default:`
values of a CRD's structural schema. Validation: the checks that give 422 Invalid for the
mistakes a user makes (missing or malformed names, bad labels, a Deployment selector that does
not match its template, service ports out of range).

The allocators for cluster IPs and node ports are plain objects the store owns.

Must not: do I/O, read the clock, or know about HTTP.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pikube.lab.kubeapi.resources import ResourceType

# kubeadm's default service subnet. Cluster IPs are only ever stored: no lab component routes
# or sends traffic to them (the lab has no kube-proxy). See docs/decisions/0024.
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
NODE_PORT_RANGE = (30000, 32767)


@dataclass(frozen=True)
class Cause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"


class Invalid(Exception):
    """The object fails validation: 422 with these causes."""

    def __init__(self, causes: list[Cause]) -> None:
        super().__init__("; ".join(f"{c.field}: {c.message}" for c in causes))
        self.causes = causes


class Exhausted(Exception):
    """No cluster IP or node port is left."""


class ServiceAllocator:
    """Cluster IPs (sequential from the subnet's 10th address) and node ports."""

    def __init__(self, cidr: str = DEFAULT_SERVICE_CIDR) -> None:
        self.network = ipaddress.ip_network(cidr)
        self.used_ips: set[str] = set()
        self.used_ports: set[int] = set()
        self._next_ip = 10
        self._next_port = NODE_PORT_RANGE[0]

    @property
    def first_ip(self) -> str:
        """The address of the `kubernetes` Service (the subnet's first host)."""
        return str(self.network.network_address + 1)

    def reserve_ip(self, ip: str) -> bool:
        if ip in self.used_ips:
            return False
        self.used_ips.add(ip)
        return True

    def allocate_ip(self) -> str:
        size = self.network.num_addresses - 2
        for _ in range(size):
            candidate = str(self.network.network_address + self._next_ip)
            self._next_ip = self._next_ip % size + 1
            if candidate not in self.used_ips:
                self.used_ips.add(candidate)
                return candidate
        raise Exhausted(f"no cluster IP left in {self.network}")

    def reserve_port(self, port: int) -> bool:
        if port in self.used_ports:
            return False
        self.used_ports.add(port)
        return True

    def allocate_port(self) -> int:
        low, high = NODE_PORT_RANGE
        for _ in range(high - low + 1):
            candidate = self._next_port
            self._next_port = low if candidate >= high else candidate + 1
            if candidate not in self.used_ports:
                self.used_ports.add(candidate)
                return candidate
        raise Exhausted("no node port left in 30000-32767")

    def release(self, service: Mapping[str, Any]) -> None:
        spec = service.get("spec") or {}
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            self.used_ips.discard(str(ip))
        for port in spec.get("ports") or ():
            if isinstance(port, Mapping) and isinstance(port.get("nodePort"), int):
                self.used_ports.discard(port["nodePort"])


# -- validation -----------------------------------------------------------------------------

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose names must be DNS-1123 labels (no dots), as the real server requires.
_LABEL_NAMED_KINDS = {"Namespace", "Service"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _label_key_errors(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return f"prefix part must be a DNS-1123 subdomain, got {prefix!r}"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character"
        )
    return None


def validate_metadata(rt: ResourceType, obj: Mapping[str, Any]) -> None:
    causes: list[Cause] = []
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise Invalid([Cause("metadata", "Required value", "FieldValueRequired")])
    name = meta.get("name")
    if not name:
        causes.append(
            Cause(
                "metadata.name",
                "Required value: name or generateName is required",
                "FieldValueRequired",
            )
        )
    elif not isinstance(name, str) or len(name) > 253 or not _SUBDOMAIN.match(name):
        causes.append(
            Cause(
                "metadata.name",
                f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain "
                "must consist of lower case alphanumeric characters, '-' or '.', and must "
                "start and end with an alphanumeric character",
            )
        )
    elif rt.kind in _LABEL_NAMED_KINDS and not rt.custom and not _DNS_LABEL.match(name):
        causes.append(
            Cause(
                "metadata.name",
                f"Invalid value: {name!r}: a DNS-1035 label must consist of "
                "lower case alphanumeric characters or '-'",
            )
        )
    for field, mapping in (
        ("labels", meta.get("labels")),
        ("annotations", meta.get("annotations")),
    ):
        if mapping is None:
            continue
        if not isinstance(mapping, Mapping):
            causes.append(Cause(f"metadata.{field}", "Invalid value: must be a map"))
            continue
        for key, value in mapping.items():
            problem = _label_key_errors(str(key))
            if problem:
                causes.append(Cause(f"metadata.{field}", f"Invalid value: {key!r}: {problem}"))
            if not isinstance(value, str):
                causes.append(Cause(f"metadata.{field}[{key}]", "Invalid value: must be a string"))
            elif field == "labels" and (len(value) > 63 or not _LABEL_VALUE.match(value)):
                causes.append(
                    Cause(
                        "metadata.labels",
                        f"Invalid value: {value!r}: a valid "
                        "label must be an empty string or consist of alphanumeric "
                        "characters, '-', '_' or '.'",
                    )
                )
    if causes:
        raise Invalid(causes)


def validate_spec(rt: ResourceType, obj: Mapping[str, Any]) -> None:
    causes: list[Cause] = []
    spec = obj.get("spec")
    if rt.custom or not isinstance(spec, Mapping):
        return
    if rt.kind == "Service" and rt.group == "":
        svc_type = spec.get("type", "ClusterIP")
        if svc_type not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            causes.append(
                Cause(
                    "spec.type",
                    f"Unsupported value: {svc_type!r}: supported "
                    'values: "ClusterIP", "ExternalName", "LoadBalancer", '
                    '"NodePort"',
                    "FieldValueNotSupported",
                )
            )
        for i, port in enumerate(spec.get("ports") or ()):
            number = port.get("port") if isinstance(port, Mapping) else None
            if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
                causes.append(
                    Cause(
                        f"spec.ports[{i}].port",
                        f"Invalid value: {number!r}: must be between 1 and 65535, inclusive",
                    )
                )
        if not spec.get("ports") and svc_type != "ExternalName" and spec.get("clusterIP") != "None":
            causes.append(Cause("spec.ports", "Required value", "FieldValueRequired"))
    if rt.group == "apps" and rt.kind in ("Deployment", "DaemonSet", "ReplicaSet"):
        selector = spec.get("selector")
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not isinstance(selector, Mapping) or not selector:
            causes.append(Cause("spec.selector", "Required value", "FieldValueRequired"))
        else:
            wanted = selector.get("matchLabels") or {}
            if any(labels.get(k) != v for k, v in wanted.items()):
                causes.append(
                    Cause(
                        "spec.template.metadata.labels",
                        f"Invalid value: {labels!r}: `selector` does not match template `labels`",
                    )
                )
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
        if not containers:
            causes.append(
                Cause("spec.template.spec.containers", "Required value", "FieldValueRequired")
            )
    if causes:
        raise Invalid(causes)


# -- defaulting -----------------------------------------------------------------------------


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_container(container: dict[str, Any]) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("imagePullPolicy", _image_pull_policy(str(container.get("image", ""))))
    container.setdefault("resources", {})
    for port in container.get("ports") or ():
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for field in ("containers", "initContainers"):
        for container in spec.get(field) or ():
            if isinstance(container, dict):
                _default_container(container)


def _default_template(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def default_service(
    obj: dict[str, Any], allocator: ServiceAllocator, old: Mapping[str, Any] | None
) -> None:
    spec = obj.setdefault("spec", {})
    old_spec: Mapping[str, Any] = (old or {}).get("spec") or {}
    svc_type = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or ():
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    if svc_type == "ExternalName":
        return
    # An update keeps what was allocated when the client leaves it out (as the real server).
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if key not in spec and key in old_spec:
            spec[key] = copy.deepcopy(old_spec[key])
    if not spec.get("clusterIP"):
        spec["clusterIP"] = allocator.allocate_ip()
    elif (
        spec["clusterIP"] != "None"
        and old_spec.get("clusterIP") != spec["clusterIP"]
        and not allocator.reserve_ip(spec["clusterIP"])
    ):
        message = f"Invalid value: {spec['clusterIP']!r}: provided IP is already allocated"
        raise Invalid([Cause("spec.clusterIP", message)])
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if svc_type in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
        if svc_type == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        old_ports = {
            (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
            for p in old_spec.get("ports") or ()
            if isinstance(p, Mapping)
        }
        allocate = svc_type == "NodePort" or spec.get("allocateLoadBalancerNodePorts", True)
        for port in spec.get("ports") or ():
            if not isinstance(port, dict) or not allocate:
                continue
            previous = old_ports.get((port.get("port"), port.get("protocol")))
            if "nodePort" not in port and previous:
                port["nodePort"] = previous
            elif "nodePort" not in port:
                port["nodePort"] = allocator.allocate_port()
            elif port["nodePort"] != previous:
                allocator.reserve_port(int(port["nodePort"]))
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def default_object(
    rt: ResourceType,
    obj: dict[str, Any],
    allocator: ServiceAllocator,
    old: Mapping[str, Any] | None = None,
) -> None:
    """Fill in the defaults the real server would, in place."""
    if rt.custom:
        if rt.schema is not None:
            apply_schema_defaults(rt.schema, obj)
        return
    kind, group = rt.kind, rt.group
    if group == "" and kind == "Service":
        default_service(obj, allocator, old)
    elif group == "apps" and kind in ("Deployment", "ReplicaSet"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        if kind == "Deployment":
            spec.setdefault(
                "strategy",
                {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                },
            )
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        _default_template(spec)
    elif group == "apps" and kind == "DaemonSet":
        spec = obj.setdefault("spec", {})
        spec.setdefault(
            "updateStrategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        )
        spec.setdefault("revisionHistoryLimit", 10)
        _default_template(spec)
    elif group == "" and kind == "Pod":
        default_pod_spec(obj.setdefault("spec", {}))
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif group == "" and kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif group == "" and kind == "Secret":
        obj.setdefault("type", "Opaque")
    elif group == "discovery.k8s.io" and kind == "EndpointSlice":
        for port in obj.get("ports") or ():
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
    elif group == "apiextensions.k8s.io":
        obj.setdefault("spec", {}).setdefault("conversion", {"strategy": "None"})


def apply_schema_defaults(schema: Mapping[str, Any], value: Any) -> None:
    """Set the `default:` of every absent property the schema declares, in place (recursive)."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            for key, sub in properties.items():
                if not isinstance(sub, Mapping):
                    continue
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value:
                    apply_schema_defaults(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key in list(value):
                if not isinstance(properties, Mapping) or key not in properties:
                    apply_schema_defaults(extra, value[key])
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for item in value:
                apply_schema_defaults(items, item)
