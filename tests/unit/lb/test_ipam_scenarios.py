"""The allocator's rules, one small manifest each, with the allocation a user should see.

Each scenario is YAML as a user writes it (MetalLB objects and Services) and, per service,
"ips @ pool", an error (Err: words the reason must contain) or None (not handled at all).
"""

from __future__ import annotations

import pytest

from tests.unit.lb.scenarios import Err, Expected, check

SEED_POOL = """
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: first-pool, namespace: metallb-system}
spec:
  addresses: [198.51.100.230-198.51.100.250]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: example, namespace: metallb-system}
"""


def svc(name: str, namespace: str = "default", extra: str = "", meta: str = "") -> str:
    """A LoadBalancer service; `extra` is more of spec, `meta` more of metadata (YAML lines)."""
    lines = extra.strip().splitlines()
    if not any(line.startswith("selector:") for line in lines):
        lines.append(f"selector: {{app: {name}}}")
    if not any(line.startswith("ports:") for line in lines):
        lines.append("ports: [{port: 80}]")
    if not any(line.startswith("type:") for line in lines):
        lines.insert(0, "type: LoadBalancer")
    spec_lines = "".join(f"\n  {line}" for line in lines if line)
    meta_lines = "".join(f"\n  {line}" for line in meta.strip().splitlines() if line)
    return f"""
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}{meta_lines}
spec:{spec_lines}
"""


def pool(name: str, *addresses: str, extra: str = "") -> str:
    extra_lines = "".join(f"\n  {line}" for line in extra.strip().splitlines() if line)
    return f"""
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: {name}}}
spec:
  addresses: [{", ".join(addresses)}]{extra_lines}
"""


SCENARIOS: dict[str, tuple[str, dict[str, Expected]]] = {
    # --- the seed, and lowest free first
    "the seed's nginx gets the pool's first address": (
        SEED_POOL + svc("nginx"),
        {"default/nginx": "198.51.100.230 @ first-pool"},
    ),
    "lowest free first, services by namespace/name when no timestamps": (
        SEED_POOL + svc("c") + svc("a") + svc("b", namespace="alpha"),
        {
            "alpha/b": "198.51.100.230 @ first-pool",
            "default/a": "198.51.100.231 @ first-pool",
            "default/c": "198.51.100.232 @ first-pool",
        },
    ),
    "older services first (creationTimestamp), unset last": (
        SEED_POOL
        + svc("a")
        + svc("z", meta="creationTimestamp: 2024-01-01T00:00:00Z")
        + svc("y", meta="creationTimestamp: 2025-01-01T00:00:00Z"),
        {
            "default/z": "198.51.100.230 @ first-pool",
            "default/y": "198.51.100.231 @ first-pool",
            "default/a": "198.51.100.232 @ first-pool",
        },
    ),
    "ranges of a pool in the order written": (
        pool("p", "203.0.113.10/31", "203.0.113.2-203.0.113.3") + svc("a") + svc("b") + svc("c"),
        {
            "default/a": "203.0.113.10 @ p",
            "default/b": "203.0.113.11 @ p",
            "default/c": "203.0.113.2 @ p",
        },
    ),
    "a full pool: the service waits with the reason": (
        pool("tiny", "203.0.113.7/32") + svc("a") + svc("b"),
        {"default/a": "203.0.113.7 @ tiny", "default/b": Err("no free IPv4 address")},
    ),
    "no pool at all": (svc("a"), {"default/a": Err("no IPAddressPool is configured")}),
    # --- stability: what a service holds
    "a service keeps the IP it holds; holders go first": (
        SEED_POOL
        + svc("new", meta="creationTimestamp: 2020-01-01T00:00:00Z")
        + svc("old")
        + "status: {loadBalancer: {ingress: [{ip: 198.51.100.230}]}}\n",
        {
            "default/old": "198.51.100.230 @ first-pool",
            "default/new": "198.51.100.231 @ first-pool",
        },
    ),
    "a held IP outside every pool is replaced": (
        SEED_POOL + svc("a") + "status: {loadBalancer: {ingress: [{ip: 203.0.113.9}]}}\n",
        {"default/a": "198.51.100.230 @ first-pool"},
    ),
    "two services holding one IP: the older keeps it": (
        SEED_POOL
        + svc("young", meta="creationTimestamp: 2025-01-01T00:00:00Z")
        + "status: {loadBalancer: {ingress: [{ip: 198.51.100.240}]}}\n"
        + svc("elder", meta="creationTimestamp: 2024-01-01T00:00:00Z")
        + "status: {loadBalancer: {ingress: [{ip: 198.51.100.240}]}}\n",
        {
            "default/elder": "198.51.100.240 @ first-pool",
            "default/young": "198.51.100.230 @ first-pool",
        },
    ),
    "a held IP in another pool than address-pool asks moves to that pool": (
        SEED_POOL
        + pool("other", "203.0.113.0/30")
        + svc("a", meta="annotations: {metallb.io/address-pool: other}")
        + "status: {loadBalancer: {ingress: [{ip: 198.51.100.235}]}}\n",
        {"default/a": "203.0.113.0 @ other"},
    ),
    "a held IP other than the one requested is replaced by the request": (
        SEED_POOL
        + svc("a", extra="loadBalancerIP: 198.51.100.245")
        + "status: {loadBalancer: {ingress: [{ip: 198.51.100.235}]}}\n",
        {"default/a": "198.51.100.245 @ first-pool"},
    ),
    # --- explicit requests
    "spec.loadBalancerIP": (
        SEED_POOL + svc("a", extra="loadBalancerIP: 198.51.100.240") + svc("b"),
        {
            "default/a": "198.51.100.240 @ first-pool",
            "default/b": "198.51.100.230 @ first-pool",
        },
    ),
    "metallb.io/loadBalancerIPs, and the legacy metallb.universe.tf prefix": (
        SEED_POOL
        + svc("a", meta="annotations: {metallb.io/loadBalancerIPs: 198.51.100.241}")
        + svc("b", meta="annotations: {metallb.universe.tf/loadBalancerIPs: 198.51.100.242}"),
        {
            "default/a": "198.51.100.241 @ first-pool",
            "default/b": "198.51.100.242 @ first-pool",
        },
    ),
    "the processing order holds even against an explicit request": (
        pool("p", "203.0.113.0/31")
        + svc(
            "b", extra="loadBalancerIP: 203.0.113.0", meta="creationTimestamp: 2030-01-01T00:00:00Z"
        )
        + svc("a", meta="creationTimestamp: 2020-01-01T00:00:00Z"),
        {"default/a": "203.0.113.0 @ p", "default/b": Err("already used by default/a")},
    ),
    "both annotation and spec.loadBalancerIP is an error": (
        SEED_POOL
        + svc(
            "a",
            extra="loadBalancerIP: 198.51.100.240",
            meta="annotations: {metallb.io/loadBalancerIPs: 198.51.100.241}",
        ),
        {"default/a": Err("both metallb.io/loadBalancerIPs and spec.loadBalancerIP")},
    ),
    "a request outside every pool": (
        SEED_POOL + svc("a", extra="loadBalancerIP: 203.0.113.5"),
        {"default/a": Err("203.0.113.5 is not in any IPAddressPool")},
    ),
    "a request that is not an address": (
        SEED_POOL + svc("a", meta="annotations: {metallb.io/loadBalancerIPs: 'nope'}"),
        {"default/a": Err("'nope' is not an IP address")},
    ),
    "a request already taken by a service that does not share": (
        SEED_POOL
        + svc("a", extra="loadBalancerIP: 198.51.100.240")
        + svc("b", extra="loadBalancerIP: 198.51.100.240"),
        {
            "default/a": "198.51.100.240 @ first-pool",
            "default/b": Err("already used by default/a, which does not allow sharing"),
        },
    ),
    "autoAssign false: only by explicit request or address-pool": (
        pool("expensive", "203.0.113.64/30", extra="autoAssign: false")
        + SEED_POOL
        + svc("a", extra="loadBalancerIP: 203.0.113.65")
        + svc("b", meta="annotations: {metallb.io/address-pool: expensive}")
        + svc("c"),
        {
            "default/a": "203.0.113.65 @ expensive",
            "default/b": "203.0.113.64 @ expensive",
            "default/c": "198.51.100.230 @ first-pool",
        },
    ),
    "autoAssign false alone: no automatic address": (
        pool("expensive", "203.0.113.64/30", extra="autoAssign: false") + svc("a"),
        {"default/a": Err("no IPAddressPool may assign addresses to this service automatically")},
    ),
    # --- address-pool annotation
    "metallb.io/address-pool restricts to one pool (legacy prefix too)": (
        SEED_POOL
        + pool("other", "203.0.113.0/30")
        + svc("a", meta="annotations: {metallb.io/address-pool: other}")
        + svc("b", meta="annotations: {metallb.universe.tf/address-pool: other}"),
        {"default/a": "203.0.113.0 @ other", "default/b": "203.0.113.1 @ other"},
    ),
    "address-pool naming no pool": (
        SEED_POOL + svc("a", meta="annotations: {metallb.io/address-pool: nope}"),
        {"default/a": Err("there is no IPAddressPool 'nope'")},
    ),
    "address-pool and a requested IP from another pool": (
        SEED_POOL
        + pool("other", "203.0.113.0/30")
        + svc(
            "a",
            extra="loadBalancerIP: 198.51.100.240",
            meta="annotations: {metallb.io/address-pool: other}",
        ),
        {"default/a": Err("metallb.io/address-pool asks for pool 'other'")},
    ),
    "address-pool full": (
        pool("one", "203.0.113.1/32")
        + SEED_POOL
        + svc("a", meta="annotations: {metallb.io/address-pool: one}")
        + svc("b", meta="annotations: {metallb.io/address-pool: one}"),
        {"default/a": "203.0.113.1 @ one", "default/b": Err("no free IPv4 address in pool 'one'")},
    ),
    # --- serviceAllocation
    "a pool pinned to namespaces serves them first, and nobody else": (
        SEED_POOL
        + pool("team", "203.0.113.0/30", extra="serviceAllocation: {namespaces: [team-a]}")
        + svc("a", namespace="team-a")
        + svc("b", namespace="team-b"),
        {"team-a/a": "203.0.113.0 @ team", "team-b/b": "198.51.100.230 @ first-pool"},
    ),
    "a pinned pool is not a fallback for services it does not select": (
        pool("team", "203.0.113.0/30", extra="serviceAllocation: {namespaces: [team-a]}")
        + svc("b", namespace="team-b"),
        {"team-b/b": Err("no IPAddressPool may assign")},
    ),
    "pinned pools by priority: lower first, unset last, ties by name": (
        pool("p-unset", "203.0.113.0/32", extra="serviceAllocation: {namespaces: [ns]}")
        + pool(
            "p-20", "203.0.113.1/32", extra="serviceAllocation: {namespaces: [ns], priority: 20}"
        )
        + pool(
            "p-10-b", "203.0.113.2/32", extra="serviceAllocation: {namespaces: [ns], priority: 10}"
        )
        + pool(
            "p-10-a", "203.0.113.3/32", extra="serviceAllocation: {namespaces: [ns], priority: 10}"
        )
        + SEED_POOL
        + svc("s1", namespace="ns")
        + svc("s2", namespace="ns")
        + svc("s3", namespace="ns")
        + svc("s4", namespace="ns")
        + svc("s5", namespace="ns"),
        {
            "ns/s1": "203.0.113.3 @ p-10-a",
            "ns/s2": "203.0.113.2 @ p-10-b",
            "ns/s3": "203.0.113.1 @ p-20",
            "ns/s4": "203.0.113.0 @ p-unset",
            "ns/s5": "198.51.100.230 @ first-pool",
        },
    ),
    "namespaceSelectors match Namespace labels, and the implicit metadata.name label": (
        pool(
            "prod",
            "203.0.113.0/30",
            extra="serviceAllocation: {namespaceSelectors: [{matchLabels: {env: prod}}]}",
        )
        + pool(
            "by-name",
            "203.0.113.8/30",
            extra="serviceAllocation:\n"
            "  namespaceSelectors: [{matchLabels: {kubernetes.io/metadata.name: lab}}]",
        )
        + SEED_POOL
        + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {env: prod}}\n"
        + svc("web", namespace="shop")
        + svc("x", namespace="lab")
        + svc("y", namespace="other"),
        {
            "shop/web": "203.0.113.0 @ prod",
            "lab/x": "203.0.113.8 @ by-name",
            "other/y": "198.51.100.230 @ first-pool",
        },
    ),
    "serviceSelectors AND namespaces": (
        pool(
            "frontends",
            "203.0.113.0/30",
            extra="serviceAllocation:\n  namespaces: [shop]\n"
            "  serviceSelectors: [{matchExpressions: [{key: tier, operator: In, values: [web]}]}]",
        )
        + SEED_POOL
        + svc("web", namespace="shop", meta="labels: {tier: web}")
        + svc("db", namespace="shop", meta="labels: {tier: db}")
        + svc("web", namespace="blog", meta="labels: {tier: web}"),
        {
            "shop/web": "203.0.113.0 @ frontends",
            "blog/web": "198.51.100.230 @ first-pool",
            "shop/db": "198.51.100.231 @ first-pool",
        },
    ),
    "a full pinned pool falls back to the general pools": (
        pool("team", "203.0.113.0/32", extra="serviceAllocation: {namespaces: [t]}")
        + SEED_POOL
        + svc("a", namespace="t")
        + svc("b", namespace="t"),
        {"t/a": "203.0.113.0 @ team", "t/b": "198.51.100.230 @ first-pool"},
    ),
    "a requested IP from a pool pinned elsewhere is refused": (
        pool("team", "203.0.113.0/30", extra="serviceAllocation: {namespaces: [t]}")
        + svc("a", namespace="u", extra="loadBalancerIP: 203.0.113.1"),
        {"u/a": Err("which does not serve this service")},
    ),
    # --- avoidBuggyIPs
    "avoidBuggyIPs skips .0 and .255": (
        pool("buggy", "198.51.100.0/24", extra="avoidBuggyIPs: true")
        + pool("edge", "203.0.113.254/31", extra="avoidBuggyIPs: true")
        + svc("a", meta="annotations: {metallb.io/address-pool: buggy}")
        + svc("b", meta="annotations: {metallb.io/address-pool: edge}")
        + svc("c", meta="annotations: {metallb.io/address-pool: edge}")
        + svc("d", extra="loadBalancerIP: 198.51.100.255"),
        {
            "default/a": "198.51.100.1 @ buggy",
            "default/b": "203.0.113.254 @ edge",
            "default/c": Err("no free IPv4 address in pool 'edge'"),
            "default/d": Err("ends in .0 or .255, which pool 'buggy' avoids"),
        },
    ),
    "without avoidBuggyIPs .0 is an address like any other": (
        pool("p", "203.0.113.0/24") + svc("a"),
        {"default/a": "203.0.113.0 @ p"},
    ),
    # --- sharing
    "same key, different ports: one IP": (
        SEED_POOL
        + svc(
            "dns-tcp",
            meta="annotations: {metallb.io/allow-shared-ip: dns}",
            extra="ports: [{port: 53, protocol: TCP}]",
        )
        + svc(
            "dns-udp",
            meta="annotations: {metallb.io/allow-shared-ip: dns}",
            extra="ports: [{port: 53, protocol: UDP}]",
        ),
        {
            "default/dns-tcp": "198.51.100.230 @ first-pool",
            "default/dns-udp": "198.51.100.230 @ first-pool",
        },
    ),
    "same key, same port: two IPs": (
        SEED_POOL
        + svc("a", meta="annotations: {metallb.io/allow-shared-ip: k}")
        + svc("b", meta="annotations: {metallb.io/allow-shared-ip: k}"),
        {"default/a": "198.51.100.230 @ first-pool", "default/b": "198.51.100.231 @ first-pool"},
    ),
    "different keys, or no key: no sharing": (
        SEED_POOL
        + svc("a", meta="annotations: {metallb.io/allow-shared-ip: k1}", extra="ports: [{port: 1}]")
        + svc("b", meta="annotations: {metallb.io/allow-shared-ip: k2}", extra="ports: [{port: 2}]")
        + svc("c", extra="ports: [{port: 3}]"),
        {
            "default/a": "198.51.100.230 @ first-pool",
            "default/b": "198.51.100.231 @ first-pool",
            "default/c": "198.51.100.232 @ first-pool",
        },
    ),
    "legacy allow-shared-ip prefix": (
        SEED_POOL
        + svc(
            "a",
            meta="annotations: {metallb.universe.tf/allow-shared-ip: k}",
            extra="ports: [{port: 1}]",
        )
        + svc("b", meta="annotations: {metallb.io/allow-shared-ip: k}", extra="ports: [{port: 2}]"),
        {"default/a": "198.51.100.230 @ first-pool", "default/b": "198.51.100.230 @ first-pool"},
    ),
    "externalTrafficPolicy Local shares only with the same selector": (
        SEED_POOL
        + svc(
            "a",
            meta="annotations: {metallb.io/allow-shared-ip: k}",
            extra="externalTrafficPolicy: Local\nselector: {app: x}\nports: [{port: 1}]",
        )
        + svc(
            "b",
            meta="annotations: {metallb.io/allow-shared-ip: k}",
            extra="externalTrafficPolicy: Local\nselector: {app: x}\nports: [{port: 2}]",
        )
        + svc(
            "c",
            meta="annotations: {metallb.io/allow-shared-ip: k}",
            extra="externalTrafficPolicy: Local\nselector: {app: y}\nports: [{port: 3}]",
        ),
        {
            "default/a": "198.51.100.230 @ first-pool",
            "default/b": "198.51.100.230 @ first-pool",
            "default/c": "198.51.100.231 @ first-pool",
        },
    ),
    "a compatible shared IP counts as available: lowest usable wins": (
        pool("p", "203.0.113.0/29")
        + svc("first", extra="loadBalancerIP: 203.0.113.0")
        + svc(
            "shared",
            extra="loadBalancerIP: 203.0.113.1\nports: [{port: 1}]",
            meta="annotations: {metallb.io/allow-shared-ip: k}",
        )
        + svc(
            "z-sharer",
            meta="annotations: {metallb.io/allow-shared-ip: k}",
            extra="ports: [{port: 2}]",
        )
        + svc("z-plain"),
        {
            "default/first": "203.0.113.0 @ p",
            "default/shared": "203.0.113.1 @ p",
            "default/z-sharer": "203.0.113.1 @ p",
            "default/z-plain": "203.0.113.2 @ p",
        },
    ),
    "a requested shared IP with a clashing port is refused, naming the port": (
        SEED_POOL
        + svc(
            "a",
            meta="annotations: {metallb.io/allow-shared-ip: k}",
            extra="loadBalancerIP: 198.51.100.240",
        )
        + svc(
            "b",
            meta="annotations: {metallb.io/allow-shared-ip: k}",
            extra="loadBalancerIP: 198.51.100.240",
        ),
        {
            "default/a": "198.51.100.240 @ first-pool",
            "default/b": Err("already used by default/a on TCP port 80"),
        },
    ),
    # --- families
    "IPv4 by default; ipFamilies IPv6 gives IPv6": (
        pool("dual", "203.0.113.0/30", "2001:db8:68::100/126")
        + svc("v4")
        + svc("v6", extra="ipFamilies: [IPv6]"),
        {"default/v4": "203.0.113.0 @ dual", "default/v6": "2001:db8:68::100 @ dual"},
    ),
    "RequireDualStack: both families from one pool, in ipFamilies order": (
        pool("a-v4", "203.0.113.0/30")
        + pool("b-dual", "203.0.113.8/30", "2001:db8:68::100/126")
        + svc("d4", extra="ipFamilyPolicy: RequireDualStack")
        + svc("d6", extra="ipFamilyPolicy: RequireDualStack\nipFamilies: [IPv6, IPv4]"),
        {
            "default/d4": "203.0.113.8,2001:db8:68::100 @ b-dual",
            "default/d6": "2001:db8:68::101,203.0.113.9 @ b-dual",
        },
    ),
    "RequireDualStack without a dual-stack pool": (
        pool("v4", "203.0.113.0/30")
        + pool("v6", "2001:db8:68::100/126")
        + svc("d", extra="ipFamilyPolicy: RequireDualStack"),
        {"default/d": Err("no free IPv4 and IPv6 address")},
    ),
    "PreferDualStack: a dual-stack pool wins, else the preferred family": (
        pool("a-v4", "203.0.113.0/30")
        + pool("b-v6", "2001:db8:68::100/126")
        + svc("p4", extra="ipFamilyPolicy: PreferDualStack")
        + svc("p6", extra="ipFamilyPolicy: PreferDualStack\nipFamilies: [IPv6]"),
        {"default/p4": "203.0.113.0 @ a-v4", "default/p6": "2001:db8:68::100 @ b-v6"},
    ),
    "PreferDualStack takes both from a dual-stack pool found later": (
        pool("a-v4", "203.0.113.0/30")
        + pool("z-dual", "203.0.113.8/30", "2001:db8:68::100/126")
        + svc("p", extra="ipFamilyPolicy: PreferDualStack"),
        {"default/p": "203.0.113.8,2001:db8:68::100 @ z-dual"},
    ),
    "PreferDualStack holding one family gets the other from the same pool": (
        pool("dual", "203.0.113.0/30", "2001:db8:68::100/126")
        + svc("p", extra="ipFamilyPolicy: PreferDualStack")
        + "status: {loadBalancer: {ingress: [{ip: 203.0.113.2}]}}\n",
        {"default/p": "203.0.113.2,2001:db8:68::100 @ dual"},
    ),
    "cluster IPs say the family": (
        pool("dual", "203.0.113.0/30", "2001:db8:68::100/126")
        + svc("v6", extra="clusterIPs: [fd00::10]")
        + svc("both", extra="ipFamilyPolicy: PreferDualStack\nclusterIPs: [10.96.0.5, fd00::5]"),
        {
            "default/both": "203.0.113.0,2001:db8:68::100 @ dual",
            "default/v6": "2001:db8:68::101 @ dual",
        },
    ),
    "RequireDualStack with one cluster IP": (
        pool("dual", "203.0.113.0/30", "2001:db8:68::100/126")
        + svc("d", extra="ipFamilyPolicy: RequireDualStack\nclusterIPs: [10.96.0.5]"),
        {"default/d": Err("needs two cluster IPs")},
    ),
    "explicit dual-stack IPs from one pool": (
        pool("dual", "203.0.113.0/30", "2001:db8:68::100/126")
        + svc(
            "d",
            extra="ipFamilyPolicy: RequireDualStack",
            meta="annotations: {metallb.io/loadBalancerIPs: '2001:db8:68::103,203.0.113.3'}",
        ),
        {"default/d": "203.0.113.3,2001:db8:68::103 @ dual"},
    ),
    "RequireDualStack asking for one address": (
        pool("dual", "203.0.113.0/30", "2001:db8:68::100/126")
        + svc("d", extra="ipFamilyPolicy: RequireDualStack\nloadBalancerIP: 203.0.113.1"),
        {"default/d": Err("RequireDualStack needs one IPv4 and one IPv6 address")},
    ),
    "PreferDualStack may ask for one address": (
        pool("dual", "203.0.113.0/30", "2001:db8:68::100/126")
        + svc("d", extra="ipFamilyPolicy: PreferDualStack\nloadBalancerIP: 2001:db8:68::102"),
        {"default/d": "2001:db8:68::102 @ dual"},
    ),
    "explicit dual-stack IPs from two pools": (
        pool("v4", "203.0.113.0/30")
        + pool("v6", "2001:db8:68::100/126")
        + svc(
            "d",
            extra="ipFamilyPolicy: RequireDualStack",
            meta="annotations: {metallb.io/loadBalancerIPs: '203.0.113.1,2001:db8:68::101'}",
        ),
        {"default/d": Err("are in different pools (v4, v6)")},
    ),
    "an IPv6 request for an IPv4 service": (
        pool("v6", "2001:db8:68::100/126") + svc("a", extra="loadBalancerIP: 2001:db8:68::101"),
        {"default/a": Err("is IPv6, but the service is IPv4")},
    ),
    # --- what is handled at all
    "services that are not LoadBalancers, or of another class, appear nowhere": (
        SEED_POOL
        + svc("lb")
        + svc("cip", extra="type: ClusterIP")
        + svc("other-class", extra="loadBalancerClass: example.com/other"),
        {
            "default/lb": "198.51.100.230 @ first-pool",
            "default/cip": None,
            "default/other-class": None,
        },
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    yaml_text, expected = SCENARIOS[name]
    check(yaml_text, expected)


def test_a_load_balancer_class_handles_only_its_services() -> None:
    check(
        SEED_POOL + svc("plain") + svc("mine", extra="loadBalancerClass: pikube.io/lb"),
        {"default/mine": "198.51.100.230 @ first-pool", "default/plain": None},
        lb_class="pikube.io/lb",
    )
