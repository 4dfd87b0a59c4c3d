"""The Kubernetes kinds the load balancer reads: Services, Namespaces, Nodes, EndpointSlices,
and MetalLB's legacy ConfigMap (rejected with a pointer to the CRDs)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping

from pikube.lb.config.bgp import _bfd_profile, _bgp_advertisement, _bgp_peer, _community
from pikube.lb.config.constants import METALLB_GROUP
from pikube.lb.config.fields import ConfigError, _describe, _Fields, _ip, _metadata, _spec
from pikube.lb.config.pools import _l2_advertisement, _pool
from pikube.lb.config.state import _Seen
from pikube.lb.model import (
    SERVICE_NAME_LABEL,
    AddressType,
    Endpoint,
    EndpointSlice,
    ExternalTrafficPolicy,
    IPAddress,
    IPFamily,
    IPFamilyPolicy,
    Namespace,
    Node,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
)

# --- the Kubernetes kinds -------------------------------------------------------------------------


def _service(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "Service", namespaced=True)
    spec = _spec(doc, where)
    type_text = spec.string("type") or ServiceType.CLUSTER_IP.value
    try:
        svc_type = ServiceType(type_text)
    except ValueError:
        names = ", ".join(t.value for t in ServiceType)
        spec.fail("type", f"unknown service type {type_text!r} (one of {names})")
    etp_text = spec.string("externalTrafficPolicy") or ExternalTrafficPolicy.CLUSTER.value
    try:
        etp = ExternalTrafficPolicy(etp_text)
    except ValueError:
        spec.fail("externalTrafficPolicy", f"{etp_text!r} is neither Cluster nor Local")
    ports: list[ServicePort] = []
    for port in spec.mappings("ports"):
        number = port.integer("port", 1, 65535)
        if number is None:
            port.fail("port", "required")
        proto_text = port.string("protocol") or "TCP"
        try:
            proto = Protocol(proto_text)
        except ValueError:
            port.fail("protocol", f"{proto_text!r} is not TCP, UDP or SCTP")
        ports.append(ServicePort(number, proto, port.string("name")))
    families: list[IPFamily] = []
    for path, text in spec.items("ipFamilies"):
        family = next(
            (f for f in IPFamily if isinstance(text, str) and f.value.lower() == text.lower()),
            None,
        )
        if family is None or family in families:
            problem = "listed twice" if family else f"{text!r} is neither IPv4 nor IPv6"
            raise ConfigError(problem, origin=where.origin, obj=where.obj, field=path)
        families.append(family)
    policy_text = spec.string("ipFamilyPolicy")
    policy = None
    if policy_text:
        try:
            policy = IPFamilyPolicy(policy_text)
        except ValueError:
            names = ", ".join(p.value for p in IPFamilyPolicy)
            spec.fail("ipFamilyPolicy", f"unknown policy {policy_text!r} (one of {names})")
    cluster_texts = [t for _, t in spec.items("clusterIPs")] or [spec.get("clusterIP")]
    cluster_ips: list[IPAddress] = []
    for text in cluster_texts:
        if text in (None, "", "None"):
            continue
        if not isinstance(text, str):
            spec.fail("clusterIPs", f"expected addresses as strings, got {_describe(text)}")
        try:
            cluster_ips.append(ipaddress.ip_address(text))
        except ValueError:
            spec.fail("clusterIPs", f"{text!r} is not an IP address")
    ingress_ips: list[IPAddress] = []
    status = _Fields(doc.data, where, "").mapping("status")
    balancer = status.mapping("loadBalancer") if status else None
    for entry in balancer.mappings("ingress") if balancer else []:
        ip = _ip(entry, "ip")
        if ip is not None:
            ingress_ips.append(ip)
    service = Service(
        namespace=meta.namespace or "default",
        name=meta.name,
        labels=meta.labels,
        annotations=meta.annotations,
        type=svc_type,
        load_balancer_ip=spec.string("loadBalancerIP") or None,
        load_balancer_class=spec.string("loadBalancerClass") or None,
        external_traffic_policy=etp,
        selector=spec.string_map("selector"),
        ports=tuple(ports),
        ip_families=tuple(families),
        ip_family_policy=policy,
        cluster_ips=tuple(cluster_ips),
        ingress_ips=tuple(ingress_ips),
        creation_timestamp=meta.creation_timestamp,
    )
    seen.claim("Service", service.key, where)
    seen.services.append(service)


def _namespace(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "Namespace", namespaced=False)
    seen.claim("Namespace", meta.name, where)
    seen.namespaces.append(Namespace(meta.name, meta.labels))


def _node(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "Node", namespaced=False)
    status = _Fields(doc.data, where, "").mapping("status")
    unavailable = False
    for condition in status.mappings("conditions") if status else []:
        if condition.get("type") == "NetworkUnavailable":
            unavailable = condition.get("status") == "True"
    seen.claim("Node", meta.name, where)
    seen.nodes.append(Node(meta.name, meta.labels, unavailable))


def _endpoint_slice(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "EndpointSlice", namespaced=True)
    top = _Fields(doc.data, where, "")
    type_text = top.string("addressType") or AddressType.IPV4.value
    try:
        address_type = AddressType(type_text)
    except ValueError:
        top.fail("addressType", f"{type_text!r} is not IPv4, IPv6 or FQDN")
    endpoints: list[Endpoint] = []
    for entry in top.mappings("endpoints"):
        conditions = entry.mapping("conditions")
        endpoints.append(
            Endpoint(
                addresses=entry.strings("addresses", unique=False),
                node_name=entry.string("nodeName") or None,
                ready=conditions.optional_boolean("ready") if conditions else None,
                serving=conditions.optional_boolean("serving") if conditions else None,
            )
        )
    namespace = meta.namespace or "default"
    seen.claim("EndpointSlice", f"{namespace}/{meta.name}", where)
    seen.slices.append(
        EndpointSlice(
            namespace=namespace,
            name=meta.name,
            service_name=meta.labels.get(SERVICE_NAME_LABEL) or None,
            address_type=address_type,
            endpoints=tuple(endpoints),
        )
    )


def _legacy_configmap(doc: _Fields, _seen: _Seen, _version: str) -> None:
    data = doc.get("data")
    if isinstance(data, dict) and "address-pools" in str(data.get("config", "")):
        meta = doc.mapping("metadata")
        name = meta.string("name") if meta else None
        raise ConfigError(
            "this is MetalLB's ConfigMap configuration (before v0.13), which pikube does not "
            "read: convert it to IPAddressPool and L2Advertisement/BGPAdvertisement objects "
            "(MetalLB's configmaptocrs tool does that)",
            origin=doc.where.origin,
            obj=f"ConfigMap {name!r}",
            field="data.config",
        )


_Parser = Callable[[_Fields, _Seen, str], None]

_KINDS: Mapping[tuple[str, str], tuple[frozenset[str], _Parser]] = {
    (METALLB_GROUP, "IPAddressPool"): (frozenset({"v1beta1"}), _pool),
    (METALLB_GROUP, "L2Advertisement"): (frozenset({"v1beta1"}), _l2_advertisement),
    (METALLB_GROUP, "BGPAdvertisement"): (frozenset({"v1beta1"}), _bgp_advertisement),
    (METALLB_GROUP, "Community"): (frozenset({"v1beta1"}), _community),
    (METALLB_GROUP, "BFDProfile"): (frozenset({"v1beta1"}), _bfd_profile),
    (METALLB_GROUP, "BGPPeer"): (frozenset({"v1beta1", "v1beta2"}), _bgp_peer),
    ("", "Service"): (frozenset({"v1"}), _service),
    ("", "Namespace"): (frozenset({"v1"}), _namespace),
    ("", "Node"): (frozenset({"v1"}), _node),
    ("", "ConfigMap"): (frozenset({"v1"}), _legacy_configmap),
    ("discovery.k8s.io", "EndpointSlice"): (frozenset({"v1"}), _endpoint_slice),
}
