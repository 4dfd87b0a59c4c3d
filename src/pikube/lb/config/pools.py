"""IPAddressPool and L2Advertisement, and the check that pools do not overlap."""

from __future__ import annotations

from collections.abc import Sequence

from pikube.lb.config.fields import (
    ConfigError,
    _describe,
    _Fields,
    _metadata,
    _spec,
    parse_address_range,
)
from pikube.lb.config.state import _PoolEntry, _Seen
from pikube.lb.model import (
    AddressRange,
    IPAddressPool,
    L2Advertisement,
    ServiceAllocation,
)


def _pool(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "IPAddressPool", namespaced=False)
    spec = _spec(doc, where)
    spec.check_keys(
        "IPAddressPool", ("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation")
    )
    ranges: list[AddressRange] = []
    entries = spec.items("addresses")
    if not entries:
        spec.fail("addresses", "a pool needs at least one CIDR or address range")
    for path, text in entries:
        if not isinstance(text, str):
            raise ConfigError(
                f"expected a CIDR or range as a string, got {_describe(text)}",
                origin=where.origin,
                obj=where.obj,
                field=path,
            )
        try:
            ranges.append(parse_address_range(text))
        except ValueError as exc:
            raise ConfigError(str(exc), origin=where.origin, obj=where.obj, field=path) from None
    allocation = None
    sa = spec.mapping("serviceAllocation")
    if sa is not None:
        sa.check_keys(
            "serviceAllocation",
            ("priority", "namespaces", "namespaceSelectors", "serviceSelectors"),
        )
        allocation = ServiceAllocation(
            priority=sa.integer("priority", 0, 2**31 - 1) or 0,
            namespaces=sa.strings("namespaces"),
            namespace_selectors=sa.selectors("namespaceSelectors"),
            service_selectors=sa.selectors("serviceSelectors"),
        )
    pool = IPAddressPool(
        name=meta.name,
        addresses=tuple(ranges),
        auto_assign=spec.boolean("autoAssign", True),
        avoid_buggy_ips=spec.boolean("avoidBuggyIPs", False),
        service_allocation=allocation,
        labels=meta.labels,
    )
    seen.claim("IPAddressPool", meta.name, where)
    seen.pools.append(_PoolEntry(pool, where.origin, where.obj))


def _l2_advertisement(doc: _Fields, seen: _Seen, _version: str) -> None:
    meta, where = _metadata(doc, "L2Advertisement", namespaced=False)
    spec = _spec(doc, where)
    spec.check_keys(
        "L2Advertisement",
        (
            "ipAddressPools",
            "ipAddressPoolSelectors",
            "nodeSelectors",
            "interfaces",
            "serviceSelectors",
        ),
    )
    adv = L2Advertisement(
        name=meta.name,
        ip_address_pools=spec.strings("ipAddressPools"),
        ip_address_pool_selectors=spec.selectors("ipAddressPoolSelectors"),
        node_selectors=spec.selectors("nodeSelectors"),
        interfaces=spec.strings("interfaces"),
        service_selectors=spec.selectors("serviceSelectors"),
    )
    seen.claim("L2Advertisement", meta.name, where)
    seen.l2.append(adv)


def _check_pools_do_not_overlap(entries: Sequence[_PoolEntry]) -> None:
    spans: list[tuple[int, int, int, int, int]] = []  # version, first, last, pool #, address #
    for p, entry in enumerate(entries):
        for a, rng in enumerate(entry.pool.addresses):
            spans.append((rng.version, int(rng.first), int(rng.last), p, a))
    spans.sort()
    widest: tuple[int, int, int, int, int] | None = None
    for span in spans:
        if widest is not None and widest[0] == span[0] and span[1] <= widest[2]:
            # Blame the one read later, and name the one read first.
            first, later = sorted((widest, span), key=lambda s: (s[3], s[4]))
            old, new = entries[first[3]], entries[later[3]]
            old_range = old.pool.addresses[first[4]]
            new_range = new.pool.addresses[later[4]]
            where = "" if old is new else f" of {old.obj} ({old.origin})"
            raise ConfigError(
                f"{new_range} overlaps {old_range}{where}; pools must not share addresses",
                origin=new.origin,
                obj=new.obj,
                field=f"spec.addresses[{later[4]}]",
            )
        if widest is None or widest[0] != span[0] or span[2] > widest[2]:
            widest = span
