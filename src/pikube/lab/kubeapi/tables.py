"""Server-side printing: the `Table` objects `kubectl get` asks for. Pure.

kubectl renders whatever columns the server sends, so the real server's printers decide what
`kubectl get svc` looks like. This module reproduces the columns of kube-apiserver v1.31 for the
kinds the lab uses (nodes, services, pods, deployments, daemonsets, namespaces, endpoints,
endpointslices, configmaps, secrets, serviceaccounts, leases, CRDs), a CRD's
additionalPrinterColumns for its kinds, and NAME/AGE for everything else. Columns with
priority 1 are the ones `-o wide` adds.

Must not: read the clock (`now` is given) or know about HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pikube.lab.kubeapi.resources import PrinterColumn, ResourceType

Row = list[Any]


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def human_duration(seconds_total: float) -> str:
    """kubectl's short ages: 45s, 3m20s, 14m, 5h12m, 2d3h, 40d, 3y12d."""
    seconds = int(seconds_total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(obj: Mapping[str, Any], now: datetime) -> str:
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    if created is None:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


def _get(obj: Any, path: str, default: Any = None) -> Any:
    for part in path.split("."):
        if not isinstance(obj, Mapping):
            return default
        obj = obj.get(part)
    return default if obj is None else obj


def _name(obj: Mapping[str, Any]) -> str:
    return str(_get(obj, "metadata.name", ""))


def _labels_selector(selector: Mapping[str, Any] | None) -> str:
    if not selector:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or ():
        op, key = expr.get("operator"), expr.get("key")
        values = ",".join(expr.get("values") or ())
        parts.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": f"{key}",
                "DoesNotExist": f"!{key}",
            }.get(op, str(key))
        )
    return ",".join(parts) or "<none>"


def _map_selector(selector: Mapping[str, Any] | None) -> str:
    if not selector:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _containers(obj: Mapping[str, Any]) -> tuple[str, str]:
    containers = _get(obj, "spec.template.spec.containers", [])
    names = ",".join(str(c.get("name", "")) for c in containers)
    images = ",".join(str(c.get("image", "")) for c in containers)
    return names, images


# -- per-kind printers ----------------------------------------------------------------------

Column = tuple[str, str, int]  # name, type, priority


def _service_ports(spec: Mapping[str, Any]) -> str:
    parts = []
    for port in spec.get("ports") or ():
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        parts.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _service_external_ip(obj: Mapping[str, Any]) -> str:
    spec = obj.get("spec") or {}
    svc_type = spec.get("type", "ClusterIP")
    external = list(spec.get("externalIPs") or ())
    if svc_type == "ExternalName":
        return str(spec.get("externalName", "<none>"))
    if svc_type == "LoadBalancer":
        ingress = _get(obj, "status.loadBalancer.ingress", [])
        ips = [str(i.get("ip") or i.get("hostname")) for i in ingress] + external
        return ",".join(ips) if ips else "<pending>"
    return ",".join(external) if external else "<none>"


def _service(obj: Mapping[str, Any], now: datetime) -> Row:
    spec = obj.get("spec") or {}
    return [
        _name(obj),
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        _service_external_ip(obj),
        _service_ports(spec),
        age(obj, now),
        _map_selector(spec.get("selector")),
    ]


def _node_roles(obj: Mapping[str, Any]) -> str:
    labels = _get(obj, "metadata.labels", {})
    roles = sorted(
        k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and "/" in k
    )
    return ",".join(r for r in roles if r) or "<none>"


def _node_status(obj: Mapping[str, Any]) -> str:
    ready = "Unknown"
    for condition in _get(obj, "status.conditions", []):
        if condition.get("type") == "Ready":
            ready = "Ready" if condition.get("status") == "True" else "NotReady"
    if _get(obj, "spec.unschedulable", False):
        ready += ",SchedulingDisabled"
    return ready


def _node_address(obj: Mapping[str, Any], kind: str) -> str:
    for address in _get(obj, "status.addresses", []):
        if address.get("type") == kind:
            return str(address.get("address"))
    return "<none>"


def _node(obj: Mapping[str, Any], now: datetime) -> Row:
    info = _get(obj, "status.nodeInfo", {})
    return [
        _name(obj),
        _node_status(obj),
        _node_roles(obj),
        age(obj, now),
        info.get("kubeletVersion", ""),
        _node_address(obj, "InternalIP"),
        _node_address(obj, "ExternalIP"),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


def _pod(obj: Mapping[str, Any], now: datetime) -> Row:
    containers = _get(obj, "spec.containers", [])
    statuses = _get(obj, "status.containerStatuses", [])
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    return [
        _name(obj),
        f"{ready}/{len(containers)}",
        _get(obj, "status.reason") or _get(obj, "status.phase", "Unknown"),
        restarts,
        age(obj, now),
        _get(obj, "status.podIP") or "<none>",
        _get(obj, "spec.nodeName") or "<none>",
        _get(obj, "status.nominatedNodeName") or "<none>",
        "<none>",
    ]


def _deployment(obj: Mapping[str, Any], now: datetime) -> Row:
    status = obj.get("status") or {}
    names, images = _containers(obj)
    return [
        _name(obj),
        f"{status.get('readyReplicas', 0)}/{_get(obj, 'spec.replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(obj, now),
        names,
        images,
        _labels_selector(_get(obj, "spec.selector")),
    ]


def _daemonset(obj: Mapping[str, Any], now: datetime) -> Row:
    status = obj.get("status") or {}
    names, images = _containers(obj)
    return [
        _name(obj),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        _map_selector(_get(obj, "spec.template.spec.nodeSelector")),
        age(obj, now),
        names,
        images,
        _labels_selector(_get(obj, "spec.selector")),
    ]


def _replicaset(obj: Mapping[str, Any], now: datetime) -> Row:
    status = obj.get("status") or {}
    names, images = _containers(obj)
    return [
        _name(obj),
        _get(obj, "spec.replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(obj, now),
        names,
        images,
        _labels_selector(_get(obj, "spec.selector")),
    ]


def _endpoints(obj: Mapping[str, Any], now: datetime) -> Row:
    found = []
    for subset in obj.get("subsets") or ():
        ports = [p.get("port") for p in subset.get("ports") or ()] or [None]
        for address in subset.get("addresses") or ():
            for port in ports:
                ip = address.get("ip")
                found.append(f"{ip}:{port}" if port is not None else str(ip))
    shown = ",".join(found[:3]) + (f" + {len(found) - 3} more..." if len(found) > 3 else "")
    return [_name(obj), shown or "<none>", age(obj, now)]


def _endpointslice(obj: Mapping[str, Any], now: datetime) -> Row:
    ports = ",".join(str(p.get("port")) for p in obj.get("ports") or ()) or "<unset>"
    addresses = [a for e in obj.get("endpoints") or () for a in e.get("addresses") or ()]
    shown = ",".join(addresses[:3]) + (
        f" + {len(addresses) - 3} more..." if len(addresses) > 3 else ""
    )
    return [_name(obj), obj.get("addressType", ""), ports, shown or "<unset>", age(obj, now)]


def _namespace(obj: Mapping[str, Any], now: datetime) -> Row:
    return [_name(obj), _get(obj, "status.phase", ""), age(obj, now)]


def _configmap(obj: Mapping[str, Any], now: datetime) -> Row:
    count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [_name(obj), count, age(obj, now)]


def _secret(obj: Mapping[str, Any], now: datetime) -> Row:
    return [_name(obj), obj.get("type", ""), len(obj.get("data") or {}), age(obj, now)]


def _serviceaccount(obj: Mapping[str, Any], now: datetime) -> Row:
    return [_name(obj), len(obj.get("secrets") or ()), age(obj, now)]


def _lease(obj: Mapping[str, Any], now: datetime) -> Row:
    return [_name(obj), _get(obj, "spec.holderIdentity", "<unknown>"), age(obj, now)]


def _crd(obj: Mapping[str, Any], now: datetime) -> Row:  # noqa: ARG001 (printer signature)
    return [_name(obj), _get(obj, "metadata.creationTimestamp", "")]


def _default(obj: Mapping[str, Any], now: datetime) -> Row:
    return [_name(obj), age(obj, now)]


_S, _I, _D = "string", "integer", "date"
PRINTERS: dict[
    tuple[str, str], tuple[Sequence[Column], Callable[[Mapping[str, Any], datetime], Row]]
] = {
    ("", "Service"): (
        [
            ("Name", _S, 0),
            ("Type", _S, 0),
            ("Cluster-IP", _S, 0),
            ("External-IP", _S, 0),
            ("Port(s)", _S, 0),
            ("Age", _S, 0),
            ("Selector", _S, 1),
        ],
        _service,
    ),
    ("", "Node"): (
        [
            ("Name", _S, 0),
            ("Status", _S, 0),
            ("Roles", _S, 0),
            ("Age", _S, 0),
            ("Version", _S, 0),
            ("Internal-IP", _S, 1),
            ("External-IP", _S, 1),
            ("OS-Image", _S, 1),
            ("Kernel-Version", _S, 1),
            ("Container-Runtime", _S, 1),
        ],
        _node,
    ),
    ("", "Pod"): (
        [
            ("Name", _S, 0),
            ("Ready", _S, 0),
            ("Status", _S, 0),
            ("Restarts", _S, 0),
            ("Age", _S, 0),
            ("IP", _S, 1),
            ("Node", _S, 1),
            ("Nominated Node", _S, 1),
            ("Readiness Gates", _S, 1),
        ],
        _pod,
    ),
    ("apps", "Deployment"): (
        [
            ("Name", _S, 0),
            ("Ready", _S, 0),
            ("Up-to-date", _I, 0),
            ("Available", _I, 0),
            ("Age", _S, 0),
            ("Containers", _S, 1),
            ("Images", _S, 1),
            ("Selector", _S, 1),
        ],
        _deployment,
    ),
    ("apps", "DaemonSet"): (
        [
            ("Name", _S, 0),
            ("Desired", _I, 0),
            ("Current", _I, 0),
            ("Ready", _I, 0),
            ("Up-to-date", _I, 0),
            ("Available", _I, 0),
            ("Node Selector", _S, 0),
            ("Age", _S, 0),
            ("Containers", _S, 1),
            ("Images", _S, 1),
            ("Selector", _S, 1),
        ],
        _daemonset,
    ),
    ("apps", "ReplicaSet"): (
        [
            ("Name", _S, 0),
            ("Desired", _I, 0),
            ("Current", _I, 0),
            ("Ready", _I, 0),
            ("Age", _S, 0),
            ("Containers", _S, 1),
            ("Images", _S, 1),
            ("Selector", _S, 1),
        ],
        _replicaset,
    ),
    ("", "Endpoints"): ([("Name", _S, 0), ("Endpoints", _S, 0), ("Age", _S, 0)], _endpoints),
    ("discovery.k8s.io", "EndpointSlice"): (
        [
            ("Name", _S, 0),
            ("AddressType", _S, 0),
            ("Ports", _S, 0),
            ("Endpoints", _S, 0),
            ("Age", _S, 0),
        ],
        _endpointslice,
    ),
    ("", "Namespace"): ([("Name", _S, 0), ("Status", _S, 0), ("Age", _S, 0)], _namespace),
    ("", "ConfigMap"): ([("Name", _S, 0), ("Data", _I, 0), ("Age", _S, 0)], _configmap),
    ("", "Secret"): ([("Name", _S, 0), ("Type", _S, 0), ("Data", _I, 0), ("Age", _S, 0)], _secret),
    ("", "ServiceAccount"): (
        [("Name", _S, 0), ("Secrets", _I, 0), ("Age", _S, 0)],
        _serviceaccount,
    ),
    ("coordination.k8s.io", "Lease"): (
        [("Name", _S, 0), ("Holder", _S, 0), ("Age", _S, 0)],
        _lease,
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): (
        [("Name", _S, 0), ("Created At", _D, 0)],
        _crd,
    ),
}
_DEFAULT: tuple[Sequence[Column], Callable[[Mapping[str, Any], datetime], Row]] = (
    [("Name", _S, 0), ("Age", _S, 0)],
    _default,
)


# -- CRD printer columns (a JSONPath subset: .a.b, .a[0].b, .a[*].b) ------------------------

_SEGMENT = re.compile(r"\.?([A-Za-z0-9_-]+)|\[(\d+|\*)\]|\['([^']+)'\]")


def json_path_values(obj: Any, path: str) -> list[Any]:
    """The values a simple JSONPath selects (as kubectl's printer columns use them)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    current = [obj]
    position = 0
    while position < len(path):
        match = _SEGMENT.match(path, position)
        if not match or match.end() == position:
            return []
        position = match.end()
        key = match.group(1) or match.group(3)
        nxt: list[Any] = []
        for value in current:
            if key is not None:
                if isinstance(value, Mapping) and key in value:
                    nxt.append(value[key])
            elif isinstance(value, list):
                index = match.group(2)
                if index == "*":
                    nxt.extend(value)
                elif int(index) < len(value):
                    nxt.append(value[int(index)])
        current = nxt
    return current


def _custom_cell(obj: Mapping[str, Any], column: PrinterColumn, now: datetime) -> Any:
    values = json_path_values(obj, column.json_path)
    if not values:
        return None
    if column.type == "date":
        created = parse_time(str(values[0]))
        return human_duration((now - created).total_seconds()) if created else str(values[0])
    if len(values) == 1 and not isinstance(values[0], list | dict):
        return values[0]
    import json  # noqa: PLC0415

    flat = values[0] if len(values) == 1 else values
    return json.dumps(flat, separators=(",", ":")) if isinstance(flat, list | dict) else flat


def _column_definitions(columns: Sequence[Column]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "type": type_,
            "format": "name" if index == 0 else "",
            "description": "",
            "priority": priority,
        }
        for index, (name, type_, priority) in enumerate(columns)
    ]


def table(
    rt: ResourceType,
    objects: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    resource_version: str = "",
    include_object: str = "Metadata",
    with_columns: bool = True,
) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `objects` as the real server prints `rt`."""
    if rt.custom and rt.printer_columns:
        columns: list[Column] = [("Name", _S, 0)]
        columns += [
            (c.name, "string" if c.type == "date" else c.type, c.priority)
            for c in rt.printer_columns
        ]
        if not any(
            c.json_path.strip() == ".metadata.creationTimestamp" for c in rt.printer_columns
        ):
            columns.append(("Age", _S, 0))

        def render(obj: Mapping[str, Any], at: datetime) -> Row:
            cells = [_name(obj)] + [_custom_cell(obj, c, at) for c in rt.printer_columns]
            if len(columns) > len(rt.printer_columns) + 1:
                cells.append(age(obj, at))
            return cells

        printer: Callable[[Mapping[str, Any], datetime], Row] = render
    else:
        column_list, printer = (
            PRINTERS.get((rt.group, rt.kind), _DEFAULT) if not rt.custom else _DEFAULT
        )
        columns = list(column_list)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer(obj, now)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {},
            }
        rows.append(row)
    result: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": _column_definitions(columns) if with_columns else None,
        "rows": rows,
    }
    return result
